//! The TaniumEndpointInspection reconciler. Every refresh: resolve the endpoint → take the object's open Direct
//! Connect connection or open one → end the requested process (intent recorded first, sent at most once) → read
//! what `collect` asks for → write a bounded summary → keep the connection for the next refresh when that comes
//! well inside the idle timeout, otherwise close it. The connection is pinged while work goes on, opened again when
//! Tanium has dropped it, and closed on deletion and on shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::{Context, Error, Events};
use crate::crd::inspection::{
    AlertEntry, AlertSummary, ConnectionState, ConnectionStatus, KillRecord, KillState,
    MAX_ALERTS_LISTED, MAX_TOP_PROCESSES, PerformanceStatus, ProcessEntry, ProcessSummary,
    ResolvedEndpoint,
};
use crate::crd::{
    TaniumEndpointInspection, TaniumEndpointInspectionStatus, condition, ready_reason_is,
    set_condition,
};
use crate::gateway::{
    Alert, DirectConnection, EndpointId, EndpointSnapshot, GatewayError, Process, Reading, Resolved,
};

pub const FINALIZER: &str = "tanium-operator.dev/close-connection";
const KIND: &str = "TaniumEndpointInspection";
/// Longest process name or alert key kept in status.
const MAX_TEXT: usize = 256;

pub async fn reconcile(
    obj: Arc<TaniumEndpointInspection>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let c = ctx.clone();
    super::with_finalizer(
        obj,
        ctx,
        FINALIZER,
        async |obj, api, events| Inspector::new(&obj, &c, &api, events).apply().await,
        async |obj, _, _| {
            let uid = obj.uid().unwrap_or_default();
            c.sessions.close(&c.gateway, &uid).await;
            Ok(Action::await_change())
        },
    )
    .await
}

/// Direct Connect connections kept open between refreshes, by object uid. Closed on deletion and when the
/// controllers stop.
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<String, DirectConnection>>);

impl Sessions {
    fn get(&self, uid: &str) -> Option<DirectConnection> {
        self.0.lock().ok()?.get(uid).cloned()
    }

    fn put(&self, uid: &str, conn: DirectConnection) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(uid.to_owned(), conn);
        }
    }

    fn take(&self, uid: &str) -> Option<DirectConnection> {
        self.0.lock().ok()?.remove(uid)
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Close one object's connection, if it has one. A failure is logged: the Gateway drops idle connections
    /// anyway.
    pub async fn close(&self, gateway: &crate::gateway::GatewayClient, uid: &str) {
        if let Some(conn) = self.take(uid) {
            close_quietly(gateway, &conn).await;
        }
    }

    /// Close every connection (the controllers are stopping).
    pub async fn close_all(&self, gateway: &crate::gateway::GatewayClient) {
        let all: Vec<DirectConnection> = match self.0.lock() {
            Ok(mut s) => s.drain().map(|(_, c)| c).collect(),
            Err(_) => return,
        };
        if !all.is_empty() {
            tracing::info!(
                connections = all.len(),
                "closing Direct Connect connections"
            );
        }
        futures::future::join_all(all.iter().map(|c| close_quietly(gateway, c))).await;
    }
}

async fn close_quietly(gateway: &crate::gateway::GatewayClient, conn: &DirectConnection) {
    match gateway.dc_close(conn).await {
        Ok(_) => {
            tracing::debug!(connection = %conn.id, endpoint = %conn.endpoint, "connection closed")
        }
        Err(e) => {
            tracing::info!(connection = %conn.id, error = %e, "cannot close connection; it idles out")
        }
    }
}

struct Inspector<'a> {
    obj: &'a TaniumEndpointInspection,
    ctx: &'a Context,
    api: &'a Api<TaniumEndpointInspection>,
    events: &'a Events,
    uid: String,
    status: TaniumEndpointInspectionStatus,
    resource_version: Option<String>,
}

impl<'a> Inspector<'a> {
    fn new(
        obj: &'a TaniumEndpointInspection,
        ctx: &'a Context,
        api: &'a Api<TaniumEndpointInspection>,
        events: &'a Events,
    ) -> Self {
        let mut status = obj.status.clone().unwrap_or_default();
        let uid = obj.uid().unwrap_or_default();
        let reason = condition_reason(&status);
        ctx.metrics.phase(KIND, &uid, reason.as_deref());
        status.observed_generation = obj.metadata.generation;
        super::mark_operator_conditions(&mut status.conditions, ctx, obj.metadata.generation);
        Self {
            obj,
            ctx,
            api,
            events,
            uid,
            status,
            resource_version: obj.metadata.resource_version.clone(),
        }
    }

