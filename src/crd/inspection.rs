//! `TaniumEndpointInspection` (short name `tei`): Direct Endpoint Connect as a resource. Look at one endpoint
//! live (performance, processes, alerts) every `refreshInterval`, and end one process, at most once.

// kube's `printcolumn(type_ = ...)` repeats attribute keys by design; clippy reads them as duplicates.
#![allow(clippy::duplicated_attributes)]

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::parse_interval;

/// The most processes and alerts status lists: an endpoint may run thousands of processes, and an object in
/// etcd must stay small. The counts cover the rest.
pub const MAX_TOP_PROCESSES: u32 = 50;
pub const MAX_ALERTS_LISTED: usize = 10;
/// The shortest refresh: each one is a Gateway round trip to a live endpoint.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);

/// Look at one endpoint live through Direct Endpoint Connect, and end one process on it at most once.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tanium-operator.dev",
    version = "v1alpha1",
    kind = "TaniumEndpointInspection",
    plural = "taniumendpointinspections",
    shortname = "tei",
    category = "tanium",
    namespaced,
    status = "TaniumEndpointInspectionStatus",
    doc = "Look at one endpoint live through Direct Endpoint Connect (performance, processes, alerts), and end one process on it at most once.",
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint.computerName"
    ),
    printcolumn(
        name = "CPU",
        type_ = "number",
        json_path = ".status.performance.cpuUsagePercent"
    ),
    printcolumn(
        name = "Processes",
        type_ = "integer",
        json_path = ".status.processes.count"
    ),
    printcolumn(name = "Alerts", type_ = "integer", json_path = ".status.alerts.count"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Kill",
        type_ = "string",
        json_path = ".status.kill.state",
        priority = 1
    ),
    printcolumn(
        name = "Refreshed",
        type_ = "date",
        json_path = ".status.lastRefreshed",
        priority = 1
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
#[x_kube(validation = Rule::new("!has(oldSelf.killProcess) || (has(self.killProcess) && self.killProcess == oldSelf.killProcess)")
    .message("killProcess is carried out at most once and cannot be changed or removed; create a new TaniumEndpointInspection to end another process"))]
#[x_kube(validation = Rule::new("has(self.connectionRef) == has(oldSelf.connectionRef) && (!has(self.connectionRef) || self.connectionRef == oldSelf.connectionRef)")
    .message("connectionRef is immutable: what this object did in Tanium lives on that server; create a new object for another"))]
#[serde(rename_all = "camelCase")]
pub struct TaniumEndpointInspectionSpec {
    /// The endpoint to inspect.
    #[x_kube(validation = Rule::new("self == oldSelf").message("endpoint is immutable; create a new TaniumEndpointInspection for another endpoint"))]
    pub endpoint: EndpointRef,

    /// What to read on every refresh. Default: performance, the top 10 processes by memory, and the last day's
    /// alerts.
    #[serde(default)]
    pub collect: Collect,

    /// End this process, once. Both pid and name must match on the endpoint (a pid reused by another program
    /// is left alone). Once set it cannot be changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_process: Option<KillProcess>,

    /// How often to read the endpoint again (e.g. `30s`, `5m`; at least `10s`; default `5m`). A refresh well
    /// inside Tanium's idle timeout (two minutes) keeps the Direct Connect connection open between refreshes;
    /// a longer one opens and closes it each time.
    #[serde(default = "default_refresh")]
    #[schemars(regex(pattern = super::INTERVAL_PATTERN), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("refreshInterval must be at least 10s"))]
    pub refresh_interval: String,

    /// The Tanium server this object's requests go to: a TaniumConnection of this namespace, or a
    /// ClusterTaniumConnection that lists this namespace. Without it, the operator's own connection. It cannot
    /// change: what this object did in Tanium lives on that server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_ref: Option<super::ConnectionRef>,
}

fn default_refresh() -> String {
    "5m".into()
}

impl TaniumEndpointInspectionSpec {
    /// The refresh interval; the schema's pattern and rule guarantee the shape, this guards the value.
    pub fn refresh_interval(&self) -> Duration {
        parse_interval(&self.refresh_interval)
            .unwrap_or(Duration::from_secs(300))
            .max(MIN_REFRESH)
    }
}

/// An endpoint by its Gateway id or its computer name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.id) != has(self.computerName)")
    .message("endpoint needs exactly one of id or computerName"))]
