//! Direct Endpoint Connect: a live connection to one endpoint for performance, processes, alerts, and ending a
//! process. Uses the current family (`directConnect*`) and falls back to the older one (`openDirectConnection`,
//! `directEndpoint`, `killProcess`) on Gateways that lack it. Connections close after two minutes idle.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::GatewayError;
use super::transport::{Document, GatewayClient, RawResponse, Repeat};
use super::{EndpointId, data_field};

const OPEN: &str = r#"mutation directConnectOpen($endpointID: ID!) {
  directConnectOpen(input: {endpointID: $endpointID}) { connectionID status }
}"#;
const STATUS: &str = r#"query directConnectConnectionStatus($connectionID: ID!) {
  directConnectConnectionStatus(input: {connectionID: $connectionID}) { status }
}"#;
const PING: &str = r#"mutation directConnectPing($connectionID: ID!) {
  directConnectPing(input: {connectionID: $connectionID}) { result }
}"#;
const CLOSE: &str = r#"mutation directConnectClose($connectionID: ID!) {
  directConnectClose(input: {connectionID: $connectionID}) { result }
}"#;
const READ: &str = r#"query directConnectEndpoint($connectionID: ID!, $withPerformance: Boolean!, $withProcesses: Boolean!, $withAlerts: Boolean!, $alertsSince: Time!) {
  directConnectEndpoint(input: {connectionID: $connectionID}) {
    performance @include(if: $withPerformance) { cpuUsagePercent memoryUsedPercent }
    processes @include(if: $withProcesses) { all { pid ppid name commandLine userName groupName cpuUsagePercent memoryResidentBytes } }
    alerts @include(if: $withAlerts) { all(scope: {startTime: $alertsSince}) { key type labels start resolvedAt value firing } }
  }
}"#;
const TERMINATE: &str = r#"mutation directConnectProcessTerminate($connectionID: ID!, $pid: Int!, $name: String!, $signal: Signal!) {
  directConnectProcessTerminate(input: {connectionID: $connectionID, pid: $pid, name: $name, signal: $signal}) { result }
}"#;

const LEGACY_OPEN: &str = r#"mutation openDirectConnection($endpointID: ID!) {
  openDirectConnection(input: {endpointID: $endpointID}) { connectionID }
}"#;
const LEGACY_PING: &str = r#"mutation pingDirectConnection($connectionID: ID!) {
  pingDirectConnection(input: {connectionID: $connectionID}) { result }
}"#;
const LEGACY_CLOSE: &str = r#"mutation closeDirectConnection($connectionID: ID!) {
  closeDirectConnection(input: {connectionID: $connectionID}) { result }
}"#;
const LEGACY_READ: &str = r#"query directEndpoint($endpointID: ID!, $withPerformance: Boolean!, $withProcesses: Boolean!, $withAlerts: Boolean!, $alertsSince: Time!) {
  directEndpoint(input: {endpointID: $endpointID}) {
    performance @include(if: $withPerformance) { cpuUsagePercent memoryUsedPercent }
    processes @include(if: $withProcesses) { all { pid ppid name commandLine userName groupName cpuUsagePercent memoryResidentBytes } }
    alerts @include(if: $withAlerts) { all(scope: {startTime: $alertsSince}) { key type labels start resolvedAt value firing } }
  }
}"#;
const LEGACY_KILL: &str = r#"mutation killProcess($connectionID: ID!, $pid: Int!, $name: String!, $signal: Signal!) {
  killProcess(input: {connectionID: $connectionID, pid: $pid, name: $name, signal: $signal}) { result }
}"#;

pub(crate) const DOCUMENTS: [(&str, &str); 11] = [
    ("directConnectOpen", OPEN),
    ("directConnectConnectionStatus", STATUS),
    ("directConnectPing", PING),
    ("directConnectClose", CLOSE),
    ("directConnectEndpoint", READ),
    ("directConnectProcessTerminate", TERMINATE),
    ("openDirectConnection", LEGACY_OPEN),
    ("pingDirectConnection", LEGACY_PING),
    ("closeDirectConnection", LEGACY_CLOSE),
    ("directEndpoint", LEGACY_READ),
    ("killProcess", LEGACY_KILL),
];

/// A connection just opened, not necessarily ready yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub connection: DirectConnection,
    /// The status the open reported (READY, CONNECTING, ...).
    pub status: String,
}

/// Which family of Direct Connect operations a Gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Current,
    Legacy,
}