    fn set_ready(&mut self, ok: bool, reason: &str, message: impl Into<String>) {
        set_condition(
            &mut self.status.conditions,
            condition::READY,
            ok,
            reason,
            message,
            self.obj.metadata.generation,
        );
    }

    fn refresh(&self) -> Duration {
        self.obj.spec.refresh_interval()
    }

    /// Keep the connection between refreshes only when the next refresh comes well inside the idle timeout;
    /// otherwise pinging for minutes just to keep it would hold a connection on the endpoint for nothing.
    fn keep_open(&self) -> bool {
        self.refresh() < self.ctx.config.timing.dc_idle_timeout.mul_f64(0.75)
    }

    async fn apply(mut self) -> Result<Action, Error> {
        let timing = &self.ctx.config.timing;
        // Reading an endpoint's processes is as sensitive as acting on it: the admin's namespace policy covers both.
        let ns = self.obj.namespace().unwrap_or_default();
        if let Some(refusal) = self.ctx.config.policy.refuses_namespace(&ns) {
            return self
                .hold("PolicyDenied", refusal, timing.permanent_error)
                .await;
        }
        let Some(selector) = self.obj.spec.endpoint.selector() else {
            return self
                .hold(
                    "InvalidSpec",
                    "spec.endpoint needs exactly one of id or computerName".into(),
                    timing.permanent_error,
                )
                .await;
        };
        let endpoint = match self.ctx.gateway.find_endpoint(&selector).await {
            Ok(Resolved::One(e)) => e,
            Ok(Resolved::None) => {
                let message = format!("Tanium knows no endpoint with {selector}");
                return self.hold("EndpointNotFound", message, timing.blocked).await;
            }
            Ok(Resolved::Several { total, some }) => {
                let ids: Vec<String> = some.iter().map(|e| e.id.to_string()).collect();
                let message = format!(
                    "{total} endpoints have {selector} (ids {}{}); name one by spec.endpoint.id",
                    ids.join(", "),
                    if total as usize > ids.len() {
                        ", …"
                    } else {
                        ""
                    }
                );
                return self
                    .hold("EndpointAmbiguous", message, timing.blocked)
                    .await;
            }
            Err(e) => return self.gateway_trouble(e).await,
        };
        self.status.endpoint = Some(ResolvedEndpoint {
            id: endpoint.id.clone(),
            computer_name: endpoint.name.clone(),
        });

        let ctx = self.ctx;
        let uid = self.uid.clone();
        let done = ctx
            .gateway
            .while_pinging(
                ctx.config.timing.dc_idle_timeout / 3,
                || ctx.sessions.get(&uid),
                self.inspect(&endpoint.id),
            )
            .await;
        let mut this = match done {
            Ok(this) => this,
            // Not kept: a connection that may be broken (`connection_trouble` forgets it too).
            Err((this, Error::Gateway(e))) => return this.connection_trouble(e).await,
            Err((_, other)) => {
                ctx.sessions.close(&ctx.gateway, &uid).await;
                return Err(other);
            }
        };
        let refresh = this.refresh();
        // `open` recorded the connection as Open with its id; a kept one stays so.
        if !this.keep_open() {
            this.forget_connection().await;
        }
        this.save().await?;
        Ok(Action::requeue(refresh))
    }

