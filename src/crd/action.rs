//! `TaniumAction` (short name `ta`): deploy one package, once, to the endpoints a preview showed.

// kube's `printcolumn(type_ = ...)` repeats attribute keys by design; clippy reads them as duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Deployment, Preview, ResultCounts, Safety, Targets};

/// Deploy one Tanium package once, through the Tanium API Gateway, after previewing its targets.
///
/// What defines the deployment is immutable, as on a Job: to run again, create a new object.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tanium-operator.dev",
    version = "v1alpha1",
    kind = "TaniumAction",
    plural = "taniumactions",
    shortname = "ta",
    category = "tanium",
    namespaced,
    status = "TaniumActionStatus",
    doc = "Deploy one Tanium package once, through the Tanium API Gateway, after previewing its targets.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Targets",
        type_ = "integer",
        json_path = ".status.preview.count"
    ),
    printcolumn(
        name = "Completed",
        type_ = "integer",
        json_path = ".status.results.completed"
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        json_path = ".status.results.failed"
    ),
    printcolumn(
        name = "Action",
        type_ = "string",
        json_path = ".status.scheduledActions[*].lastActionId"
    ),
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
#[x_kube(validation = Rule::new(
    "has(self.actionName) == has(oldSelf.actionName) && (!has(self.actionName) || self.actionName == oldSelf.actionName)"
).message("actionName is immutable; create a new TaniumAction to run again"))]
#[x_kube(validation = Rule::new("has(self.connectionRef) == has(oldSelf.connectionRef) && (!has(self.connectionRef) || self.connectionRef == oldSelf.connectionRef)")
    .message("connectionRef is immutable: what this object did in Tanium lives on that server; create a new object for another"))]
#[serde(rename_all = "camelCase")]
pub struct TaniumActionSpec {
    #[x_kube(validation = Rule::new("self == oldSelf").message("package is immutable; create a new TaniumAction to run again"))]
    pub package: PackageSpec,

    #[x_kube(validation = Rule::new("self == oldSelf").message("targets is immutable; create a new TaniumAction to run again"))]
    pub targets: Targets,

    /// When and how long it runs. Empty: once, now, on the endpoints online.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("schedule is immutable; create a new TaniumAction to run again"))]
    #[x_kube(validation = Rule::new("!has(self.reissueSeconds) || has(self.endTime)")
        .message("a recurring action (reissueSeconds) needs an endTime"))]
    #[x_kube(validation = Rule::new("!has(self.distributeSeconds) || (self.distributeSeconds >= 0 && self.distributeSeconds <= 604800)")
        .message("distributeSeconds must be between 0 and 604800 (7 days)"))]
    #[x_kube(validation = Rule::new("!has(self.expireSeconds) || (self.expireSeconds >= 60 && self.expireSeconds <= 2592000)")
        .message("expireSeconds must be between 60 and 2592000 (30 days)"))]
    #[x_kube(validation = Rule::new("!has(self.reissueSeconds) || (self.reissueSeconds >= 60 && self.reissueSeconds <= 2592000)")
        .message("reissueSeconds must be between 60 and 2592000 (30 days)"))]
    pub schedule: Schedule,

    /// Shown in Tanium's action history.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("comment is immutable"))]
    pub comment: String,

    /// Prefix of the Tanium action name (default `<namespace>/<name>`). A digest of the namespace, the name and
    /// what defines the deployment (package, params, targets, schedule, comment, actionName, runId) follows it,
    /// so the Tanium action belongs to the manifest, not to this object: deleted and applied again unchanged (a
    /// GitOps tool re-creating it, ttlSecondsAfterFinished, a manual delete), the object finds the action it
    /// deployed before and deploys nothing. To run the same thing again on purpose, change the name or runId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub action_name: Option<String>,

    /// Part of the Tanium action's identity and nothing else: a new value is a new run of the same manifest (for
    /// example a date or a ticket number). Without it, the same manifest applied again adopts the earlier action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("runId is immutable; create a new TaniumAction to run again"))]
    pub run_id: Option<String>,

    #[serde(default)]
    pub safety: Safety,

    /// How the preview counts the targets: cached or live (it may change; it does not define the deployment).
    #[serde(default)]
    pub preview: super::PreviewSettings,

    /// Stop the Tanium action once it has done what the preview showed, rather than leave it open until it
    /// expires: when as many endpoints finished as the preview counted and none is downloading, running, about
    /// to retry or awaiting verification. The stop cuts off only endpoints that have not started: ones still
    /// waiting (for their distribution slot, or online but not yet begun), and ones that come online later or
    /// start to match the filter before it would have expired. `status.results.waitingWhenStopped` records how
    /// many were waiting. Set false to let Tanium run it until it expires.
    #[serde(default = "yes")]
    pub stop_when_complete: bool,

    /// What deleting this object does to a Tanium action that is still open.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Hold the deployment (it has no effect once deployed).
    #[serde(default)]
    pub suspend: bool,

    /// Delete the object this long after it finished, as a Job does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,

    /// The Tanium server this object's requests go to: a TaniumConnection of this namespace, or a
    /// ClusterTaniumConnection that lists this namespace. Without it, the operator's own connection. It cannot
    /// change: what this object did in Tanium lives on that server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_ref: Option<super::ConnectionRef>,
}

