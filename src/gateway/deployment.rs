//! What a deployment is, as `actionPerform` takes it: the package and its values, the targets, the schedule, and
//! the checks a request passes before it is sent.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::GatewayError;
use super::filter::{Filter, GroupRef};
use super::{EndpointId, Platform};

/// The Gateway takes at most this many endpoint ids in `targets.endpoints`.
pub const MAX_TARGET_ENDPOINTS: usize = 25;

/// A sensor-sourced parameter: its name as the package spec lists it, and the value to use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PackageParam {
    pub name: String,
    pub value: String,
}

/// The package to run and its values (`PackageRefInput`). `params[n]` fills `$n+1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PackageRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensor_sourced_params: Vec<PackageParam>,
}

/// Which endpoints, within the action group, the action runs on. One mode only, by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An ad-hoc computer group: the filter that was previewed.
    Filter(Filter),
    /// Up to 25 endpoints by id.
    Endpoints(Vec<EndpointId>),
    /// A computer group defined in Tanium.
    Group(GroupRef),
}

impl Target {
    /// As the `endpoints` query takes it: a filter (a group is a `memberOf` filter), or ids.
    pub fn into_query(self) -> (Option<Filter>, Vec<EndpointId>) {
        match self {
            Self::Filter(f) => (Some(f), Vec::new()),
            Self::Endpoints(ids) => (None, ids),
            Self::Group(g) => (
                Some(Filter {
                    member_of: Some(g),
                    ..Filter::default()
                }),
                Vec::new(),
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Targets {
    pub action_group: GroupRef,
    pub target: Target,
    pub platforms: Vec<Platform>,
}

/// `ActionPerformScheduleInput`. All empty: run once, now, on the endpoints online.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribute_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue_seconds: Option<i64>,
    /// RFC 3339 with an offset, e.g. `2026-12-01T08:00:00Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<jiff::Timestamp>,
    /// RFC 3339 with an offset; needed with `reissueSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<jiff::Timestamp>,
}

/// One `actionPerform`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PerformRequest {
    /// Unique per intent: after an unknown outcome the action is found again by this name.
    pub name: String,
    pub comment: String,
    pub package: PackageRef,
    pub targets: Targets,
    pub schedule: Schedule,
}

impl PerformRequest {
    /// Reject before sending what the Gateway would reject, or what would deploy something unintended.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let bad = |m: String| Err(GatewayError::InvalidRequest(m));
        if self.name.trim().is_empty() {
            return bad("an action needs a name (it is how a lost answer is found again)".into());
        }
        if self.package.id.is_none() && self.package.name.is_none() {
            return bad("the package needs a name or id".into());
        }
        if self.targets.action_group.id.is_none() && self.targets.action_group.name.is_none() {
            return bad("the action group needs a name or id".into());
        }
        match &self.targets.target {
            Target::Filter(f) => f.validate(),
            Target::Endpoints(ids) if ids.is_empty() => bad("no endpoint ids to target".into()),
            Target::Endpoints(ids) if ids.len() > MAX_TARGET_ENDPOINTS => bad(format!(
                "{} endpoint ids; the Gateway takes at most {MAX_TARGET_ENDPOINTS}, use a filter",
                ids.len()
            )),
            Target::Endpoints(_) => Ok(()),
            Target::Group(g) if g.id.is_none() && g.name.is_none() => {
                bad("the target group needs a name or id".into())
            }
            Target::Group(_) => Ok(()),
        }
    }

    /// The `ActionPerformInput` variable.
    pub fn to_input(&self) -> Value {
        let mut targets = json!({ "actionGroup": self.targets.action_group });
        match &self.targets.target {
            Target::Filter(f) => targets["targetGroup"] = json!({ "filter": f }),
            Target::Group(g) => targets["targetGroup"] = json!(g),
            Target::Endpoints(ids) => targets["endpoints"] = json!(ids),
        }
        if !self.targets.platforms.is_empty() {
            targets["platforms"] = json!(self.targets.platforms);
        }
        let mut input = json!({
            "name": self.name,
            "comment": self.comment,
            "package": self.package,
            "targets": targets,
        });
        if self.schedule != Schedule::default() {
            input["schedule"] = json!(self.schedule);
        }
        input
    }
}
