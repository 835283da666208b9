//! Custom resource types (group `tanium-operator.dev`, version `v1alpha1`) and what every kind shares:
//! targeting, safety limits, the filter's schema, conditions.

pub mod action;
pub mod connection;
mod files;
pub mod inspection;
pub mod reason;
mod schema;
pub mod tag;
pub mod targets;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResourceExt as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use action::{TaniumAction, TaniumActionSpec, TaniumActionStatus};
pub use connection::{
    ClusterTaniumConnection, ClusterTaniumConnectionSpec, ConnectionRef, ConnectionStatus,
    TaniumConnection, TaniumConnectionSpec,
};
pub use files::{CHART_CRD_DIR, REGENERATE_CRDS, chart_crd_file, chart_crd_files, crd_files};
pub use inspection::{
    TaniumEndpointInspection, TaniumEndpointInspectionSpec, TaniumEndpointInspectionStatus,
};
pub use reason::Reason;
pub use schema::CRD_FILTER_DEPTH;
pub use tag::{TaniumTag, TaniumTagSpec, TaniumTagStatus};
pub use targets::{Filter, FilterOp, GroupRef, MAX_TARGET_ENDPOINTS, Platform, Targets};

pub const GROUP: &str = "tanium-operator.dev";
/// Field manager for everything the operator writes.
pub const MANAGER: &str = "tanium-operator";
/// `tanium-operator.dev/approved-preview: <digest>`: a person approved this exact preview.
pub const APPROVED_PREVIEW_ANNOTATION: &str = "tanium-operator.dev/approved-preview";
/// Argo CD's tracking mark on what it applies (see [`gitops_manager`]).
pub const ARGOCD_TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
/// The action group used when a manifest names none.
pub const DEFAULT_ACTION_GROUP: &str = "All Computers";

/// Limits that hold a deployment back until a person looks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Safety {
    /// Block the deployment when the preview matches more endpoints than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_targets: Option<u64>,
    /// Wait for the annotation `tanium-operator.dev/approved-preview: <status.preview.digest>`.
    #[serde(default)]
    pub require_preview_approval: bool,
}

/// How the preview counts the endpoints the targets select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewSettings {
    /// `Cached` reads the Tanium Data Service: fast, but it holds only the sensors registered for collection
    /// ("harvested"), with readings up to their `maxAgeSeconds` old; a filter on any other sensor matches nothing
    /// there. `Live` asks the online endpoints, as the action itself will. `Auto` (the default) asks live when the
    /// targets compare a sensor the Data Service does not collect or collects less often than `maxReadingAge`,
    /// and reads the cached data otherwise.
    #[serde(default)]
    pub source: PreviewSource,
    /// Seconds a live preview waits for the online endpoints to answer.
    #[serde(default = "PreviewSettings::default_max_wait_time")]
    #[schemars(range(min = 5, max = 600))]
    pub max_wait_time: u32,
    /// A live preview counts only when at least this percentage of the endpoints expected to answer did; below
    /// it the deployment is held (reason `PreviewIncomplete`) and the preview asked again later.
    #[serde(default = "PreviewSettings::default_min_answered_percent")]
    #[schemars(range(min = 50, max = 100))]
    pub min_answered_percent: u8,
    /// Seconds: `Auto` reads the cached data only for sensors collected at least this often (their
    /// `maxAgeSeconds`).
    #[serde(default = "PreviewSettings::default_max_reading_age")]
    #[schemars(range(min = 0))]
    pub max_reading_age: u64,
}

impl PreviewSettings {
    fn default_max_wait_time() -> u32 {
        30
    }
    fn default_min_answered_percent() -> u8 {
        100
    }
    fn default_max_reading_age() -> u64 {
        600
    }
}

impl Default for PreviewSettings {
    fn default() -> Self {
        Self {
            source: PreviewSource::default(),
            max_wait_time: Self::default_max_wait_time(),
            min_answered_percent: Self::default_min_answered_percent(),
            max_reading_age: Self::default_max_reading_age(),
        }
    }
}

/// Where a preview may read (see [`PreviewSettings::source`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PreviewSource {
    #[default]
    Auto,
    Live,
    Cached,
}