fn yes() -> bool {
    true
}

/// Characters of the readable part of a Tanium action name; the digest follows.
const MAX_NAME_PREFIX: usize = 120;

impl TaniumActionSpec {
    /// The Tanium action name of the object `namespace/name` with this spec: a readable prefix and a digest of
    /// the namespace, the name and what defines the deployment. Equal manifests give equal names (a re-created
    /// object finds its earlier action by it); a change to any of them, `runId` included, gives a new one. Fields
    /// that do not define the deployment (safety limits, suspend, TTL, deletion policy, stopWhenComplete) are
    /// left out: changing them does not make a new run.
    pub fn tanium_action_name(&self, namespace: &str, name: &str) -> String {
        use sha2::{Digest as _, Sha256};
        // A struct, not a JSON map: its fields are written in declaration order whatever serde_json's features.
        #[derive(Serialize)]
        struct Identity<'a> {
            namespace: &'a str,
            name: &'a str,
            package: &'a PackageSpec,
            targets: &'a Targets,
            schedule: &'a Schedule,
            comment: &'a str,
            action_name: &'a Option<String>,
            run_id: &'a Option<String>,
        }
        let identity = Identity {
            namespace,
            name,
            package: &self.package,
            targets: &self.targets,
            schedule: &self.schedule,
            comment: &self.comment,
            action_name: &self.action_name,
            run_id: &self.run_id,
        };
        let mut hasher = Sha256::new();
        hasher.update(serde_json::to_vec(&identity).unwrap_or_default());
        let hex: String = hasher
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let prefix = self
            .action_name
            .clone()
            .unwrap_or_else(|| format!("{namespace}/{name}"));
        // Bounded, so that no Gateway truncates the digest away (the digest is what finds the action again).
        let prefix: String = prefix.chars().take(MAX_NAME_PREFIX).collect();
        format!("{prefix} [{hex}]")
    }
}

/// The package and the values of its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageSpec {
    /// Exact package name, as `packageSpecs` lists it.
    #[schemars(length(min = 1, max = 512))]
    pub name: String,
    /// Positional values: the first fills `$1`, and so on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 4096)))]
    pub params: Vec<String>,
    /// Values for sensor-sourced parameters, by name (the Gateway reads no sensor: the value is used as given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub sensor_sourced_params: Vec<PackageParam>,
}

/// A sensor-sourced parameter: its name as the package spec lists it, and the value to use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct PackageParam {
    /// The parameter's name, as Tanium's package lists it.
    pub name: String,
    /// The value, used as given.
    pub value: String,
}

/// A time that every reader decodes alike: an offset is required (a time without one would fail to decode).
pub const RFC3339_WITH_OFFSET: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|z|[+-][0-9]{2}:[0-9]{2})$";

/// When and how long the action runs (the Gateway's `ActionPerformScheduleInput`). All empty: once, now, on the
/// endpoints online.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Seconds over which endpoints start at random moments, so that they do not all download at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribute_seconds: Option<i64>,
    /// Seconds after its start that the action expires (Tanium's default when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_seconds: Option<i64>,
    /// Seconds between reissues of a recurring action (needs `endTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue_seconds: Option<i64>,
    /// RFC 3339 with an offset, e.g. `2026-12-01T08:00:00Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = RFC3339_WITH_OFFSET))]
    pub start_time: Option<jiff::Timestamp>,
    /// RFC 3339 with an offset; needed with `reissueSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = RFC3339_WITH_OFFSET))]
    pub end_time: Option<jiff::Timestamp>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Stop the Tanium action (and delete a recurring one's schedule) before the object goes.
    #[default]
    Stop,
    /// Leave the Tanium action as it is.
    Orphan,
}

