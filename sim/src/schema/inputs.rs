//! GraphQL input objects and enums, named exactly as in the Gateway schema, and their conversion
//! into the sim's own filter and request types.

use async_graphql::{Enum, ID, InputObject};

use super::scalars::Time;
use crate::actions::PerformRequest;
use crate::filter::{Filter, FilterError, GroupRef, Op, Target};
use crate::fleet::Platform;
use crate::records::ScheduleRequest;

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldFilterOp {
    #[default]
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
    UpdatedAfter,
    ReadAfter,
}

impl FieldFilterOp {
    fn name(self) -> &'static str {
        match self {
            Self::Eq => "EQ",
            Self::Lt => "LT",
            Self::Lte => "LTE",
            Self::Gt => "GT",
            Self::Gte => "GTE",
            Self::Contains => "CONTAINS",
            Self::StartsWith => "STARTS_WITH",
            Self::EndsWith => "ENDS_WITH",
            Self::Matches => "MATCHES",
            Self::UpdatedAfter => "UPDATED_AFTER",
            Self::ReadAfter => "READ_AFTER",
        }
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SensorValueFilterOp {
    #[default]
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
}

impl SensorValueFilterOp {
    fn as_field_op(self) -> FieldFilterOp {
        match self {
            Self::Eq => FieldFilterOp::Eq,
            Self::Lt => FieldFilterOp::Lt,
            Self::Lte => FieldFilterOp::Lte,
            Self::Gt => FieldFilterOp::Gt,
            Self::Gte => FieldFilterOp::Gte,
            Self::Contains => FieldFilterOp::Contains,
            Self::StartsWith => FieldFilterOp::StartsWith,
            Self::EndsWith => FieldFilterOp::EndsWith,
            Self::Matches => FieldFilterOp::Matches,
        }
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Sigint,
    Sigkill,
    Sigterm,
}

#[derive(InputObject, Debug, Clone)]
pub struct IdRefInput {
    pub id: ID,
}

#[derive(InputObject, Debug, Clone)]
pub struct NamedRefInput {
    pub id: Option<ID>,
    pub name: Option<String>,
}

#[derive(InputObject, Debug, Clone)]
pub struct EndpointFieldFilterComputerGroup {
    pub name: Option<String>,
    pub id: Option<ID>,
}

#[derive(InputObject, Debug, Clone)]
pub struct EndpointFieldFilterSensorParam {
    pub name: String,
    pub value: String,
}

#[derive(InputObject, Debug, Clone)]
pub struct EndpointFieldFilterSensor {
    pub name: Option<String>,
    pub column: Option<String>,
    pub params: Option<Vec<EndpointFieldFilterSensorParam>>,
}

#[derive(InputObject, Debug, Clone)]
pub struct EndpointFieldFilter {
    pub path: Option<String>,
    #[graphql(name = "memberOf")]
    pub member_of: Option<EndpointFieldFilterComputerGroup>,
    pub sensor: Option<EndpointFieldFilterSensor>,
    #[graphql(default)]
    pub op: FieldFilterOp,
    #[graphql(default)]
    pub negated: bool,
    pub value: Option<String>,
    pub filters: Option<Vec<EndpointFieldFilter>>,
    #[graphql(default)]
    pub any: bool,
}

#[derive(InputObject, Debug, Clone)]
pub struct ComputerGroupFilter {
    #[graphql(name = "memberOf")]
    pub member_of: Option<EndpointFieldFilterComputerGroup>,
    pub sensor: Option<EndpointFieldFilterSensor>,
    #[graphql(default)]
    pub op: FieldFilterOp,
    #[graphql(default)]
    pub negated: bool,
    pub value: Option<String>,
    pub filters: Option<Vec<ComputerGroupFilter>>,
    #[graphql(default)]
    pub any: bool,
}

fn default_true() -> bool {
    true
}

#[derive(InputObject, Debug, Clone)]
pub struct FieldFilter {
    pub path: Option<String>,
    #[graphql(default)]
    pub op: FieldFilterOp,
    #[graphql(default)]
    pub negated: bool,
    pub value: Option<String>,
    pub filters: Option<Vec<FieldFilter>>,
    #[graphql(default)]
    pub any: bool,
    #[graphql(name = "restrictOwner", default_with = "default_true()")]
    pub restrict_owner: bool,
}

#[derive(InputObject, Debug, Clone)]
pub struct SensorValueFilter {
    pub column: Option<String>,
    #[graphql(default)]
    pub op: SensorValueFilterOp,
    pub value: Option<String>,
    pub filters: Option<Vec<SensorValueFilter>>,
    #[graphql(default)]
    pub any: bool,
    #[graphql(name = "restrictOwner", default_with = "default_true()")]
    pub restrict_owner: bool,
}

#[derive(InputObject, Debug, Clone)]
pub struct EndpointSensorRefParam {
    pub name: String,
    pub value: String,
}

#[derive(InputObject, Debug, Clone)]
pub struct EndpointSensorRef {
    pub name: String,
    pub params: Option<Vec<EndpointSensorRefParam>>,
    #[graphql(name = "maxAge")]
    pub max_age: Option<i32>,
    pub columns: Option<Vec<String>>,
    pub filter: Option<SensorValueFilter>,
}

#[derive(InputObject, Debug, Clone)]
#[graphql(name = "EndpointSourceTDS")]
pub struct EndpointSourceTds {
    #[graphql(name = "allNamespaces", default)]
    pub all_namespaces: bool,
    pub namespaces: Option<Vec<String>>,
    #[graphql(name = "excludeErrors", default)]
    pub exclude_errors: bool,
    #[graphql(name = "excludeNoResults", default)]
    pub exclude_no_results: bool,
}

fn thirty() -> i32 {
    30
}

#[derive(InputObject, Debug, Clone)]
#[graphql(name = "EndpointSourceTS")]
pub struct EndpointSourceTs {
    #[graphql(name = "expectedCount")]
    pub expected_count: Option<i32>,
    #[graphql(name = "stableWaitTime")]
    pub stable_wait_time: Option<i32>,
    #[graphql(name = "maxWaitTime", default_with = "thirty()")]
    pub max_wait_time: i32,
    #[graphql(name = "minPercentage")]
    pub min_percentage: Option<f64>,
    #[graphql(name = "maxAge")]
    pub max_age: Option<i32>,
    #[graphql(name = "excludeErrors", default)]
    pub exclude_errors: bool,
    #[graphql(name = "excludeNoResults", default)]
    pub exclude_no_results: bool,
}

#[derive(InputObject, Debug, Clone)]
pub struct EndpointSource {
    pub tds: Option<EndpointSourceTds>,
    pub ts: Option<EndpointSourceTs>,
}

#[derive(InputObject, Debug, Clone)]
pub struct ActionActionGroupInput {
    pub id: Option<ID>,
    pub name: Option<String>,
}

#[derive(InputObject, Debug, Clone)]
pub struct ActionTargetGroupInput {
    pub id: Option<ID>,
    pub name: Option<String>,
    pub filter: Option<ComputerGroupFilter>,
}

#[derive(InputObject, Debug, Clone)]
pub struct ActionTargetsInput {
    #[graphql(name = "actionGroup")]
    pub action_group: Option<ActionActionGroupInput>,
    #[graphql(name = "targetGroup")]
    pub target_group: Option<ActionTargetGroupInput>,
    pub platforms: Option<Vec<Platform>>,
    pub endpoints: Option<Vec<ID>>,
}

#[derive(InputObject, Debug, Clone)]
pub struct PackageParamInput {
    pub name: String,
    pub value: String,
}

#[derive(InputObject, Debug, Clone)]
pub struct PackageRefInput {
    pub id: Option<ID>,
    pub name: Option<String>,
    pub params: Option<Vec<String>>,
    #[graphql(name = "sensorSourcedParams")]
    pub sensor_sourced_params: Option<Vec<PackageParamInput>>,
}

/// Only the tag operations are simulated; they map onto the tagging packages.
#[derive(InputObject, Debug, Clone)]
pub struct ActionOperationInput {
    #[graphql(name = "addTags")]
    pub add_tags: Option<Vec<String>>,
    #[graphql(name = "removeTags")]
    pub remove_tags: Option<Vec<String>>,
}

fn zero() -> Option<i32> {
    Some(0)
}

#[derive(InputObject, Debug, Clone)]
pub struct ActionPerformScheduleInput {
    #[graphql(name = "distributeSeconds", default_with = "zero()")]
    pub distribute_seconds: Option<i32>,
    #[graphql(name = "expireSeconds")]
    pub expire_seconds: Option<i32>,
    #[graphql(name = "reissueSeconds")]
    pub reissue_seconds: Option<i32>,
    #[graphql(name = "startTime")]
    pub start_time: Option<Time>,
    #[graphql(name = "endTime")]
    pub end_time: Option<Time>,
}

#[derive(InputObject, Debug, Clone)]
pub struct ActionPerformInput {
    pub targets: ActionTargetsInput,
    pub package: Option<PackageRefInput>,
    pub operation: Option<ActionOperationInput>,
    pub schedule: Option<ActionPerformScheduleInput>,
    pub name: Option<String>,
    pub comment: Option<String>,
}

#[derive(InputObject, Debug, Clone)]
pub struct DirectConnectOpenInput {
    #[graphql(name = "endpointID")]
    pub endpoint_id: ID,
}

#[derive(InputObject, Debug, Clone)]
pub struct DirectConnectCloseInput {
    #[graphql(name = "connectionID")]
    pub connection_id: ID,
}

#[derive(InputObject, Debug, Clone)]
pub struct DirectConnectPingInput {
    #[graphql(name = "connectionID")]
    pub connection_id: ID,
}

#[derive(InputObject, Debug, Clone)]
pub struct DirectConnectConnectionStatusInput {
    #[graphql(name = "connectionID")]
    pub connection_id: ID,
}

#[derive(InputObject, Debug, Clone)]
pub struct DirectConnectEndpointInput {
    #[graphql(name = "connectionID")]
    pub connection_id: ID,
}

#[derive(InputObject, Debug, Clone)]
pub struct DirectConnectProcessTerminateInput {
    #[graphql(name = "connectionID")]
    pub connection_id: ID,
    pub pid: i32,
    pub name: String,
    pub signal: Signal,
}

#[derive(InputObject, Debug, Clone)]
pub struct OpenDirectConnectionInput {
    #[graphql(name = "endpointID")]
    pub endpoint_id: Option<ID>,
}

#[derive(InputObject, Debug, Clone)]
pub struct CloseDirectConnectionInput {
    #[graphql(name = "connectionID")]
    pub connection_id: ID,
}

#[derive(InputObject, Debug, Clone)]
pub struct PingDirectConnectionInput {
    #[graphql(name = "connectionID")]
    pub connection_id: ID,
}

#[derive(InputObject, Debug, Clone)]
pub struct KillProcessInput {
    #[graphql(name = "connectionID")]
    pub connection_id: Option<ID>,
    pub endpoint: Option<OpenDirectConnectionInput>,
    pub pid: i32,
    pub name: String,
    pub signal: Signal,
}

#[derive(InputObject, Debug, Clone)]
pub struct DirectConnectAlertScope {
    #[graphql(name = "startTime")]
    pub start_time: Time,
    #[graphql(name = "endTime")]
    pub end_time: Option<Time>,
}

#[derive(InputObject, Debug, Clone)]
#[graphql(name = "APITokenRotateInput")]
pub struct ApiTokenRotateInput {
    #[graphql(name = "tokenString")]
    pub token_string: String,
}

/// The parts every filter shape shares, so one conversion serves them all.
struct Parts<'a, T> {
    path: Option<&'a str>,
    member_of: Option<&'a EndpointFieldFilterComputerGroup>,
    sensor: Option<&'a EndpointFieldFilterSensor>,
    op: FieldFilterOp,
    negated: bool,
    value: Option<&'a str>,
    filters: Option<&'a [T]>,
    any: bool,
}

fn convert<T>(
    p: Parts<'_, T>,
    child: impl Fn(&T) -> Result<Filter, FilterError>,
) -> Result<Filter, FilterError> {
    if let Some(children) = p.filters {
        return Ok(Filter::Node {
            filters: children.iter().map(child).collect::<Result<_, _>>()?,
            any: p.any,
            negated: p.negated,
        });
    }
    if let Some(g) = p.member_of {
        return Ok(Filter::MemberOf {
            group: GroupRef {
                id: g.id.as_ref().map(|i| i.to_string()),
                name: g.name.clone(),
            },
            negated: p.negated,
        });
    }
    let target = match (p.path, p.sensor) {
        (Some(path), _) => Target::Path(path.to_string()),
        (None, Some(s)) => Target::Sensor {
            name: s.name.clone().unwrap_or_default(),
            column: s.column.clone(),
        },
        (None, None) => return Ok(Filter::All { negated: p.negated }),
    };
    let value = p.value.unwrap_or_default().to_string();
    Ok(Filter::Leaf {
        target,
        op: Op::parse(p.op.name(), &value)?,
        value,
        negated: p.negated,
    })
}

impl EndpointFieldFilter {
    pub fn to_filter(&self) -> Result<Filter, FilterError> {
        convert(
            Parts {
                path: self.path.as_deref(),
                member_of: self.member_of.as_ref(),
                sensor: self.sensor.as_ref(),
                op: self.op,
                negated: self.negated,
                value: self.value.as_deref(),
                filters: self.filters.as_deref(),
                any: self.any,
            },
            Self::to_filter,
        )
    }
}

impl ComputerGroupFilter {
    pub fn to_filter(&self) -> Result<Filter, FilterError> {
        convert(
            Parts {
                path: None,
                member_of: self.member_of.as_ref(),
                sensor: self.sensor.as_ref(),
                op: self.op,
                negated: self.negated,
                value: self.value.as_deref(),
                filters: self.filters.as_deref(),
                any: self.any,
            },
            Self::to_filter,
        )
    }
}

impl FieldFilter {
    /// Does it filter on the name (at any level)?
    pub(crate) fn names_path(&self) -> bool {
        self.path.as_deref() == Some("name")
            || self
                .filters
                .as_ref()
                .is_some_and(|fs| fs.iter().any(FieldFilter::names_path))
    }

