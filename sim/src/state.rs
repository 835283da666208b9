//! The shared simulator state and the [`Sim`] handle around it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;

use crate::audit::{AuditEntry, AuditOutcome, RequestRecord};
use crate::clock::Clock;
use crate::config::{Faults, SimConfig, TokenUser};
use crate::faults::FaultState;
use crate::fleet::EndpointSpec;
use crate::records::{Action, Connection, ScheduledAction};

#[derive(Debug)]
pub(crate) struct Endpoint {
    pub spec: EndpointSpec,
    /// When it last came online; an action waiting for it starts no earlier.
    pub online_since: Timestamp,
    /// What the Tanium Data Service last collected from it, and when (only kept while readings may age).
    pub collected: Option<(EndpointSpec, Timestamp)>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub clock: Clock,
    /// The sim time state was last brought up to; readers report as of this instant.
    pub synced_at: Timestamp,
    pub seed: u64,
    pub approval_required: bool,
    pub dc_idle_timeout: Duration,
    pub failure_rate: f64,
    pub tokens: Vec<TokenUser>,
    pub token_lifetime: Duration,
    pub endpoints: Vec<Endpoint>,
    pub index: HashMap<String, usize>,
    pub next_endpoint_id: u64,
    pub scheduled: BTreeMap<u64, ScheduledAction>,
    pub actions: BTreeMap<u64, Action>,
    pub next_id: u64,
    pub connections: HashMap<String, Connection>,
    pub next_connection: u64,
    /// Pagination walks: id → last use of any of its cursors.
    pub walks: HashMap<u64, Timestamp>,
    pub next_walk: u64,
    pub audit: Vec<AuditEntry>,
    pub requests: Vec<RequestRecord>,
    /// Every distinct GraphQL document received: a client that puts values in variables sends a handful.
    pub documents: BTreeSet<String>,
    pub faults: FaultState,
    pub listing: crate::config::ListingModes,
    pub sources: crate::config::SourceModes,
}

impl State {
    pub(crate) fn new(config: &SimConfig, fleet: Vec<EndpointSpec>) -> Self {
        let clock = Clock::new(config.time_scale);
        let now = clock.now();
        let mut st = Self {
            clock,
            synced_at: now,
            seed: config.seed(),
            approval_required: config.approval_required,
            dc_idle_timeout: config.dc_idle_timeout,
            failure_rate: config.action_failure_rate,
            tokens: config.tokens.clone(),
            token_lifetime: config.token_lifetime,
            endpoints: Vec::new(),
            index: HashMap::new(),
            next_endpoint_id: 2_000_001,
            scheduled: BTreeMap::new(),
            actions: BTreeMap::new(),
            next_id: 1001,
            connections: HashMap::new(),
            next_connection: 1,
            walks: HashMap::new(),
            next_walk: 1,
            audit: Vec::new(),
            requests: Vec::new(),
            documents: BTreeSet::new(),
            faults: FaultState::new(config.faults.clone()),
            listing: config.listing,
            sources: config.sources,
        };
        st.add_endpoints(fleet);
        st
    }

    /// Brings every time-driven process (action progress, reissues, idle connections) up to now.
    pub(crate) fn sync(&mut self) -> Timestamp {
        let now = self.clock.now().max(self.synced_at);
        self.advance_actions(now);
        self.expire_connections(now);
        self.synced_at = now;
        now
    }

    pub(crate) fn add_endpoints(&mut self, specs: Vec<EndpointSpec>) -> Vec<String> {
        let now = self.synced_at;
        let mut ids = Vec::with_capacity(specs.len());
        for mut spec in specs {
            if spec.id.is_empty() || self.index.contains_key(&spec.id) {
                while self.index.contains_key(&self.next_endpoint_id.to_string()) {
                    self.next_endpoint_id += 1;
                }
                spec.id = self.next_endpoint_id.to_string();
                self.next_endpoint_id += 1;
            }
            if spec.ip.is_empty() {
                let n = self.endpoints.len();
                spec.ip = format!("10.{}.{}.{}", 200 + (n >> 16) % 50, (n >> 8) & 255, n & 255);
            }
            ids.push(spec.id.clone());
            self.index.insert(spec.id.clone(), self.endpoints.len());
            self.endpoints.push(Endpoint {
                spec,
                online_since: now,
                collected: None,
            });
        }
        ids
    }

