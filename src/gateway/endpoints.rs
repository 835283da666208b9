//! `endpoints`: the fleet, filtered, paged to the end; the preview of every deployment.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{GatewayError, is_stale_cursor};
use super::filter::{Filter, SensorParam};
use super::transport::{Document, GatewayClient, RawResponse, Repeat};
use super::{EndpointId, Platform, data_field};

const ENDPOINTS: &str = r#"query endpoints($first: Int, $after: Cursor, $filter: EndpointFieldFilter, $source: EndpointSource, $sensors: [EndpointSensorRef!]!, $withSensors: Boolean!) {
  endpoints(first: $first, after: $after, filter: $filter, source: $source) {
    totalRecords
    pageInfo { hasNextPage endCursor }
    collectionInfo { active success expectedTotal respondedTotal }
    edges {
      node {
        id
        name
        computerID
        ipAddress
        os { platform }
        sensorReadings(sensors: $sensors) @include(if: $withSensors) {
          columns { name values sensor { name } }
        }
      }
    }
  }
}"#;

pub(crate) const DOCUMENTS: [(&str, &str); 1] = [("endpoints", ENDPOINTS)];

/// How many times a walk restarts from the first page after its cursor expired, before giving up.
const MAX_WALK_RESTARTS: usize = 3;

/// A sensor to read on every endpoint of the answer (`EndpointSensorRef`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<SensorParam>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// A `SensorValueFilter` on the rows, passed through as the Gateway defines it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
}

impl SensorRequest {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            params: Vec::new(),
            columns: None,
            filter: None,
        }
    }
}

/// What to ask `endpoints` for.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointQuery {
    pub filter: Option<Filter>,
    /// Only these endpoints (combined with `filter` by AND); empty: no restriction.
    pub ids: Vec<EndpointId>,
    pub sensors: Vec<SensorRequest>,
    pub page_size: u32,
    /// Ask online endpoints live (`source: {ts: …}`) instead of the Tanium Data Service's cached readings.
    pub live: Option<LiveSource>,
}

impl Default for EndpointQuery {
    fn default() -> Self {
        Self {
            filter: None,
            ids: Vec::new(),
            sensors: Vec::new(),
            page_size: 500,
            live: None,
        }
    }
}

/// `EndpointSourceTS`: how long to wait for live answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_wait_time: Option<u32>,
    pub max_wait_time: u32,
}