/// Where a TaniumAction is in its life. Terminal phases cost no Gateway request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Accepted, nothing done yet.
    Pending,
    /// Held by `suspend`.
    Suspended,
    /// Held by a safety gate, bad input or policy; `conditions` say why and what to do.
    Blocked,
    /// Previewed; waits for the approved-preview annotation.
    AwaitingPreviewApproval,
    /// The intent is recorded; `actionPerform` is being (or was just) called.
    Deploying,
    /// Deployed; Tanium holds it until a second user approves it there.
    AwaitingApproval,
    /// Deployed and running on endpoints.
    Running,
    /// The action is over and ran on endpoints; the Completed condition's reason says whether every target
    /// finished cleanly (Completed), some failed (CompletedWithFailures) or some never ran (CompletedPartially).
    Completed,
    /// The action expired without running on any endpoint.
    Expired,
    /// Stopped before every target finished (by deletion, or by someone in Tanium).
    Stopped,
    /// Cannot proceed and will not retry (e.g. the Gateway refused the deployment).
    Failed,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Expired | Self::Stopped | Self::Failed
        )
    }

    /// Has an `actionPerform` possibly happened?
    pub fn is_deployed(self) -> bool {
        matches!(
            self,
            Self::Deploying | Self::AwaitingApproval | Self::Running
        ) || self.is_terminal()
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PackageStatus {
    pub id: String,
    pub name: String,
}

/// What the operator observed and did; the durable record of the deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaniumActionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Preview>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageStatus>,
    /// The Tanium action: its name (recorded before `actionPerform`) and what that created.
    #[serde(flatten)]
    pub deployment: Deployment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<ResultCounts>,
    /// When `results` were written. While an action runs its counts are written at most this often (the operator's
    /// `--results-write-seconds`, 30 by default), not on every change: the apiserver is the limit under a burst.
    /// Phase changes and the final counts are written at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_written_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> TaniumActionSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    const MANIFEST: &str = r#"
package: {name: "Custom Tagging - Add Tags", params: ["ci"]}
targets: {endpoints: ["274177"]}
"#;

    /// Every field that defines a deployment, filled in.
    const FULL: &str = r#"
package:
  name: "Kill Process"
  params: ["9"]
  sensorSourcedParams: [{name: "Running Processes with MD5 Hash_MD5 Hash", value: "4bf0"}]
targets:
  actionGroup: {name: "Servers"}
  filter:
    any: true
    filters:
      - {sensor: {name: "Running Processes with MD5 Hash", column: "MD5 Hash"}, op: EQ, value: "4bf0"}
      - {memberOf: {id: "12"}, negated: true}
      - {sensor: {name: "Custom Tags", params: [{name: "p", value: "v"}]}, op: CONTAINS, value: "PCI"}
  platforms: [Windows, AIX]
schedule:
  distributeSeconds: 600
  expireSeconds: 3600
  reissueSeconds: 86400
  startTime: "2026-12-01T08:00:00Z"
  endTime: "2026-12-31T08:00:00+01:00"
comment: "INC-42"
actionName: "kill-miner"
runId: "2026-12-03"
"#;

    /// A re-created object finds its earlier action by this name, so it must not change across versions: the
    /// value below was computed by the release before the API got its own types (when it serialised the Gateway
    /// client's), and any change to how a defining field serialises fails here before it deploys twice.
    #[test]
    fn the_tanium_action_name_is_stable_across_versions() {
        assert_eq!(
            spec(FULL).tanium_action_name("team-a", "kill"),
            "kill-miner [0ab591ef32d3787a]"
        );
    }

    #[test]
    fn the_tanium_action_name_belongs_to_the_manifest() {
        let a = spec(MANIFEST);
        let name = a.tanium_action_name("ns", "tag");
        assert!(name.starts_with("ns/tag ["), "{name}");
        // The same manifest, as a new object (another uid, another life): the same name.
        assert_eq!(spec(MANIFEST).tanium_action_name("ns", "tag"), name);
        // What does not define the deployment does not make a new run.
        let mut held = spec(MANIFEST);
        held.suspend = true;
        held.ttl_seconds_after_finished = Some(60);
        held.safety.max_targets = Some(3);
        held.stop_when_complete = false;
        assert_eq!(held.tanium_action_name("ns", "tag"), name);
        // Everything that does, and the object's place, does.
        let mut others = vec![
            a.tanium_action_name("other", "tag"),
            a.tanium_action_name("ns", "tag2"),
        ];
        let mut run = spec(MANIFEST);
        run.run_id = Some("2026-12-03".into());
        others.push(run.tanium_action_name("ns", "tag"));
        let mut params = spec(MANIFEST);
        params.package.params = vec!["other".into()];
        others.push(params.tanium_action_name("ns", "tag"));
        let mut comment = spec(MANIFEST);
        comment.comment = "again".into();
        others.push(comment.tanium_action_name("ns", "tag"));
        let mut schedule = spec(MANIFEST);
        schedule.schedule.expire_seconds = Some(600);
        others.push(schedule.tanium_action_name("ns", "tag"));
        let mut named = spec(MANIFEST);
        named.action_name = Some("ns/tag".into());
        others.push(named.tanium_action_name("ns", "tag"));
        for other in &others {
            assert_ne!(other, &name);
        }
        // A long prefix is cut; the digest is always there.
        let mut long = spec(MANIFEST);
        long.action_name = Some("x".repeat(200));
        let n = long.tanium_action_name("ns", "tag");
        assert_eq!(n.chars().count(), MAX_NAME_PREFIX + 2 + 16 + 1, "{n}");
    }
}
