//! One Tanium server as the operator speaks to it: its Gateway client and everything kept per server, so that two
//! servers never share a cache, a poll, an open Direct Connect connection or a token's rotation. A reconcile
//! reaches the Gateway only through the connection its object uses (`Object::conn`); the operator's own one comes
//! from its flags and chart values.

use std::time::Duration;

use super::{PackageCache, poller, rotation, sessions};
use crate::gateway::GatewayClient;

pub struct Connection {
    pub gateway: GatewayClient,
    /// The server's packages, by name (a package of one server means nothing to another).
    pub packages: PackageCache,
    /// The one results poller for the open actions deployed through this connection.
    pub poller: poller::Poller,
    /// Direct Connect connections kept between refreshes.
    pub sessions: sessions::Sessions,
    /// Token rotation's state, kept across changes of leader within the process.
    pub rotation: rotation::RotationState,
}

impl Connection {
    /// `poll_batch`: actions per poll request at most (clamped to what the Gateway takes).
    pub fn new(gateway: GatewayClient, poll_batch: usize) -> Self {
        Self {
            gateway,
            packages: PackageCache::new(Duration::from_secs(300)),
            poller: poller::Poller::new(poll_batch.clamp(1, crate::gateway::poll::POLL_BATCH)),
            sessions: sessions::Sessions::default(),
            rotation: rotation::RotationState::default(),
        }
    }
}