/// An open connection to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectConnection {
    pub id: String,
    pub endpoint: EndpointId,
    pub family: Family,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Signal {
    Sigint,
    Sigkill,
    Sigterm,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Performance {
    pub cpu_usage_percent: f64,
    pub memory_used_percent: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub pid: i64,
    #[serde(default)]
    pub ppid: i64,
    pub name: String,
    #[serde(default)]
    pub command_line: String,
    #[serde(default)]
    pub user_name: String,
    #[serde(default)]
    pub group_name: String,
    #[serde(default)]
    pub cpu_usage_percent: f64,
    #[serde(default)]
    pub memory_resident_bytes: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub key: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub labels: Option<Value>,
    pub start: Option<String>,
    pub resolved_at: Option<String>,
    pub value: Option<f64>,
    pub firing: Option<bool>,
}

/// What to read in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub performance: bool,
    pub processes: bool,
    pub alerts_since: Option<jiff::Timestamp>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointSnapshot {
    pub performance: Option<Performance>,
    pub processes: Option<Vec<Process>>,
    pub alerts: Option<Vec<Alert>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireOpen {
    #[serde(rename = "connectionID")]
    pub(crate) connection_id: String,
    #[serde(default)]
    pub(crate) status: Option<String>,
}

#[derive(Deserialize)]
struct WireStatus {
    status: String,
}

#[derive(Deserialize)]
struct WireResult {
    result: bool,
}

#[derive(Deserialize)]
struct WireSnapshot {
    performance: Option<Performance>,
    processes: Option<WireAll<Process>>,
    alerts: Option<WireAll<Alert>>,
}

#[derive(Deserialize)]
struct WireAll<T> {
    all: Option<Vec<T>>,
}

/// A Gateway without the current family rejects the document as naming an unknown field.
fn lacks_field(raw: &RawResponse, field: &str) -> bool {
    raw.errors.iter().any(|e| {
        let m = e.message.to_ascii_lowercase();
        m.contains(&field.to_ascii_lowercase())
            && (m.contains("cannot query field")
                || m.contains("unknown field")
                || m.contains("not defined"))
    })
}

pub(crate) enum Opened {
    Current(WireOpen),
    Absent,
}

// One decoder per operation, pure, so that `crate::fuzzing` can feed them arbitrary answers.

pub(crate) fn decode_open(raw: RawResponse) -> Result<Opened, GatewayError> {
    if lacks_field(&raw, "directConnectOpen") {
        return Ok(Opened::Absent);
    }
    data_field("directConnectOpen", raw, "directConnectOpen").map(Opened::Current)
}

pub(crate) fn decode_legacy_open(raw: RawResponse) -> Result<WireOpen, GatewayError> {
    data_field("openDirectConnection", raw, "openDirectConnection")
}

pub(crate) fn decode_status(raw: RawResponse) -> Result<String, GatewayError> {
    let s: WireStatus = data_field(
        "directConnectConnectionStatus",
        raw,
        "directConnectConnectionStatus",
    )?;
    Ok(s.status)
}

/// A ping, a close or a kill: `result: Boolean!`.
pub(crate) fn decode_result(
    op: &'static str,
    field: &str,
    raw: RawResponse,
) -> Result<bool, GatewayError> {
    let r: WireResult = data_field(op, raw, field)?;
    Ok(r.result)
}

pub(crate) fn decode_read(
    op: &'static str,
    field: &str,
    endpoint: &EndpointId,
    raw: RawResponse,
) -> Result<EndpointSnapshot, GatewayError> {
    let snap: Option<WireSnapshot> = data_field(op, raw, field)?;
    let snap = snap.ok_or_else(|| GatewayError::ConnectionFailed {
        endpoint: endpoint.to_string(),
        status: "the Gateway returned no data for the connection".into(),
    })?;
    Ok(EndpointSnapshot {
        performance: snap.performance,
        processes: snap.processes.map(|p| p.all.unwrap_or_default()),
        alerts: snap.alerts.map(|a| a.all.unwrap_or_default()),
    })
}

impl GatewayClient {
    /// Open a connection and wait (up to `ready_timeout`) until it is ready.
    pub async fn dc_open(
        &self,
        endpoint: &EndpointId,
        ready_timeout: Duration,
    ) -> Result<DirectConnection, GatewayError> {
        let opening = self.dc_open_start(endpoint).await?;
        let conn = opening.connection.clone();
        match self.wait_ready(opening, ready_timeout).await {
            Ok(()) => Ok(conn),
            Err((e, timed_out)) => {
                if timed_out {
                    // Don't leave a half-open connection behind; it would idle out, but say goodbye anyway.
                    let _ = self.dc_close(&conn).await;
                }
                Err(e)
            }
        }
    }

    /// Only the open request: the caller holds the connection id before waiting, so that it can close the
    /// connection on every path, an interrupted wait included. Follow with [`Self::dc_wait_ready`].
    pub async fn dc_open_start(&self, endpoint: &EndpointId) -> Result<Opening, GatewayError> {
        let vars = json!({ "endpointID": endpoint });
        // By what the Gateway was found to offer; not yet known: the current family, falling back to the older.
        let opened = match self.features() {
            Some(f) if !f.direct_connect && f.direct_connect_legacy => Opened::Absent,
            Some(f) if !f.direct_connect => {
                return Err(GatewayError::ConnectionFailed {
                    endpoint: endpoint.to_string(),
                    status: "this Gateway offers no Direct Connect (neither directConnectOpen nor \
                             openDirectConnection, by introspection)"
                        .into(),
                });
            }
            _ => {
                let doc = Document::fixed("directConnectOpen", OPEN, Repeat::Safe);
                self.call(&doc, &vars, decode_open).await?
            }
        };
        match opened {
            Opened::Current(open) => Ok(Opening {
                connection: DirectConnection {
                    id: open.connection_id,
                    endpoint: endpoint.clone(),
                    family: Family::Current,
                },
                status: open.status.unwrap_or_else(|| "UNKNOWN".into()),
            }),
            Opened::Absent => {
                if self.features().is_none() {
                    tracing::info!("Gateway lacks directConnectOpen; using openDirectConnection");
                }
                let doc = Document::fixed("openDirectConnection", LEGACY_OPEN, Repeat::Safe);
                let open = self.call(&doc, &vars, decode_legacy_open).await?;
                // The older family has no CONNECTING state: it is usable as soon as it is opened.
                Ok(Opening {
                    connection: DirectConnection {
                        id: open.connection_id,
                        endpoint: endpoint.clone(),
                        family: Family::Legacy,
                    },
                    status: "READY".into(),
                })
            }
        }
    }

    /// Wait (up to `ready_timeout`) until an opened connection is ready. Closes nothing: the caller owns the
    /// connection (see [`Self::dc_open_start`]).
    pub async fn dc_wait_ready(
        &self,
        opening: Opening,
        ready_timeout: Duration,
    ) -> Result<(), GatewayError> {
        self.wait_ready(opening, ready_timeout)
            .await
            .map_err(|(e, _)| e)
    }

    /// The error says whether the wait timed out (the connection may still come up) or the connection failed.
    async fn wait_ready(
        &self,
        opening: Opening,
        ready_timeout: Duration,
    ) -> Result<(), (GatewayError, bool)> {
        let Opening {
            connection: conn,
            mut status,
        } = opening;
        let endpoint = &conn.endpoint;
        let deadline = tokio::time::Instant::now() + ready_timeout;
        let mut pause = Duration::from_millis(100);
        loop {
            match status.as_str() {
                "READY" => return Ok(()),
                "ERROR" | "NOT_FOUND" => {
                    return Err((
                        GatewayError::ConnectionFailed {
                            endpoint: endpoint.to_string(),
                            status: format!(
                                "status {status} (is the endpoint known, online, with the Performance module?)"
                            ),
                        },
                        false,
                    ));
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err((
                        GatewayError::ConnectionFailed {
                            endpoint: endpoint.to_string(),
                            status: format!(
                                "not ready after {ready_timeout:?} (last status {status})"
                            ),
                        },
                        true,
                    ));
                }
                _ => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            status = self.dc_status(&conn).await.map_err(|e| (e, false))?;
        }
    }

    /// UNKNOWN, READY, CONNECTING, ERROR or NOT_FOUND (a closed or idled-out connection).
    pub async fn dc_status(&self, conn: &DirectConnection) -> Result<String, GatewayError> {
        if conn.family == Family::Legacy {
            // The older family has no status query; a ping says whether it is alive.
            return Ok(if self.dc_ping(conn).await? {
                "READY"
            } else {
                "NOT_FOUND"
            }
            .into());
        }
        let doc = Document::fixed("directConnectConnectionStatus", STATUS, Repeat::Safe);
        self.call(&doc, &json!({ "connectionID": conn.id }), decode_status)
            .await
    }

    /// Keep the connection from idling out. `false`: the Gateway no longer has it.
    pub async fn dc_ping(&self, conn: &DirectConnection) -> Result<bool, GatewayError> {
        let (op, query, field) = match conn.family {
            Family::Current => ("directConnectPing", PING, "directConnectPing"),
            Family::Legacy => ("pingDirectConnection", LEGACY_PING, "pingDirectConnection"),
        };
        self.dc_result(op, query, field, json!({ "connectionID": conn.id }))
            .await
    }

    pub async fn dc_close(&self, conn: &DirectConnection) -> Result<bool, GatewayError> {
        let (op, query, field) = match conn.family {
            Family::Current => ("directConnectClose", CLOSE, "directConnectClose"),
            Family::Legacy => (
                "closeDirectConnection",
                LEGACY_CLOSE,
                "closeDirectConnection",
            ),
        };
        self.dc_result(op, query, field, json!({ "connectionID": conn.id }))
            .await
    }

    /// Read what `what` asks for in one request.
    pub async fn dc_read(
        &self,
        conn: &DirectConnection,
        what: Reading,
    ) -> Result<EndpointSnapshot, GatewayError> {
        let (op, query, field, key, id) = match conn.family {
            Family::Current => (
                "directConnectEndpoint",
                READ,
                "directConnectEndpoint",
                "connectionID",
                conn.id.clone(),
            ),
            Family::Legacy => (
                "directEndpoint",
                LEGACY_READ,
                "directEndpoint",
                "endpointID",
                conn.endpoint.0.clone(),
            ),
        };
        let since = what.alerts_since.unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let mut vars = json!({
            "withPerformance": what.performance,
            "withProcesses": what.processes,
            "withAlerts": what.alerts_since.is_some(),
            "alertsSince": since,
        });
        vars[key] = json!(id);
        let doc = Document::fixed(op, query, Repeat::Safe);
        self.call(&doc, &vars, |raw| {
            decode_read(op, field, &conn.endpoint, raw)
        })
        .await
    }

    /// End a process. At most once: an unknown outcome is reported, never retried.
    /// `Ok(false)`: the endpoint had no such process (pid and name must both match).
    pub async fn dc_terminate(
        &self,
        conn: &DirectConnection,
        pid: i64,
        name: &str,
        signal: Signal,
    ) -> Result<bool, GatewayError> {
        let (op, query, field) = match conn.family {
            Family::Current => (
                "directConnectProcessTerminate",
                TERMINATE,
                "directConnectProcessTerminate",
            ),
            Family::Legacy => ("killProcess", LEGACY_KILL, "killProcess"),
        };
        let doc = Document::fixed(op, query, Repeat::AtMostOnce);
        let vars = json!({ "connectionID": conn.id, "pid": pid, "name": name, "signal": signal });
        self.call(&doc, &vars, |raw| decode_result(op, field, raw))
            .await
    }

    /// Run `work` while pinging the connection `current` names every `every`, so that work that takes longer
    /// than the idle timeout (slow reads, retries) does not lose it. `current` is asked before each ping, because
    /// the work may replace a dropped connection with a new one.
    pub async fn while_pinging<T>(
        &self,
        every: Duration,
        current: impl Fn() -> Option<DirectConnection>,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let pings = async {
            loop {
                tokio::time::sleep(every).await;
                if let Some(conn) = current() {
                    match self.dc_ping(&conn).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::debug!(connection = %conn.id, "ping: connection gone")
                        }
                        Err(e) => tracing::debug!(connection = %conn.id, error = %e, "ping failed"),
                    }
                }
            }
        };
        tokio::select! {
            out = work => out,
            never = pings => never,
        }
    }

    /// Is the connection still there? An error asking says nothing either way: `None`.
    pub async fn dc_alive(&self, conn: &DirectConnection) -> Option<bool> {
        match self.dc_status(conn).await {
            Ok(status) => Some(matches!(status.as_str(), "READY" | "CONNECTING")),
            Err(GatewayError::GraphQl { .. }) => Some(false),
            Err(_) => None,
        }
    }

    async fn dc_result(
        &self,
        op: &'static str,
        query: &'static str,
        field: &'static str,
        vars: Value,
    ) -> Result<bool, GatewayError> {
        let doc = Document::fixed(op, query, Repeat::Safe);
        self.call(&doc, &vars, |raw| decode_result(op, field, raw))
            .await
    }
}
