//! `TaniumTag` (short name `ttag`): keep custom tags on the endpoints that match, correcting drift.

// kube's `printcolumn(type_ = ...)` repeats attribute keys by design; clippy reads them as duplicates.
#![allow(clippy::duplicated_attributes)]

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Deployment, ResultCounts, Safety, Targets, parse_interval};

/// Keep Tanium custom tags on the endpoints that match: tag those that lack them every `interval`, remove tags
/// dropped from the spec, and remove them all when the object is deleted.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tanium-operator.dev",
    version = "v1alpha1",
    kind = "TaniumTag",
    plural = "taniumtags",
    shortname = "ttag",
    category = "tanium",
    namespaced,
    status = "TaniumTagStatus",
    doc = "Keep Tanium custom tags on the endpoints that match, correcting drift.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Tags", type_ = "string", json_path = ".spec.tags"),
    printcolumn(name = "Matched", type_ = "integer", json_path = ".status.matched"),
    printcolumn(name = "Tagged", type_ = "integer", json_path = ".status.tagged"),
    printcolumn(name = "Pending", type_ = "integer", json_path = ".status.pending"),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!self.safety.requirePreviewApproval")
    .message("safety.requirePreviewApproval is not supported for TaniumTag: each round targets only the endpoints that lack a tag; use safety.maxTargets"))]
#[x_kube(validation = Rule::new("has(self.connectionRef) == has(oldSelf.connectionRef) && (!has(self.connectionRef) || self.connectionRef == oldSelf.connectionRef)")
    .message("connectionRef is immutable: what this object did in Tanium lives on that server; create a new object for another"))]
#[serde(rename_all = "camelCase")]
pub struct TaniumTagSpec {
    /// The custom tags every matching endpoint must carry.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 64)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(t, t.matches('^[A-Za-z0-9][A-Za-z0-9_.:-]*$'))")
        .message("a tag starts with a letter or digit and holds only letters, digits and _ . : -"))]
    pub tags: Vec<String>,

    pub targets: Targets,

    /// How often to look for matching endpoints that lack a tag (e.g. `30s`, `5m`, `1h30m`).
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = super::INTERVAL_PATTERN))]
    pub interval: String,

    /// Stop tagging (tags already set stay).
    #[serde(default)]
    pub suspend: bool,

    /// `maxTargets` caps how many endpoints one round may tag.
    #[serde(default)]
    pub safety: Safety,

    /// The Tanium server this object's requests go to: a TaniumConnection of this namespace, or a
    /// ClusterTaniumConnection that lists this namespace. Without it, the operator's own connection. It cannot
    /// change: what this object did in Tanium lives on that server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_ref: Option<super::ConnectionRef>,
}

fn default_interval() -> String {
    "5m".into()
}

impl TaniumTagSpec {
    /// The drift-check interval; the schema's pattern guarantees the shape, this guards the value.
    pub fn interval(&self) -> Duration {
        parse_interval(&self.interval)
            .unwrap_or(Duration::from_secs(300))
            .max(Duration::from_secs(1))
    }
}

/// Adding or removing tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RoundKind {
    Add,
    Remove,
}

/// One tagging round: the tags, how many endpoints it targeted, and its deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagRound {
    pub number: u64,
    pub kind: RoundKind,
    pub tags: Vec<String>,
    pub targeted: u64,
    #[serde(flatten)]
    pub deployment: Deployment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<ResultCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TagPhase {
    Pending,
    /// Every matching endpoint carries every tag.
    InSync,
    Tagging,
    Removing,
    /// The next round would reach more endpoints than the operator's approval threshold; it waits for the
    /// `tanium-operator.dev/approved-preview` annotation with `status.roundDigest`.
    AwaitingPreviewApproval,
    Blocked,
    Suspended,
}

/// What the operator observed and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaniumTagStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TagPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Endpoints the targets match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<u64>,
    /// Of those, the ones carrying every tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tagged: Option<u64>,
    /// Of those, the ones lacking a tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// What a person approves (in the `tanium-operator.dev/approved-preview` annotation) when the next round would
    /// reach more endpoints than the operator's approval threshold: the tags, the targets and that count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_digest: Option<String>,
    /// Tags this object has put on endpoints (removed again when dropped from the spec or on deletion).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_tags: Vec<String>,
    /// Rounds started so far; numbers each round's action name.
    #[serde(default)]
    pub rounds: u64,
    /// The round in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<TagRound>,
    /// The last round that finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_round: Option<TagRound>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
