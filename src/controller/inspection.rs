//! The TaniumEndpointInspection reconciler. Every refresh: resolve the endpoint → take the object's open Direct
//! Connect connection or open one → end the requested process (intent recorded first, sent at most once) → read
//! what `collect` asks for → write a bounded summary → keep the connection for the next refresh when that comes
//! well inside the idle timeout, otherwise close it. The connection is pinged while work goes on, opened again when
//! Tanium has dropped it, and closed on deletion and on shutdown.

mod summary;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt as _;
use kube::runtime::controller::Action;

use super::object::{Kind, Object, status_fields};
use super::{Context, Error, wire};
use crate::crd::inspection::{
    ConnectionState, ConnectionStatus, KillRecord, KillState, MAX_TOP_PROCESSES, PerformanceStatus,
    ResolvedEndpoint,
};
use crate::crd::{Reason, TaniumEndpointInspection, TaniumEndpointInspectionStatus, condition};
use crate::gateway::{
    DirectConnection, EndpointId, EndpointSnapshot, GatewayError, Reading, Resolved,
};

pub const FINALIZER: &str = "tanium-operator.dev/close-connection";

pub async fn reconcile(
    obj: Arc<TaniumEndpointInspection>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    super::object::reconcile(obj, ctx).await
}

/// What one reconcile of an inspection carries besides its status: the uid its connection is kept under.
pub struct Scratch {
    uid: String,
}

impl Kind for TaniumEndpointInspection {
    /// What an inspection leaves is at most an open Direct Connect connection, which the Gateway closes when idle.
    fn nothing_in_tanium(_status: &TaniumEndpointInspectionStatus) -> bool {
        true
    }
    fn connection_ref(&self) -> Option<&crate::crd::ConnectionRef> {
        self.spec.connection_ref.as_ref()
    }
    const FINALIZER: &'static str = FINALIZER;
    type Status = TaniumEndpointInspectionStatus;
    type Scratch = Scratch;

    fn scratch(&self) -> Scratch {
        Scratch {
            uid: self.uid().unwrap_or_default(),
        }
    }
    status_fields!(TaniumEndpointInspectionStatus);
    fn apply(o: Object<'_, Self>) -> impl Future<Output = Result<Action, Error>> + Send {
        o.apply()
    }
    /// The connection kept for the object is closed; nothing else outlives it.
    async fn cleanup(o: Object<'_, Self>) -> Result<Action, Error> {
        o.conn.sessions.close(&o.conn.gateway, &o.scratch.uid).await;
        Ok(Action::await_change())
    }
    /// An inspection has no phase: it is counted under its Ready reason.
    fn phase_label(status: &TaniumEndpointInspectionStatus) -> Option<String> {
        condition_reason(status)
    }
}