/// Where a preview did read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PreviewRead {
    /// The online endpoints were asked.
    Live,
    /// The Tanium Data Service's collected readings.
    Cached,
}

/// What the preview found, as of `observedAt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub count: u64,
    /// Where the count was read, and why there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PreviewRead>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_reason: Option<String>,
    /// Live: how many endpoints answered, of how many the Gateway expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    /// At most ten of the matching endpoints.
    #[serde(default)]
    pub sample: Vec<EndpointSample>,
    /// Names what would be deployed to how many endpoints; approve a preview by copying it into the
    /// `tanium-operator.dev/approved-preview` annotation.
    pub digest: String,
    pub observed_at: Time,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointSample {
    pub id: String,
    pub name: String,
}

/// One scheduled action the deployment created (one per platform), and its newest action instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledActionStatus {
    pub id: String,
    #[serde(default)]
    pub platforms: Vec<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action_id: Option<String>,
    /// The action instance's Tanium status (OPEN, PENDING, ACTIVE, STOPPED, EXPIRED, CLOSED), UNRECOGNIZED for a
    /// status this operator does not know (followed as open until it expires), or GONE once Tanium has shown
    /// neither the instance nor its scheduled action for minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Per-endpoint result counts summed over the scheduled actions, and how many endpoints were targeted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultCounts {
    pub targeted: u64,
    #[serde(flatten)]
    pub counts: EndpointCounts,
    /// Endpoints still waiting (they had not started) when the operator stopped the action: the ones a stop cut
    /// off. Set only when it stopped one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_when_stopped: Option<u32>,
}

/// Endpoints in each state Tanium counts for an action instance (its `ActionResults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointCounts {
    /// Not started yet: waiting for their distribution slot, or online but not yet begun.
    #[serde(default)]
    pub waiting: u32,
    /// Downloading the package.
    #[serde(default)]
    pub downloading: u32,
    /// Running the package's command.
    #[serde(default)]
    pub running: u32,
    /// Failed once and about to try again.
    #[serde(default)]
    pub waiting_to_retry: u32,
    /// Ran the command successfully.
    #[serde(default)]
    pub completed: u32,
    /// The action expired before they finished.
    #[serde(default)]
    pub expired: u32,
    /// The command failed.
    #[serde(default)]
    pub failed: u32,
    /// Ran; the package's verification query has not answered yet.
    #[serde(default)]
    pub pending_verification: u32,
    /// Ran, and the verification query confirmed it.
    #[serde(default)]
    pub verified: u32,
    /// Ran, but the verification query did not confirm it.
    #[serde(default)]
    pub failed_verification: u32,
}

impl EndpointCounts {
    /// Endpoints that are done, one way or another (Tanium's definition of "finished").
    pub fn finished(&self) -> u32 {
        self.completed + self.expired + self.failed + self.failed_verification + self.verified
    }

    /// Endpoints with the package in hand: downloading, running, about to retry, or awaiting verification. Tanium
    /// does not document what `actionStop` does to them, so a stop is taken to cut them off.
    pub fn at_work(&self) -> u32 {
        self.downloading + self.running + self.waiting_to_retry + self.pending_verification
    }

    /// Every endpoint the action instance counts.
    pub fn total(&self) -> u32 {
        self.finished() + self.waiting + self.at_work()
    }

    /// Both instances' counts, state by state.
    pub fn plus(self, o: Self) -> Self {
        Self {
            waiting: self.waiting + o.waiting,
            downloading: self.downloading + o.downloading,
            running: self.running + o.running,
            waiting_to_retry: self.waiting_to_retry + o.waiting_to_retry,
            completed: self.completed + o.completed,
            expired: self.expired + o.expired,
            failed: self.failed + o.failed,
            pending_verification: self.pending_verification + o.pending_verification,
            verified: self.verified + o.verified,
            failed_verification: self.failed_verification + o.failed_verification,
        }
    }
}

impl ResultCounts {
    /// One line for a condition message or a terminal.
    pub fn summary(&self) -> String {
        let r = &self.counts;
        format!(
            "{} of {} targeted endpoint(s) finished: {} completed, {} failed, {} expired; {} waiting, {} running",
            r.finished(),
            self.targeted,
            r.completed + r.verified,
            r.failed + r.failed_verification,
            r.expired,
            r.waiting + r.waiting_to_retry,
            r.downloading + r.running + r.pending_verification,
        )
    }
}