    pub(crate) fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.index.get(id).and_then(|i| self.endpoints.get(*i))
    }

    pub(crate) fn endpoint_mut(&mut self, id: &str) -> Option<&mut Endpoint> {
        self.index.get(id).and_then(|i| self.endpoints.get_mut(*i))
    }

    pub(crate) fn set_online(&mut self, id: &str, online: bool) -> bool {
        let now = self.synced_at;
        let Some(ep) = self.endpoint_mut(id) else {
            return false;
        };
        if ep.spec.online != online {
            ep.spec.online = online;
            if online {
                ep.online_since = now;
            }
        }
        if !online {
            // A Direct Connect session cannot outlive the endpoint's connection to Tanium.
            self.connections.retain(|_, c| c.endpoint != id);
        }
        true
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Replaces a valid token with a fresh one for the same user, valid for the token lifetime; the old one is
    /// refused from now on. Returns (token id, new token, its expiry).
    pub(crate) fn rotate_token(&mut self, old: &str) -> Option<(String, String, Timestamp)> {
        let now = self.clock.now();
        let pos = self.tokens.iter().position(|t| t.accepts(old, now))?;
        let fresh = format!("token-{:032x}", rand::random::<u128>());
        let expires_at = crate::clock::add(
            now,
            jiff::SignedDuration::try_from(self.token_lifetime)
                .unwrap_or(jiff::SignedDuration::MAX),
        );
        self.tokens[pos].token = fresh.clone();
        self.tokens[pos].expires_at = Some(expires_at);
        Some(((pos + 1).to_string(), fresh, expires_at))
    }

    /// The user a token authenticates, unless it is unknown or expired.
    pub(crate) fn user_for(&self, token: &str) -> Option<String> {
        let now = self.clock.now();
        self.tokens
            .iter()
            .find(|t| t.accepts(token, now))
            .map(|t| t.user.clone())
    }

    pub(crate) fn record(
        &mut self,
        user: &str,
        operation: &str,
        operation_name: Option<String>,
        input: serde_json::Value,
        outcome: AuditOutcome,
    ) {
        let seq = self.audit.len() as u64 + 1;
        tracing::info!(seq, user, operation, ?outcome, "audit");
        self.audit.push(AuditEntry {
            seq,
            at: self.synced_at,
            wall: Timestamp::now(),
            user: user.to_string(),
            operation: operation.to_string(),
            operation_name,
            input,
            outcome,
        });
    }
}

/// A handle on the running simulator's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sim {
    inner: Arc<Mutex<State>>,
}

impl Sim {
    pub(crate) fn new(state: State) -> Self {
        Self {
            inner: Arc::new(Mutex::new(state)),
        }
    }

    /// Locks the state, already brought up to the current sim time.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written in a way that matters
        // more than stopping the whole simulator would; keep serving.
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        st.sync();
        st
    }

    /// Locks the state without moving time, so one response reads one consistent instant.
    pub(crate) fn peek(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Does the sim accept this token now (known and not expired)?
    pub fn accepts_token(&self, token: &str) -> bool {
        self.peek().user_for(token).is_some()
    }

    /// Issue another token (what a person does in the Tanium console).
    pub fn add_token(&self, token: TokenUser) {
        self.lock().tokens.push(token);
    }

    /// When a token expires (sim time); `None` if unknown or without expiry.
    pub fn token_expiry(&self, token: &str) -> Option<Timestamp> {
        self.peek()
            .tokens
            .iter()
            .find(|t| t.token == token)
            .and_then(|t| t.expires_at)
    }

    pub fn audit(&self) -> Vec<AuditEntry> {
        self.lock().audit.clone()
    }

    /// Every GraphQL request received with a valid token, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.peek().requests.clone()
    }

    /// Every distinct GraphQL document received with a valid token (values a client sends as variables are not
    /// in them: tests assert that user input never is).
    pub fn documents(&self) -> Vec<String> {
        self.peek().documents.iter().cloned().collect()
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.faults.clone()
    }

    pub fn set_faults(&self, f: Faults) {
        self.lock().faults.set(f);
    }

    /// How `scheduledActions` lists from now on (see [`crate::ListingModes`]).
    pub fn set_listing(&self, modes: crate::config::ListingModes) {
        self.lock().listing = modes;
    }

    /// How `endpoints` answers by source from now on (see [`crate::SourceModes`]).
    pub fn set_sources(&self, modes: crate::config::SourceModes) {
        let mut st = self.lock();
        st.sources = modes;
        for ep in &mut st.endpoints {
            ep.collected = None;
        }
    }

    pub fn advance(&self, d: Duration) {
        let mut st = self.lock();
        st.clock.advance(d);
        st.sync();
    }

    pub fn now(&self) -> Timestamp {
        self.lock().synced_at
    }

    pub fn add_endpoints(&self, eps: Vec<EndpointSpec>) -> Vec<String> {
        self.lock().add_endpoints(eps)
    }

    pub fn set_online(&self, endpoint_id: &str, online: bool) -> bool {
        self.lock().set_online(endpoint_id, online)
    }

    /// Replace an endpoint's custom tags, as a person at its console would (cached readings catch up later).
    pub fn set_tags(&self, endpoint_id: &str, tags: Vec<String>) -> bool {
        let mut st = self.lock();
        match st.endpoint_mut(endpoint_id) {
            Some(ep) => {
                ep.spec.tags = tags;
                true
            }
            None => false,
        }
    }

    /// Start a process on an endpoint, as its user would.
    pub fn add_process(&self, endpoint_id: &str, process: crate::fleet::ProcessSpec) -> bool {
        let mut st = self.lock();
        match st.endpoint_mut(endpoint_id) {
            Some(ep) => {
                ep.spec.processes.push(process);
                true
            }
            None => false,
        }
    }

    pub fn endpoint(&self, id: &str) -> Option<EndpointSpec> {
        self.lock().endpoint(id).map(|e| e.spec.clone())
    }

    pub fn endpoint_count(&self) -> usize {
        self.lock().endpoints.len()
    }

    /// Ids of the endpoints online now, in fleet order.
    pub fn online_endpoint_ids(&self) -> Vec<String> {
        self.lock()
            .endpoints
            .iter()
            .filter(|e| e.spec.online)
            .map(|e| e.spec.id.clone())
            .collect()
    }
}