impl Object<'_, TaniumEndpointInspection> {
    fn set_ready(&mut self, ok: bool, reason: impl AsRef<str>, message: impl Into<String>) {
        self.set(condition::READY, ok, reason, message);
    }

    fn refresh(&self) -> Duration {
        self.obj.spec.refresh_interval()
    }

    /// Keep the connection between refreshes only when the next refresh comes well inside the idle timeout;
    /// otherwise pinging for minutes just to keep it would hold a connection on the endpoint for nothing.
    fn keep_open(&self) -> bool {
        self.refresh() < self.conn.dc_idle_timeout.mul_f64(0.75)
    }

    async fn apply(mut self) -> Result<Action, Error> {
        let timing = &self.ctx.config.timing;
        // Reading an endpoint's processes is as sensitive as acting on it: the admin's namespace policy covers both.
        let ns = self.obj.namespace().unwrap_or_default();
        if let Some(refusal) = self.ctx.config.policy.refuses_namespace(&ns) {
            return self
                .hold(Reason::PolicyDenied, refusal, timing.permanent_error)
                .await;
        }
        // A kill not attempted yet that would take the endpoint out of Tanium (or down): nothing is sent.
        if let Some(kill) = &self.obj.spec.kill_process
            && self.status.kill.is_none()
            && let Some(refusal) = self.ctx.config.policy.protects(kill.pid, &kill.name)
        {
            return self
                .hold(Reason::ProtectedProcess, refusal, timing.permanent_error)
                .await;
        }
        let Some(selector) = wire::selector(&self.obj.spec.endpoint) else {
            return self
                .hold(
                    Reason::InvalidSpec,
                    "spec.endpoint needs exactly one of id or computerName".into(),
                    timing.permanent_error,
                )
                .await;
        };
        let endpoint = match self.conn.gateway.find_endpoint(&selector).await {
            Ok(Resolved::One(e)) => e,
            Ok(Resolved::None) => {
                let message = format!("Tanium knows no endpoint with {selector}");
                return self
                    .hold(Reason::EndpointNotFound, message, timing.blocked)
                    .await;
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
                    .hold(Reason::EndpointAmbiguous, message, timing.blocked)
                    .await;
            }
            Err(e) => return self.trouble(e).await,
        };
        self.status.endpoint = Some(ResolvedEndpoint {
            id: endpoint.id.0.clone(),
            computer_name: endpoint.name.clone(),
        });

        let conn = self.conn.clone();
        let uid = self.scratch.uid.clone();
        let done = conn
            .gateway
            .while_pinging(
                conn.dc_idle_timeout / 3,
                || conn.sessions.get(&uid),
                self.inspect(&endpoint.id),
            )
            .await;
        let mut this = match done {
            Ok(this) => this,
            // Not kept: a connection that may be broken (`connection_trouble` forgets it too).
            Err((this, Error::Gateway(e))) => return this.connection_trouble(e).await,
            Err((_, other)) => {
                conn.sessions.close(&conn.gateway, &uid).await;
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
        self.set_ready(true, Reason::Inspected, summary);
        Ok(self)
    }

    /// The object's connection: the one kept from the last refresh, or a new one.
    async fn session(&mut self, endpoint: &EndpointId) -> Result<DirectConnection, GatewayError> {
        if let Some(conn) = self.conn.sessions.get(&self.scratch.uid) {
            if &conn.endpoint == endpoint {
                return Ok(conn);
            }
            self.conn
                .sessions
                .close(&self.conn.gateway, &self.scratch.uid)
                .await;
        }
        self.open(endpoint, false).await
    }

    async fn open(
        &mut self,
        endpoint: &EndpointId,
        reconnect: bool,
    ) -> Result<DirectConnection, GatewayError> {
        let gateway = &self.conn.gateway;
        let opening = gateway.dc_open_start(endpoint).await?;
        let conn = opening.connection.clone();
        // Held before it is ready, so that every path (failure, deletion, shutdown) closes it.
        self.conn.sessions.put(&self.scratch.uid, conn.clone());
        if let Err(e) = gateway
            .dc_wait_ready(opening, self.ctx.config.timing.dc_ready_timeout)
            .await
        {
            self.conn.sessions.close(gateway, &self.scratch.uid).await;
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
            self.echo(
                Reason::Reconnected,
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
        let sent = match self.conn.sessions.get(&self.scratch.uid) {
            Some(conn) => {
                self.conn
                    .gateway
                    .dc_terminate(&conn, pid, &name, wire::signal(signal))
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
                self.event(true, Reason::KillDeferred, message);
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
            KillState::Ended => Reason::ProcessEnded,
            KillState::NotFound => Reason::ProcessNotFound,
            KillState::Failed => Reason::KillFailed,
            _ => Reason::KillOutcomeUnknown,
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
                self.rebase(fresh.metadata.resource_version);
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
        let e = match self.conn.gateway.dc_read(&conn, reading).await {
            Ok(snapshot) => return Ok(snapshot),
            Err(e) => e,
        };
        if self.conn.gateway.dc_alive(&conn).await != Some(false) {
            return Err(e);
        }
        self.conn.sessions.take(&self.scratch.uid);
        let conn = self.open(endpoint, true).await?;
        self.conn.gateway.dc_read(&conn, reading).await
    }

    /// Counts and short lists: status must stay small whatever the endpoint runs.
    fn summarise(&mut self, snapshot: EndpointSnapshot) {
        let collect = &self.obj.spec.collect;
        self.status.performance = snapshot.performance.map(|p| PerformanceStatus {
            cpu_usage_percent: summary::round2(p.cpu_usage_percent),
            memory_used_percent: summary::round2(p.memory_used_percent),
        });
        self.status.processes = match (&collect.processes, snapshot.processes) {
            (Some(selection), Some(all)) => Some(summary::processes(
                all,
                selection.name_contains.as_deref(),
                selection.top.min(MAX_TOP_PROCESSES) as usize,
            )),
            _ => None,
        };
        self.status.alerts = snapshot.alerts.map(summary::alerts);
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
            return self.hold(Reason::EndpointUnreachable, message, retry).await;
        }
        self.trouble(e).await
    }

    /// Not inspected this time: a condition (an event when it is news), no connection kept.
    async fn hold(
        mut self,
        reason: Reason,
        message: String,
        retry: Duration,
    ) -> Result<Action, Error> {
        self.forget_connection().await;
        let known = self.ready_reason_is(reason);
        self.warn(reason, message, known).await?;
        Ok(Action::requeue(retry))
    }

    /// A Gateway error, with no connection kept (it may be broken).
    async fn trouble(mut self, e: GatewayError) -> Result<Action, Error> {
        self.forget_connection().await;
        self.gateway_trouble(e).await
    }

    /// Close the object's connection, if it has one, and say so in status.
    async fn forget_connection(&mut self) {
        self.conn
            .sessions
            .close(&self.conn.gateway, &self.scratch.uid)
            .await;
        if let Some(c) = self.status.connection.as_mut()
            && c.state == ConnectionState::Open
        {
            c.state = ConnectionState::Closed;
            c.id = None;
        }
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