/// One deployment through `actionPerform` and what it created: the record that makes it happen at most once.
/// Shared by every kind that deploys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// The exact Tanium action name, unique to this intent: recorded before `actionPerform`, so that a lost answer
    /// is found again by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_name: Option<String>,
    /// When `actionPerform` was last attempted (recorded before the call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_attempted_at: Option<Time>,
    /// One per platform; each with its newest action instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduled_actions: Vec<ScheduledActionStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<Time>,
}

/// The shape of every interval a spec takes (a subset of Go's durations, so CEL's `duration()` reads it too).
pub const INTERVAL_PATTERN: &str = r"^([0-9]+(h|m|s))+$";

/// `1h30m`, `5m`, `90s`: an interval a spec or a flag takes; zero is none.
pub fn parse_interval(s: &str) -> Option<Duration> {
    parse_duration(s).ok().filter(|d| !d.is_zero())
}

/// Parse a duration such as `30s`, `15m`, `24h`, `7d` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{s:?}: a number needs a unit (s, m, h or d)"))?;
        if digits == 0 {
            return Err(format!("{s:?}: expected a number, e.g. 30s, 15m, 24h, 7d"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => return Err(format!("{s:?}: unknown unit {other:?} (use s, m, h or d)")),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs(
            n.checked_mul(secs)
                .ok_or_else(|| format!("{s:?}: too long"))?,
        );
    }
    Ok(total)
}

/// Condition types.
pub mod condition {
    pub const READY: &str = "Ready";
    /// kstatus's (Flux, `kubectl wait`, cli-utils): present (True) while the operator works on the object and
    /// expects to get on without a person. Derived from Ready on every status write (`controller::kstatus`).
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus's: present (True) while the object cannot get on without a person (a permanent hold, an approval,
    /// `suspend`, or a failed end). Derived from Ready like Reconciling; never both.
    pub const STALLED: &str = "Stalled";
    pub const PREVIEWED: &str = "Previewed";
    pub const DEPLOYED: &str = "Deployed";
    pub const COMPLETED: &str = "Completed";
    /// Present (False) only while the operator runs with the Gateway's TLS verification off.
    pub const GATEWAY_TLS_VERIFIED: &str = "GatewayTLSVerified";
    /// Present (False) only while token rotation needs a person (see `controller::rotation`).
    pub const GATEWAY_TOKEN: &str = "GatewayToken";
    /// Present (True) while a TaniumAction with `ttlSecondsAfterFinished` is managed by a GitOps tool, which will
    /// create it again after the TTL deletes it (the operator adopts the earlier action and deploys nothing).
    pub const RECREATION_LOOP: &str = "RecreationLoop";
}

/// The GitOps tool that manages an object, from the marks each leaves on what it applies: Argo CD's tracking
/// annotation, Flux's Kustomization and HelmRelease labels. Such a tool creates a deleted object again. (Argo CD's
/// older tracking label, `app.kubernetes.io/instance`, is not taken as one: Helm charts set it on everything.)
pub fn gitops_manager(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&'static str> {
    let has = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref().is_some_and(|m| m.contains_key(key))
    };
    if has(&meta.annotations, ARGOCD_TRACKING_ANNOTATION) {
        Some("Argo CD (annotation argocd.argoproj.io/tracking-id)")
    } else if has(&meta.labels, "kustomize.toolkit.fluxcd.io/name") {
        Some("Flux (a Kustomization)")
    } else if has(&meta.labels, "helm.toolkit.fluxcd.io/name") {
        Some("Flux (a HelmRelease)")
    } else {
        None
    }
}

const MAX_CONDITION_MESSAGE: usize = 2048;

/// Set a condition, keeping its transition time when its status did not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" }.to_string();
    // Messages may quote Gateway errors; keep status small.
    let mut message: String = message.into();
    if message.len() > MAX_CONDITION_MESSAGE {
        let mut end = MAX_CONDITION_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = Time(jiff::Timestamp::now());
        }
        c.status = status;
        c.reason = reason.into();
        c.message = message;
        c.observed_generation = generation;
    } else {
        conditions.push(Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: Time(jiff::Timestamp::now()),
        });
    }
}

