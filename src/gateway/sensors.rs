//! `sensors`: which sensors the Tanium Data Service collects ("harvested"), and how old its readings may be. A
//! preview reads the cached data only where it holds the sensors the targets compare.

use serde::Deserialize;
use serde_json::json;

use super::data_field;
use super::error::GatewayError;
use super::filter::SensorParam;
use super::transport::{Document, GatewayClient, RawResponse, Repeat};

const SENSORS: &str = r#"query sensors($filter: FieldFilter) {
  sensors(first: 100, filter: $filter) {
    edges {
      node {
        name
        harvested
        maxAgeSeconds
        parameterizations { harvested values { name value } }
      }
    }
  }
}"#;

pub(crate) const DOCUMENTS: [(&str, &str); 1] = [("sensors", SENSORS)];

/// What the Gateway says of one sensor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SensorInfo {
    pub name: String,
    /// Registered for collection: the Tanium Data Service holds its readings.
    pub harvested: bool,
    /// How old a reading of it may be.
    #[serde(default)]
    pub max_age_seconds: Option<u64>,
    /// Parameter values collected on their own (a parameterised sensor is collected per set of values).
    #[serde(default, deserialize_with = "super::null_as_empty")]
    pub parameterizations: Vec<Parameterization>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Parameterization {
    pub harvested: bool,
    #[serde(default)]
    pub values: Vec<SensorParam>,
}

impl SensorInfo {
    /// Does the Tanium Data Service hold readings of this sensor with these parameters?
    pub fn collected_with(&self, params: &[SensorParam]) -> bool {
        if params.is_empty() {
            return self.harvested;
        }
        let same = |values: &[SensorParam]| {
            values.len() == params.len()
                && params.iter().all(|p| {
                    values
                        .iter()
                        .any(|v| v.name.eq_ignore_ascii_case(&p.name) && v.value == p.value)
                })
        };
        self.parameterizations
            .iter()
            .any(|p| p.harvested && same(&p.values))
    }
}

#[derive(Deserialize)]
struct Connection {
    edges: Vec<Edge>,
}

#[derive(Deserialize)]
struct Edge {
    node: SensorInfo,
}

pub(crate) fn decode(raw: RawResponse) -> Result<Vec<SensorInfo>, GatewayError> {
    let conn: Connection = data_field("sensors", raw, "sensors")?;
    Ok(conn.edges.into_iter().map(|e| e.node).collect())
}

impl GatewayClient {
    /// The named sensors, in one request; a name the Gateway does not know is missing from the answer.
    pub async fn sensors_named(&self, names: &[&str]) -> Result<Vec<SensorInfo>, GatewayError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let filter = json!({
            "any": true,
            "filters": names.iter().map(|n| json!({"path": "name", "op": "EQ", "value": n})).collect::<Vec<_>>(),
        });
        let doc = Document::fixed("sensors", SENSORS, Repeat::Safe);
        self.call(&doc, &json!({ "filter": filter }), decode).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, value: &str) -> SensorParam {
        SensorParam {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_parameterised_sensor_is_collected_only_for_its_registered_values() {
        let info: SensorInfo = serde_json::from_value(json!({
            "name": "File Exists", "harvested": false, "maxAgeSeconds": 600,
            "parameterizations": [{"harvested": true, "values": [{"name": "path", "value": "C:\\a"}]}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!info.collected_with(&[]));
        assert!(info.collected_with(&[param("Path", "C:\\a")]));
        assert!(!info.collected_with(&[param("path", "C:\\b")]));
        let plain: SensorInfo = serde_json::from_value(
            json!({"name": "OS Platform", "harvested": true, "parameterizations": null}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(plain.collected_with(&[]));
        assert!(!plain.collected_with(&[param("x", "y")]));
    }
}