    pub fn to_filter(&self) -> Result<Filter, FilterError> {
        convert(
            Parts {
                path: self.path.as_deref(),
                member_of: None,
                sensor: None,
                op: self.op,
                negated: self.negated,
                value: self.value.as_deref(),
                filters: self.filters.as_deref(),
                any: self.any,
            },
            Self::to_filter,
        )
    }
}

impl SensorValueFilter {
    /// The column is the path of a row.
    pub fn to_filter(&self) -> Result<Filter, FilterError> {
        convert(
            Parts {
                path: Some(self.column.as_deref().unwrap_or("")),
                member_of: None,
                sensor: None,
                op: self.op.as_field_op(),
                negated: false,
                value: self.value.as_deref(),
                filters: self.filters.as_deref(),
                any: self.any,
            },
            Self::to_filter,
        )
    }
}

impl ActionPerformInput {
    pub fn to_request(&self) -> Result<PerformRequest, FilterError> {
        let mut req = PerformRequest {
            name: self.name.clone(),
            comment: self.comment.clone(),
            ..PerformRequest::default()
        };
        if let Some(p) = &self.package {
            req.package_id = p.id.as_ref().map(|i| i.to_string());
            req.package_name = p.name.clone();
            req.params = p.params.clone().unwrap_or_default();
            req.sensor_params = p
                .sensor_sourced_params
                .iter()
                .flatten()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect();
        } else if let Some(op) = &self.operation {
            let (pkg, tags) = match (&op.add_tags, &op.remove_tags) {
                (Some(t), _) => (crate::packages::ADD_TAGS, t),
                (None, Some(t)) => (crate::packages::REMOVE_TAGS, t),
                (None, None) => (crate::packages::ADD_TAGS, &Vec::new()),
            };
            req.package_name = Some(pkg.to_string());
            req.params = vec![tags.join(" ")];
        }
        let t = &self.targets;
        if let Some(g) = &t.action_group {
            req.action_group_id = g.id.as_ref().map(|i| i.to_string());
            req.action_group_name = g.name.clone();
        }
        if let Some(g) = &t.target_group {
            req.target_group_id = g.id.as_ref().map(|i| i.to_string());
            req.target_group_name = g.name.clone();
            req.filter = g.filter.as_ref().map(|f| f.to_filter()).transpose()?;
        }
        req.endpoints = t
            .endpoints
            .as_ref()
            .map(|e| e.iter().map(|i| i.to_string()).collect());
        req.platforms = t.platforms.clone();
        if let Some(s) = &self.schedule {
            req.schedule = ScheduleRequest {
                distribute_seconds: i64::from(s.distribute_seconds.unwrap_or(0)),
                expire_seconds: s.expire_seconds.map(i64::from),
                reissue_seconds: s.reissue_seconds.map(i64::from),
                start_time: s.start_time.map(|t| t.0),
                end_time: s.end_time.map(|t| t.0),
            };
        }
        Ok(req)
    }
}

/// The Gateway input type a filter variable is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterInput {
    /// `endpoints(filter:)`: what a preview asks.
    EndpointField,
    /// `actionPerform`'s `targetGroup.filter`: what a deploy targets.
    ComputerGroup,
}

/// A filter variable read the way the sim reads a request's: GraphQL input coercion into `input`, then the
/// filter the sim evaluates. For tests that compare what two operations would select.
pub fn parse_filter(input: FilterInput, json: serde_json::Value) -> Result<Filter, String> {
    use async_graphql::InputType;
    let value = async_graphql::Value::from_json(json).map_err(|e| e.to_string())?;
    let coerce = |e: String| format!("not a valid {input:?} filter: {e}");
    match input {
        FilterInput::EndpointField => EndpointFieldFilter::parse(Some(value))
            .map_err(|e| coerce(e.into_server_error(Default::default()).message))?
            .to_filter(),
        FilterInput::ComputerGroup => ComputerGroupFilter::parse(Some(value))
            .map_err(|e| coerce(e.into_server_error(Default::default()).message))?
            .to_filter(),
    }
    .map_err(|e| e.to_string())
}
