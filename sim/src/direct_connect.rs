//! Direct Endpoint Connect sessions: open, status, idle timeout, and what a session can read or do.

use jiff::{SignedDuration, Timestamp};

use crate::clock::add;
use crate::det;
use crate::records::{ConnKind, Connection};
use crate::state::State;

/// How long a newly opened (current-family) connection reports CONNECTING.
pub(crate) const CONNECT_DELAY: SignedDuration = SignedDuration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnStatus {
    Ready,
    Connecting,
    Error,
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DcError {
    #[error("direct connect connection \"{0}\" not found (closed or idle for too long)")]
    NotFound(String),
    #[error("direct connect connection \"{0}\" is not ready yet (status CONNECTING)")]
    NotReady(String),
    #[error("direct connect connection \"{0}\" failed: the endpoint is offline")]
    Failed(String),
    #[error(
        "no open direct connect connection to endpoint \"{0}\" (not found or closed): open one first"
    )]
    NoConnectionTo(String),
    #[error("endpoint \"{0}\" not found")]
    UnknownEndpoint(String),
}

impl State {
    pub(crate) fn expire_connections(&mut self, now: Timestamp) {
        let idle = SignedDuration::try_from(self.dc_idle_timeout).unwrap_or(SignedDuration::MAX);
        self.connections
            .retain(|_, c| now.duration_since(c.last_used) <= idle);
    }

    fn new_connection_id(&mut self) -> String {
        let n = self.next_connection;
        self.next_connection += 1;
        let a = det::mix(self.seed ^ n.rotate_left(17));
        let b = det::mix(a ^ n);
        // UUID-shaped, like the Gateway's, so clients that validate the format are exercised.
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48 & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    /// Opens a connection. `immediate` (the older family) is ready at once.
    pub(crate) fn dc_open(&mut self, endpoint: &str, immediate: bool) -> (String, ConnStatus) {
        let now = self.synced_at;
        let kind = match self.endpoint(endpoint) {
            None => ConnKind::NotFound,
            Some(e) if !e.spec.online => ConnKind::Error,
            Some(_) => ConnKind::Live,
        };
        let id = self.new_connection_id();
        let ready_at = if immediate {
            now
        } else {
            add(now, CONNECT_DELAY)
        };
        self.connections.insert(
            id.clone(),
            Connection {
                endpoint: endpoint.to_string(),
                ready_at,
                last_used: now,
                kind,
            },
        );
        let status = self.dc_status(&id);
        (id, status)
    }

    pub(crate) fn dc_status(&mut self, id: &str) -> ConnStatus {
        let now = self.synced_at;
        match self.connections.get_mut(id) {
            None => ConnStatus::NotFound,
            Some(c) => {
                c.last_used = now;
                match c.kind {
                    ConnKind::NotFound => ConnStatus::NotFound,
                    ConnKind::Error => ConnStatus::Error,
                    ConnKind::Live if now < c.ready_at => ConnStatus::Connecting,
                    ConnKind::Live => ConnStatus::Ready,
                }
            }
        }
    }

    /// Any use of a connection refreshes it; returns its endpoint id once it is ready.
    pub(crate) fn dc_use(&mut self, id: &str) -> Result<String, DcError> {
        match self.dc_status(id) {
            ConnStatus::Ready => self
                .connections
                .get(id)
                .map(|c| c.endpoint.clone())
                .ok_or_else(|| DcError::NotFound(id.to_string())),
            ConnStatus::Connecting => Err(DcError::NotReady(id.to_string())),
            ConnStatus::Error => Err(DcError::Failed(id.to_string())),
            ConnStatus::NotFound => Err(DcError::NotFound(id.to_string())),
        }
    }

    pub(crate) fn dc_ping(&mut self, id: &str) -> Result<bool, DcError> {
        match self.dc_status(id) {
            ConnStatus::NotFound => Err(DcError::NotFound(id.to_string())),
            ConnStatus::Error => Err(DcError::Failed(id.to_string())),
            ConnStatus::Ready | ConnStatus::Connecting => Ok(true),
        }
    }

    pub(crate) fn dc_close(&mut self, id: &str) -> Result<bool, DcError> {
        self.connections
            .remove(id)
            .map(|_| true)
            .ok_or_else(|| DcError::NotFound(id.to_string()))
    }

    /// The older family addresses an endpoint, not a connection: use any ready one to it.
    pub(crate) fn dc_use_endpoint(&mut self, endpoint: &str) -> Result<String, DcError> {
        if self.endpoint(endpoint).is_none() {
            return Err(DcError::UnknownEndpoint(endpoint.to_string()));
        }
        let now = self.synced_at;
        let conn = self
            .connections
            .values_mut()
            .find(|c| c.endpoint == endpoint && c.kind == ConnKind::Live && c.ready_at <= now)
            .ok_or_else(|| DcError::NoConnectionTo(endpoint.to_string()))?;
        conn.last_used = now;
        Ok(endpoint.to_string())
    }

    /// Terminates a process when the pid exists and its name matches.
    pub(crate) fn dc_terminate(&mut self, endpoint: &str, pid: i64, name: &str) -> bool {
        let Some(ep) = self.endpoint_mut(endpoint) else {
            return false;
        };
        let before = ep.spec.processes.len();
        ep.spec
            .processes
            .retain(|p| !(p.pid == pid && p.name.eq_ignore_ascii_case(name)));
        ep.spec.processes.len() != before
    }
}