    /// Everything done on the connection. On failure `self` comes back with the error, so that the caller can
    /// record it.
    async fn inspect(mut self, endpoint: &EndpointId) -> Result<Self, (Self, Error)> {
        macro_rules! attempt {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Err((self, e.into())),
                }
            };
        }
        let mut snapshot = attempt!(self.read(endpoint).await);
        self.resolve_unknown_kill(&snapshot);
        if let Some(record) = self.pending_kill() {
            // The intent is durable before the request: a restart from here never sends it again.
            self.status.kill = Some(record.clone());
            attempt!(self.save().await);
            self.send_kill(endpoint, record).await;
            attempt!(self.save_kill_result().await);
            // What the endpoint looks like now.
            snapshot = attempt!(self.read(endpoint).await);
        }
        self.summarise(snapshot);
        let summary = self.summary_message();
        self.set_ready(true, "Inspected", summary);
        Ok(self)
    }

    /// The object's connection: the one kept from the last refresh, or a new one.
    async fn session(&mut self, endpoint: &EndpointId) -> Result<DirectConnection, GatewayError> {
        if let Some(conn) = self.ctx.sessions.get(&self.uid) {
            if &conn.endpoint == endpoint {
                return Ok(conn);
            }
            self.ctx.sessions.close(&self.ctx.gateway, &self.uid).await;
        }
        self.open(endpoint, false).await
    }

    async fn open(
        &mut self,
        endpoint: &EndpointId,
        reconnect: bool,
    ) -> Result<DirectConnection, GatewayError> {
        let gateway = &self.ctx.gateway;
        let opening = gateway.dc_open_start(endpoint).await?;
        let conn = opening.connection.clone();
        // Held before it is ready, so that every path (failure, deletion, shutdown) closes it.
        self.ctx.sessions.put(&self.uid, conn.clone());
        if let Err(e) = gateway
            .dc_wait_ready(opening, self.ctx.config.timing.dc_ready_timeout)
            .await
        {
            self.ctx.sessions.close(gateway, &self.uid).await;
            return Err(e);
        }
        let reconnects = self.status.connection.as_ref().map_or(0, |c| c.reconnects);
        self.status.connection = Some(ConnectionStatus {
            state: ConnectionState::Open,
            id: Some(conn.id.clone()),
            opened_at: Some(Time(jiff::Timestamp::now())),
            reconnects: reconnects + u32::from(reconnect),
        });
        if reconnect {
            self.event(
                false,
                "Reconnected",
                format!(
                    "the Gateway had dropped the connection to endpoint {endpoint}; opened {}",
                    conn.id
                ),
            );
        }
        tracing::debug!(connection = %conn.id, %endpoint, reconnect, "Direct Connect connection open");
        Ok(conn)
    }

    /// The kill to send now: asked for and never attempted.
    fn pending_kill(&self) -> Option<KillRecord> {
        let wanted = self.obj.spec.kill_process.as_ref()?;
        self.status.kill.is_none().then(|| KillRecord {
            pid: wanted.pid,
            name: wanted.name.clone(),
            signal: wanted.signal,
            state: KillState::Requested,
            requested_at: Time(jiff::Timestamp::now()),
            finished_at: None,
            message: None,
        })
    }

    /// `directConnectProcessTerminate`, once, on the connection the read before it has just used (so that it is
    /// not sent into a connection that idled out). Never repeated: its outcome goes into `status.kill`.
    async fn send_kill(&mut self, endpoint: &EndpointId, mut record: KillRecord) {
        let (pid, name, signal) = (record.pid, record.name.clone(), record.signal);
        let sent = match self.ctx.sessions.get(&self.uid) {
            Some(conn) => {
                self.ctx
                    .gateway
                    .dc_terminate(&conn, pid, &name, signal)
                    .await
            }
            None => Err(GatewayError::ConnectionFailed {
                endpoint: endpoint.to_string(),
                status: "no open connection".into(),
            }),
        };
        self.ctx
            .fail_point(
                "after a process termination",
                &self.ctx.fail_points.hang_after_kill,
            )
            .await;
        let (state, message, warning) = match sent {
            Ok(true) => (
                KillState::Ended,
                format!("process {pid} ({name}) ended with {signal:?}"),
                false,
            ),
            Ok(false) => (
                KillState::NotFound,
                format!(
                    "endpoint {endpoint} has no process {pid} named {name:?} (pid and name must both match)"
                ),
                true,
            ),
            Err(e) if never_reached_the_endpoint(&e) => {
                // Not carried out: forget the intent so that a later refresh tries again.
                self.status.kill = None;
                let message = format!("process {pid} ({name}) not ended yet, will try again: {e}");
                self.event(true, "KillDeferred", message);
                return;
            }
            Err(e) if refused_as_a_document(&e) => (
                KillState::Failed,
                format!("the Gateway refused to end process {pid} ({name}): {e}"),
                true,
            ),
            Err(e) => (
                KillState::Unknown,
                format!(
                    "process {pid} ({name}) may or may not have been ended; it is not sent again: {e}"
                ),
                true,
            ),
        };
        record.state = state;
        record.message = Some(message.clone());
        record.finished_at = Some(Time(jiff::Timestamp::now()));
        self.status.kill = Some(record);
        let reason = match state {
            KillState::Ended => "ProcessEnded",
            KillState::NotFound => "ProcessNotFound",
            KillState::Failed => "KillFailed",
            _ => "KillOutcomeUnknown",
        };
        self.event(warning, reason, message);
    }

    /// Write the kill's outcome now. A person's edit since the intent was written (an annotation, a label)
    /// makes the conditional write conflict; the outcome is known and must not be lost to it, so it is written
    /// again on the fresh version as long as that still holds this very intent.
    async fn save_kill_result(&mut self) -> Result<(), Error> {
        match self.save().await {
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => {
                let fresh = self.api.get_status(&self.obj.name_any()).await?;
                // One kill per object (killProcess is immutable): the recorded intent is this one.
                let still_ours = fresh
                    .status
                    .as_ref()
                    .and_then(|s| s.kill.as_ref())
                    .is_some_and(|k| k.state == KillState::Requested);
                if !still_ours {
                    return Err(Error::Kube(kube::Error::Api(s)));
                }
                self.resource_version = fresh.metadata.resource_version;
                self.save().await
            }
            other => other,
        }
    }

    /// A kill found `Requested` (the operator stopped while it was in flight) is never sent again; what the
    /// endpoint shows now goes into the record.
    fn resolve_unknown_kill(&mut self, snapshot: &EndpointSnapshot) {
        let Some(record) = self.status.kill.as_mut() else {
            return;
        };
        if record.state != KillState::Requested {
            return;
        }
        let running = snapshot.processes.as_ref().map(|all| {
            all.iter()
                .any(|p| p.pid == record.pid && p.name.eq_ignore_ascii_case(&record.name))
        });
        record.state = KillState::Unknown;
        record.finished_at = Some(Time(jiff::Timestamp::now()));
        record.message = Some(match running {
            Some(true) => format!(
                "the operator stopped while the request was in flight; process {} ({}) is still running; it is not sent again",
                record.pid, record.name
            ),
            Some(false) => format!(
                "the operator stopped while the request was in flight; process {} ({}) is no longer running",
                record.pid, record.name
            ),
            None => {
                "the operator stopped while the request was in flight; it is not sent again".into()
            }
        });
    }

    async fn read(&mut self, endpoint: &EndpointId) -> Result<EndpointSnapshot, GatewayError> {
        let collect = &self.obj.spec.collect;
        let unresolved_kill = self
            .status
            .kill
            .as_ref()
            .is_some_and(|k| k.state == KillState::Requested);
        let reading = Reading {
            performance: collect.performance,
            processes: collect.processes.is_some() || unresolved_kill,
            alerts_since: collect.alerts.as_ref().map(|a| {
                let window = jiff::SignedDuration::try_from(a.window())
                    .unwrap_or(jiff::SignedDuration::ZERO);
                jiff::Timestamp::now()
                    .checked_sub(window)
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            }),
        };
        // A read is harmless to repeat: when it failed because Tanium had dropped the connection (idle timeout,
        // endpoint restart), open a new one and read again.
        let conn = self.session(endpoint).await?;
        let e = match self.ctx.gateway.dc_read(&conn, reading).await {
            Ok(snapshot) => return Ok(snapshot),
            Err(e) => e,
        };
        if self.ctx.gateway.dc_alive(&conn).await != Some(false) {
            return Err(e);
        }
        self.ctx.sessions.take(&self.uid);
        let conn = self.open(endpoint, true).await?;
        self.ctx.gateway.dc_read(&conn, reading).await
    }

    /// Counts and short lists: status must stay small whatever the endpoint runs.
    fn summarise(&mut self, snapshot: EndpointSnapshot) {
        let collect = &self.obj.spec.collect;
        self.status.performance = snapshot.performance.map(|p| PerformanceStatus {
            cpu_usage_percent: round2(p.cpu_usage_percent),
            memory_used_percent: round2(p.memory_used_percent),
        });
        self.status.processes = match (&collect.processes, snapshot.processes) {
            (Some(selection), Some(all)) => Some(summarise_processes(
                all,
                selection.name_contains.as_deref(),
                selection.top.min(MAX_TOP_PROCESSES) as usize,
            )),
            _ => None,
        };
        self.status.alerts = snapshot.alerts.map(summarise_alerts);
        self.status.last_refreshed = Some(Time(jiff::Timestamp::now()));
    }

    fn summary_message(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.status.performance {
            parts.push(format!("CPU {:.1}%", p.cpu_usage_percent));
        }
        if let Some(p) = &self.status.processes {
            parts.push(format!("{} processes", p.count));
        }
        if let Some(a) = &self.status.alerts {
            parts.push(format!("{} alert(s), {} firing", a.count, a.firing));
        }
        if parts.is_empty() {
            "connected; nothing to collect".into()
        } else {
            parts.join(", ")
        }
    }

    /// The endpoint could not be reached or read: a condition, the connection forgotten, and another try at the
    /// next refresh (a person's problem, such as a rejected token, waits longer).
    async fn connection_trouble(mut self, e: GatewayError) -> Result<Action, Error> {
        if let GatewayError::ConnectionFailed { .. } = e {
            self.forget_connection().await;
            let reconnects = self.status.connection.as_ref().map_or(0, |c| c.reconnects);
            self.status.connection = Some(ConnectionStatus {
                state: ConnectionState::Failed,
                id: None,
                opened_at: None,
                reconnects,
            });
            // An offline endpoint may stay offline for days: not more often than the gate re-check.
            let retry = self.refresh().max(self.ctx.config.timing.blocked);
            let message = format!(
                "{e}; the endpoint must be online and have the Performance module; trying again in {retry:?}"
            );
            return self.hold("EndpointUnreachable", message, retry).await;
        }
        self.gateway_trouble(e).await
    }

    /// Not inspected this time: a condition (an event when it is news), no connection kept.
    async fn hold(
        mut self,
        reason: &str,
        message: String,
        retry: Duration,
    ) -> Result<Action, Error> {
        self.forget_connection().await;
        let unchanged = ready_reason_is(&self.status.conditions, reason);
        self.set_ready(false, reason, message.clone());
        self.save().await?;
        if !unchanged {
            self.event(true, reason, message);
        }
        Ok(Action::requeue(retry))
    }

    async fn gateway_trouble(mut self, e: GatewayError) -> Result<Action, Error> {
        self.forget_connection().await;
        let message = e.to_string();
        let unchanged = ready_reason_is(&self.status.conditions, e.reason());
        self.set_ready(false, e.reason(), message.clone());
        self.save().await?;
        if !unchanged {
            self.event(true, e.reason(), message);
        }
        super::after_gateway_error(self.ctx, e)
    }

    /// Close the object's connection, if it has one, and say so in status.
    async fn forget_connection(&mut self) {
        self.ctx.sessions.close(&self.ctx.gateway, &self.uid).await;
        if let Some(c) = self.status.connection.as_mut()
            && c.state == ConnectionState::Open
        {
            c.state = ConnectionState::Closed;
            c.id = None;
        }
    }

    /// The one place status is written.
    async fn save(&mut self) -> Result<(), Error> {
        super::write_status(
            self.api,
            &self.obj.name_any(),
            &mut self.resource_version,
            &self.status,
        )
        .await?;
        let reason = condition_reason(&self.status);
        self.ctx.metrics.phase(KIND, &self.uid, reason.as_deref());
        Ok(())
    }

    fn event(&self, warning: bool, reason: &str, note: String) {
        self.events.raise(warning, reason, note);
    }
}