/// The kinds whose status carries conditions (every kind this operator serves).
pub trait Conditions {
    fn conditions(&self) -> &[Condition];
}

macro_rules! conditions_of {
    ($($kind:ty),*) => {$(
        impl Conditions for $kind {
            fn conditions(&self) -> &[Condition] {
                self.status.as_ref().map_or(&[], |s| &s.conditions)
            }
        }
    )*};
}
conditions_of!(TaniumAction, TaniumTag, TaniumEndpointInspection);

/// Does the Ready condition already carry this reason? (Then an event about it was already published.)
pub fn ready_reason_is(conditions: &[Condition], reason: &str) -> bool {
    condition(conditions, condition::READY).is_some_and(|c| c.reason == reason)
}

pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

type Crd =
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Every CRD the operator serves, as the YAML documents in `crds/`.
pub fn crds() -> Vec<Crd> {
    vec![
        unobserved_by_default(kubernetes_formats(TaniumAction::crd())),
        unobserved_by_default(kubernetes_formats(TaniumTag::crd())),
        unobserved_by_default(kubernetes_formats(TaniumEndpointInspection::crd())),
        unobserved_by_default(kubernetes_formats(TaniumConnection::crd())),
        unobserved_by_default(kubernetes_formats(ClusterTaniumConnection::crd())),
    ]
}

/// `status: {observedGeneration: 0}` by default: an object the operator has not written yet reads (from etcd,
/// where the apiserver applies schema defaults) as not observed, which kstatus takes as in progress. Without it,
/// an object without any status is "current" to kstatus, and a Flux `wait` right after an apply could pass before
/// the operator has even seen the object.
fn unobserved_by_default(crd: Crd) -> Crd {
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    if let Some(versions) = value["spec"]["versions"].as_array_mut() {
        for v in versions {
            let status = &mut v["schema"]["openAPIV3Schema"]["properties"]["status"];
            if status.is_object() {
                status["default"] = serde_json::json!({"observedGeneration": 0});
            }
        }
    }
    serde_json::from_value(value).unwrap_or(crd)
}

/// schemars names unsigned integers `uint32`/`uint64`, formats Kubernetes does not know (kubectl warns about
/// them); the schema already says `minimum: 0`, so the signed formats say the same.
fn kubernetes_formats(crd: Crd) -> Crd {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(f)) = map.get_mut("format") {
                    match f.as_str() {
                        "uint32" | "uint16" | "uint8" => *f = "int32".into(),
                        "uint64" | "uint" => *f = "int64".into(),
                        _ => {}
                    }
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    walk(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitops_tools_are_known_by_their_marks() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let with = |labels: &[&str], annotations: &[&str]| ObjectMeta {
            labels: Some(labels.iter().map(|k| (k.to_string(), "x".into())).collect()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|k| (k.to_string(), "x".into()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        };
        assert_eq!(gitops_manager(&ObjectMeta::default()), None);
        assert_eq!(gitops_manager(&with(&["app"], &["note"])), None);
        // Helm sets it on everything; alone it is no GitOps tool.
        assert_eq!(
            gitops_manager(&with(&["app.kubernetes.io/instance"], &[])),
            None
        );
        for (labels, annotations, tool) in [
            (&[][..], &["argocd.argoproj.io/tracking-id"][..], "Argo CD"),
            (&["kustomize.toolkit.fluxcd.io/name"][..], &[][..], "Flux"),
            (&["helm.toolkit.fluxcd.io/name"][..], &[][..], "Flux"),
        ] {
            let found = gitops_manager(&with(labels, annotations)).unwrap_or_default();
            assert!(
                found.starts_with(tool),
                "{labels:?} {annotations:?}: {found}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        for bad in ["", "5", "h", "5x", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_interval("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_interval("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_interval("5"), None);
        assert_eq!(parse_interval("0s"), None);
        assert_eq!(parse_interval("5x"), None);
        assert_eq!(parse_interval(""), None);
    }
}
