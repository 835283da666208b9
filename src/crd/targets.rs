//! Targeting as a manifest writes it: the action group, a filter or endpoint ids, the platforms.
//!
//! These are the API's own types. Their JSON is the Gateway's (`ComputerGroupFilter`, `EndpointPlatform`), so a
//! filter copied from Tanium's documentation works unchanged, but they are not the Gateway client's: the
//! controller converts them (`controller::wire`) and checks the converted form, so the API does not change when
//! the client's wire types do. Their serialised form is part of every Tanium action name
//! ([`super::TaniumActionSpec::tanium_action_name`]): a field renamed or reordered here renames every action.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The Gateway takes at most this many endpoint ids in `targets.endpoints`.
pub const MAX_TARGET_ENDPOINTS: usize = 25;

/// Which endpoints a resource acts on: a filter (previewed with `endpoints`, deployed as an ad-hoc computer
/// group) or up to 25 endpoint ids, within an action group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.filter) != has(self.endpoints)")
    .message("targets needs exactly one of filter or endpoints"))]
pub struct Targets {
    /// The Tanium action group the action runs in (default "All Computers"). It may hold more endpoints than
    /// the filter selects; the filter narrows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_group: Option<GroupRef>,
    /// A Gateway filter (`ComputerGroupFilter` shape: sensor comparisons and `memberOf`, combined with
    /// `filters`/`any`/`negated`). The same filter is previewed and deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Endpoint ids (the Gateway's `Endpoint.id`), at most 25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 25), inner(length(min = 1, max = 64)))]
    pub endpoints: Option<Vec<String>>,
    /// Restrict to these platforms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
}

impl Targets {
    pub fn action_group(&self) -> GroupRef {
        self.action_group.clone().unwrap_or_else(|| GroupRef {
            id: None,
            name: Some(super::DEFAULT_ACTION_GROUP.into()),
        })
    }
}

/// A computer group or action group by name or id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default, JsonSchema)]
pub struct GroupRef {
    /// The group's Tanium id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The group's name, as the Tanium console shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Endpoint operating system families (the Gateway's `EndpointPlatform`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Platform {
    Unknown,
    Windows,
    Linux,
    Mac,
    Solaris,
    #[serde(rename = "AIX")]
    Aix,
}

/// Comparison operators (the Gateway's `FieldFilterOp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterOp {
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

/// A sensor parameter's name and value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SensorParam {
    pub name: String,
    pub value: String,
}

/// A sensor (and optionally one of its columns) to compare.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SensorRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<SensorParam>,
}

/// A filter: a leaf (a sensor compared with `value` under `op`, or `memberOf` a group) or a node combining
/// `filters` (AND, or OR with `any`); `negated` inverts either. Its schema is spelled out in `schema.rs`; the
/// shape the schema cannot say is checked on the converted form before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<SensorRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_of: Option<GroupRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<FilterOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub negated: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any: bool,
}