/// The kill certainly never reached the endpoint (not sent: no connection, the Gateway not reached, a 401, this
/// replica fenced out): trying again later cannot end the process twice.
fn never_reached_the_endpoint(e: &GatewayError) -> bool {
    matches!(e, GatewayError::ConnectionFailed { .. })
        || (e.certainly_not_applied() && !refused_as_a_document(e))
}

/// The Gateway rejected the document as a whole before running it (validation errors carry no `path`): it would
/// refuse it again, so the kill has failed; nothing ran.
fn refused_as_a_document(e: &GatewayError) -> bool {
    matches!(e, GatewayError::GraphQl { .. }) && e.certainly_not_applied()
}

fn condition_reason(status: &TaniumEndpointInspectionStatus) -> Option<String> {
    crate::crd::condition(&status.conditions, condition::READY).map(|c| c.reason.clone())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn clip(s: String) -> String {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn summarise_processes(
    all: Vec<Process>,
    name_contains: Option<&str>,
    top: usize,
) -> ProcessSummary {
    let count = all.len() as u64;
    let needle = name_contains.map(str::to_lowercase);
    let mut matching: Vec<Process> = all
        .into_iter()
        .filter(|p| {
            needle
                .as_ref()
                .is_none_or(|n| p.name.to_lowercase().contains(n))
        })
        .collect();
    let matched = needle.is_some().then_some(matching.len() as u64);
    matching.sort_by(|a, b| {
        b.memory_resident_bytes
            .cmp(&a.memory_resident_bytes)
            .then(a.pid.cmp(&b.pid))
    });
    ProcessSummary {
        count,
        matched,
        top: matching
            .into_iter()
            .take(top)
            .map(|p| ProcessEntry {
                pid: p.pid,
                ppid: p.ppid,
                name: clip(p.name),
                user_name: clip(p.user_name),
                memory_resident_bytes: p.memory_resident_bytes,
                cpu_usage_percent: round2(p.cpu_usage_percent),
            })
            .collect(),
    }
}

fn summarise_alerts(mut all: Vec<Alert>) -> AlertSummary {
    let firing = |a: &Alert| a.firing.unwrap_or(a.resolved_at.is_none());
    let count = all.len() as u64;
    let firing_count = all.iter().filter(|a| firing(a)).count() as u64;
    // RFC 3339 times in one zone sort as text; firing ones first.
    all.sort_by(|a, b| {
        firing(b)
            .cmp(&firing(a))
            .then_with(|| b.start.cmp(&a.start))
    });
    AlertSummary {
        count,
        firing: firing_count,
        recent: all
            .into_iter()
            .take(MAX_ALERTS_LISTED)
            .map(|a| AlertEntry {
                firing: firing(&a),
                kind: a.kind.map(clip),
                key: a.key.map(clip),
                start: a.start,
                resolved_at: a.resolved_at,
                value: a.value,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: i64, name: &str, memory: i64) -> Process {
        Process {
            pid,
            ppid: 1,
            name: name.into(),
            command_line: "secret --password=hunter2".into(),
            user_name: "root".into(),
            group_name: String::new(),
            cpu_usage_percent: 1.234,
            memory_resident_bytes: memory,
        }
    }

    #[test]
    fn processes_are_counted_filtered_and_bounded() {
        let all: Vec<Process> = (1..=5000)
            .map(|i| process(i, if i % 2 == 0 { "nginx" } else { "Java" }, i * 10))
            .collect();
        let s = summarise_processes(all.clone(), None, 3);
        assert_eq!(s.count, 5000);
        assert_eq!(s.matched, None);
        assert_eq!(
            s.top.iter().map(|p| p.pid).collect::<Vec<_>>(),
            [5000, 4999, 4998]
        );
        let s = summarise_processes(all, Some("JAVA"), 2);
        assert_eq!((s.count, s.matched), (5000, Some(2500)));
        assert_eq!(
            s.top.iter().map(|p| p.pid).collect::<Vec<_>>(),
            [4999, 4997]
        );
        assert_eq!(s.top[0].cpu_usage_percent, 1.23);
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            !text.contains("hunter2"),
            "command lines stay out of status"
        );
    }

    #[test]
    fn alerts_list_firing_then_newest() {
        let alert = |key: &str, start: &str, resolved: bool| Alert {
            key: Some(key.into()),
            kind: Some("available-mem".into()),
            labels: None,
            start: Some(start.into()),
            resolved_at: resolved.then(|| "2026-01-01T00:00:00Z".into()),
            value: Some(1.0),
            firing: None,
        };
        let all: Vec<Alert> = (0..30)
            .map(|i| {
                alert(
                    &format!("k{i}"),
                    &format!("2026-01-01T00:{i:02}:00Z"),
                    i != 3,
                )
            })
            .collect();
        let s = summarise_alerts(all);
        assert_eq!((s.count, s.firing), (30, 1));
        assert_eq!(s.recent.len(), MAX_ALERTS_LISTED);
        assert_eq!(s.recent[0].key.as_deref(), Some("k3"));
        assert_eq!(s.recent[1].key.as_deref(), Some("k29"));
    }

    #[test]
    fn long_text_is_clipped_on_a_char_boundary() {
        let s = clip("é".repeat(300));
        assert!(s.len() <= MAX_TEXT + "…".len());
        assert!(s.ends_with('…'));
    }
}
