//! One Tanium server as the operator speaks to it: its Gateway client and everything kept per server, so that two
//! servers never share a cache, a poll, an open Direct Connect connection or a token's rotation. A reconcile
//! reaches the Gateway only through the connection its object uses (`Object::conn`); the operator's own one comes
//! from its flags and chart values.

use std::sync::Arc;
use std::time::Duration;

use super::rotation::state::{RotationState, fingerprint};
use super::{PackageCache, poller, sessions};
use crate::gateway::GatewayClient;
use crate::telemetry::Metrics;

/// The operator's own connection's name (its flags and chart values), in metrics and conditions.
pub const OWN: &str = "own";

pub struct Connection {
    /// How metrics and logs name it (`connections::Key::label`).
    pub name: String,
    pub gateway: GatewayClient,
    /// The server's packages, by name (a package of one server means nothing to another).
    pub packages: PackageCache,
    /// The one results poller for the open actions deployed through this connection.
    pub poller: poller::Poller,
    /// Direct Connect connections kept between refreshes.
    pub sessions: sessions::Sessions,
    /// Token rotation's state, kept across changes of leader within the process.
    pub rotation: RotationState,
    /// How long the Gateway keeps an idle Direct Connect connection open (the flag's, or the connection object's
    /// `directConnectIdleTimeoutSeconds`): inspections keep one only for refreshes well inside it.
    pub dc_idle_timeout: Duration,
    /// Which token its Secret held when last read (a fingerprint), for a connection built from an object.
    from_secret: std::sync::Mutex<Option<String>>,
}

impl Connection {
    /// `poll_batch`: actions per poll request at most (clamped to what the Gateway takes). Every request through
    /// `gateway` is counted in `metrics` under `name`.
    pub fn new(
        name: String,
        gateway: GatewayClient,
        metrics: &Arc<Metrics>,
        poll_batch: usize,
        dc_idle_timeout: Duration,
    ) -> Self {
        let observed = metrics.clone();
        let label = name.clone();
        gateway.observe_with(Arc::new(move |operation, outcome, took| {
            observed.gateway_request(&label, operation, outcome, took);
        }));
        Self {
            name,
            gateway,
            packages: PackageCache::new(Duration::from_secs(300)),
            poller: poller::Poller::new(poll_batch.clamp(1, crate::gateway::poll::POLL_BATCH)),
            sessions: sessions::Sessions::default(),
            rotation: RotationState::default(),
            dc_idle_timeout,
            from_secret: std::sync::Mutex::new(None),
        }
    }

    /// The operator's own (its flags and chart values), not one built from a connection object.
    pub fn is_own(&self) -> bool {
        self.name == OWN
    }

    /// Its Secret holds `token` now: whether that is news (a token the Secret did not hold at the last read). The
    /// client takes only news: a rotation's new token is the client's before it is the Secret's, and the old one,
    /// still in the Secret meanwhile, must not come back.
    pub fn took_from_secret(&self, token: &secrecy::SecretString) -> bool {
        let seen = fingerprint(token);
        match self.from_secret.lock() {
            Ok(mut last) => last.replace(seen.clone()).as_deref() != Some(seen.as_str()),
            Err(_) => true,
        }
    }
}