pub struct EndpointRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The endpoint's Gateway id (`Endpoint.id`).
    #[schemars(length(min = 1, max = 64))]
    pub id: Option<String>,
    /// The "Computer Name" sensor's value; it must name exactly one endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub computer_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Collect {
    /// CPU and memory use.
    #[serde(default)]
    pub performance: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<ProcessSelection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertSelection>,
}

impl Default for Collect {
    fn default() -> Self {
        Self {
            performance: true,
            processes: Some(ProcessSelection::default()),
            alerts: Some(AlertSelection::default()),
        }
    }
}

/// Which processes status lists (it always counts them all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessSelection {
    /// Only processes whose name contains this (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub name_contains: Option<String>,
    /// List the N using the most memory (at most 50).
    #[serde(default = "default_top")]
    #[schemars(range(min = 0, max = 50))]
    pub top: u32,
}

fn default_top() -> u32 {
    10
}

impl Default for ProcessSelection {
    fn default() -> Self {
        Self {
            name_contains: None,
            top: default_top(),
        }
    }
}

/// Which alerts status lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertSelection {
    /// Alerts that started within this window (e.g. `24h`, `30m`).
    #[serde(default = "default_window")]
    #[schemars(regex(pattern = super::INTERVAL_PATTERN), length(max = 16))]
    pub window: String,
}

fn default_window() -> String {
    "24h".into()
}

impl Default for AlertSelection {
    fn default() -> Self {
        Self {
            window: default_window(),
        }
    }
}

impl AlertSelection {
    pub fn window(&self) -> Duration {
        parse_interval(&self.window).unwrap_or(Duration::from_secs(24 * 3600))
    }
}

/// A process to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KillProcess {
    /// The Gateway takes a 32-bit pid.
    #[schemars(range(min = 1, max = 2147483647))]
    pub pid: i64,
    /// The process's name as the endpoint reports it (e.g. `notepad.exe`).
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// SIGTERM (default), SIGKILL or SIGINT.
    #[serde(default = "default_signal")]
    pub signal: Signal,
}

/// The signal that ends a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Signal {
    Sigint,
    Sigkill,
    Sigterm,
}

fn default_signal() -> Signal {
    Signal::Sigterm
}

/// The endpoint a spec resolved to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedEndpoint {
    /// The endpoint's Gateway id.
    pub id: String,
    pub computer_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConnectionState {
    /// Open, kept between refreshes (the refresh interval is well inside the idle timeout).
    Open,
    /// Closed after the last refresh; the next one opens a new connection.
    Closed,
    /// The last attempt to connect failed (see the Ready condition).
    Failed,
}

/// The Direct Connect connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    pub state: ConnectionState,
    /// The connection's id while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<Time>,
    /// Times a connection the Gateway had dropped (idle timeout, endpoint restart) was opened again mid-refresh.
    #[serde(default)]
    pub reconnects: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerformanceStatus {
    pub cpu_usage_percent: f64,
    pub memory_used_percent: f64,
}

/// A process, without its command line (command lines can carry secrets; `tanium-operator dec processes`
/// shows them to a person who asks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessEntry {
    pub pid: i64,
    pub ppid: i64,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    pub memory_resident_bytes: i64,
    pub cpu_usage_percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessSummary {
    /// Every process on the endpoint.
    pub count: u64,
    /// Those whose name matches `collect.processes.nameContains`, when it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<u64>,
    /// The matching processes using the most memory, at most `collect.processes.top`.
    #[serde(default)]
    pub top: Vec<ProcessEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertEntry {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub firing: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertSummary {
    /// Alerts that started within the window.
    pub count: u64,
    /// Of those, the ones still firing.
    pub firing: u64,
    /// Firing ones first, then the newest; at most 10.
    #[serde(default)]
    pub recent: Vec<AlertEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KillState {
    /// Recorded before the request is sent. Found after a restart, the request is never sent again.
    Requested,
    /// The endpoint ended the process.
    Ended,
    /// The endpoint had no process with that pid and name.
    NotFound,
    /// The Gateway refused the request; it was not carried out.
    Failed,
    /// The request may or may not have reached the endpoint (a lost answer, or a restart while it was in
    /// flight). It is not sent again; `message` says whether the process still runs.
    Unknown,
}

/// What happened to `spec.killProcess`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KillRecord {
    pub pid: i64,
    pub name: String,
    pub signal: Signal,
    pub state: KillState,
    pub requested_at: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What the last refresh saw. Bounded: counts, and short lists of the top entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaniumEndpointInspectionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<ResolvedEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<ProcessSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<KillRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refreshed: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