impl EndpointQuery {
    /// The `EndpointFieldFilter` variable: the filter, AND any of the ids (by `path`, which only
    /// `EndpointFieldFilter` has, so this stays out of the shared [`Filter`] type).
    pub fn wire_filter(&self) -> Option<serde_json::Value> {
        let ids = (!self.ids.is_empty()).then(|| {
            json!({
                "any": true,
                "filters": self.ids.iter().map(|id| json!({"path": "id", "op": "EQ", "value": id})).collect::<Vec<_>>(),
            })
        });
        match (&self.filter, ids) {
            (None, None) => None,
            (Some(f), None) => Some(json!(f)),
            (None, Some(ids)) => Some(ids),
            (Some(f), Some(ids)) => Some(json!({"filters": [f, ids]})),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SensorColumn {
    pub name: String,
    pub values: Vec<String>,
    /// Which sensor the column belongs to.
    pub sensor: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: EndpointId,
    pub name: String,
    pub computer_id: Option<String>,
    pub ip_address: Option<String>,
    pub platform: Option<Platform>,
    pub sensor_readings: Vec<SensorColumn>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointPage {
    pub endpoints: Vec<Endpoint>,
    /// All matches, across pages.
    pub total: u64,
    pub next_cursor: Option<String>,
    /// For live answers: did every expected endpoint answer?
    pub collection_complete: Option<bool>,
    /// For live answers: how many endpoints answered, of how many the Gateway expected.
    pub responded: Option<u64>,
    pub expected: Option<u64>,
}

// --- wire shapes -------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireConnection {
    total_records: Option<u64>,
    page_info: super::WirePageInfo,
    collection_info: Option<WireCollectionInfo>,
    edges: Vec<WireEdge>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCollectionInfo {
    active: bool,
    success: bool,
    expected_total: Option<u64>,
    responded_total: Option<u64>,
}

#[derive(Deserialize)]
struct WireEdge {
    node: WireEndpoint,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEndpoint {
    id: EndpointId,
    name: Option<String>,
    #[serde(rename = "computerID")]
    computer_id: Option<String>,
    ip_address: Option<String>,
    os: Option<WireOs>,
    sensor_readings: Option<WireReadings>,
}

#[derive(Deserialize)]
struct WireOs {
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct WireReadings {
    columns: Vec<WireColumn>,
}

#[derive(Deserialize)]
struct WireColumn {
    name: String,
    values: Vec<String>,
    sensor: WireSensorName,
}

#[derive(Deserialize)]
struct WireSensorName {
    name: String,
}

impl From<WireEndpoint> for Endpoint {
    fn from(w: WireEndpoint) -> Self {
        Self {
            id: w.id,
            name: w.name.unwrap_or_default(),
            computer_id: w.computer_id.filter(|s| !s.is_empty()),
            ip_address: w.ip_address.filter(|s| !s.is_empty()),
            platform: w.os.and_then(|o| o.platform),
            sensor_readings: w
                .sensor_readings
                .map(|r| {
                    r.columns
                        .into_iter()
                        .map(|c| SensorColumn {
                            name: c.name,
                            values: c.values,
                            sensor: c.sensor.name,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The `endpoints` answer, pure, so that `crate::fuzzing` can feed it arbitrary answers.
pub(crate) fn decode_page(raw: RawResponse) -> Result<EndpointPage, GatewayError> {
    let conn: WireConnection = data_field("endpoints", raw, "endpoints")?;
    let endpoints: Vec<Endpoint> = conn.edges.into_iter().map(|e| e.node.into()).collect();
    Ok(EndpointPage {
        total: conn.total_records.unwrap_or(endpoints.len() as u64),
        next_cursor: if conn.page_info.has_next_page {
            conn.page_info.end_cursor
        } else {
            None
        },
        responded: conn
            .collection_info
            .as_ref()
            .and_then(|c| c.responded_total),
        expected: conn.collection_info.as_ref().and_then(|c| c.expected_total),
        collection_complete: conn.collection_info.map(|c| {
            !c.active
                && c.success
                && match (c.expected_total, c.responded_total) {
                    (Some(e), Some(r)) => r >= e,
                    _ => true,
                }
        }),
        endpoints,
    })
}

impl GatewayClient {
    /// One page of endpoints.
    pub async fn endpoints_page(
        &self,
        query: &EndpointQuery,
        after: Option<&str>,
    ) -> Result<EndpointPage, GatewayError> {
        if let Some(f) = &query.filter {
            f.validate()?;
        }
        let variables = json!({
            "first": query.page_size.max(1),
            "after": after,
            "filter": query.wire_filter(),
            "source": query.live.map(|ts| json!({"ts": ts})),
            "sensors": query.sensors,
            "withSensors": !query.sensors.is_empty(),
        });
        let wait = query.live.map_or(0, |ts| u64::from(ts.max_wait_time));
        let doc = Document::fixed("endpoints", ENDPOINTS, Repeat::Safe)
            .waiting(std::time::Duration::from_secs(wait));
        self.call(&doc, &variables, decode_page).await
    }

    /// How many endpoints match, without fetching them.
    pub async fn count_endpoints(&self, filter: Option<&Filter>) -> Result<u64, GatewayError> {
        let query = EndpointQuery {
            filter: filter.cloned(),
            page_size: 1,
            ..EndpointQuery::default()
        };
        Ok(self.endpoints_page(&query, None).await?.total)
    }

    /// Every matching endpoint, page by page, up to `limit` if given. A cursor that expires mid-walk restarts the
    /// walk from the first page (cursors live about five minutes), a bounded number of times.
    pub async fn all_endpoints(
        &self,
        query: &EndpointQuery,
        limit: Option<usize>,
    ) -> Result<Vec<Endpoint>, GatewayError> {
        let mut restarts = 0;
        'walk: loop {
            let mut out: Vec<Endpoint> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = match self.endpoints_page(query, cursor.as_deref()).await {
                    Ok(p) => p,
                    Err(GatewayError::GraphQl { errors, .. })
                        if cursor.is_some()
                            && errors.iter().any(is_stale_cursor)
                            && restarts < MAX_WALK_RESTARTS =>
                    {
                        restarts += 1;
                        tracing::info!(restarts, "endpoint cursor expired; restarting the walk");
                        continue 'walk;
                    }
                    Err(e) => return Err(e),
                };
                out.extend(page.endpoints);
                if let Some(max) = limit
                    && out.len() >= max
                {
                    out.truncate(max);
                    return Ok(out);
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => return Ok(out),
                }
            }
        }
    }
}

/// One endpoint, named the way a person knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSelector {
    Id(EndpointId),
    /// The "Computer Name" sensor's value (compared case-insensitively by Tanium).
    ComputerName(String),
}

impl std::fmt::Display for EndpointSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "endpoint id {id}"),
            Self::ComputerName(name) => write!(f, "computer name {name:?}"),
        }
    }
}

/// What a selector names.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    One(Endpoint),
    None,
    /// A computer name several endpoints share (a re-imaged machine often leaves its old record behind);
    /// at most a few of them.
    Several {
        total: u64,
        some: Vec<Endpoint>,
    },
}

impl GatewayClient {
    /// Find the one endpoint a selector names, in a single request.
    pub async fn find_endpoint(
        &self,
        selector: &EndpointSelector,
    ) -> Result<Resolved, GatewayError> {
        let query = match selector {
            EndpointSelector::Id(id) => EndpointQuery {
                ids: vec![id.clone()],
                page_size: 2,
                ..EndpointQuery::default()
            },
            EndpointSelector::ComputerName(name) => EndpointQuery {
                filter: Some(Filter::sensor("Computer Name", super::FilterOp::Eq, name)),
                page_size: 5,
                ..EndpointQuery::default()
            },
        };
        let page = self.endpoints_page(&query, None).await?;
        let mut found = page.endpoints;
        Ok(match (page.total.max(found.len() as u64), found.pop()) {
            (_, None) => Resolved::None,
            (1, Some(one)) => Resolved::One(one),
            (total, Some(last)) => {
                found.push(last);
                Resolved::Several { total, some: found }
            }
        })
    }
}
