//! Simulator configuration: what a test or the binary hands to [`crate::start`].

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the fleet comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetSource {
    /// A deterministic fleet of `size` endpoints (the fixtures included) generated from `seed`.
    Generated { size: usize, seed: u64 },
    /// A JSON array of [`crate::EndpointSpec`].
    File(PathBuf),
}

/// Which Gateway the sim plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Generation {
    /// The reference schema's Gateway: both Direct Connect families, `CLOSED` among action statuses.
    #[default]
    Current,
    /// An older Gateway: only the older Direct Connect family (`openDirectConnection` …) and no `CLOSED`; the
    /// newer fields are absent from introspection and refused as unknown.
    Legacy,
}

/// One accepted `session` token and the user it authenticates.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenUser {
    pub token: String,
    pub user: String,
    /// Sim time after which the token is refused (HTTP 401, as an expired token is); `None`: never.
    pub expires_at: Option<jiff::Timestamp>,
}

impl TokenUser {
    pub fn new(token: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            user: user.into(),
            expires_at: None,
        }
    }

    pub fn expiring_at(mut self, at: jiff::Timestamp) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Is this the token presented, and still valid at `now`?
    pub(crate) fn accepts(&self, presented: &str, now: jiff::Timestamp) -> bool {
        self.token == presented && self.expires_at.is_none_or(|at| now < at)
    }
}

// Tokens are credentials: a Debug that printed them would leak them into logs and test output.
impl fmt::Debug for TokenUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenUser")
            .field("token", &"<redacted>")
            .field("user", &self.user)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub bind: SocketAddr,
    pub fleet: FleetSource,
    pub tokens: Vec<TokenUser>,
    /// Simulated seconds per real second; 0 freezes the clock (only manual advances move it).
    pub time_scale: f64,
    pub approval_required: bool,
    /// Direct Connect idle timeout, in simulated time.
    pub dc_idle_timeout: Duration,
    /// Probability that one endpoint fails one action instance; deterministic from the fleet seed.
    pub action_failure_rate: f64,
    pub faults: Faults,
    pub listing: ListingModes,
    pub sources: SourceModes,
    /// How long a token made by `apiTokenRotate` is valid, in simulated time (Tanium advises two weeks or less).
    pub token_lifetime: Duration,
    pub generation: Generation,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            fleet: FleetSource::Generated { size: 100, seed: 1 },
            tokens: vec![TokenUser::new("token-sim", "admin")],
            time_scale: 1.0,
            approval_required: false,
            dc_idle_timeout: Duration::from_secs(120),
            action_failure_rate: 0.0,
            faults: Faults::default(),
            listing: ListingModes::default(),
            sources: SourceModes::default(),
            token_lifetime: Duration::from_secs(14 * 24 * 3600),
            generation: Generation::Current,
        }
    }
}

impl SimConfig {
    /// The seed that drives per-endpoint durations and failures.
    pub(crate) fn seed(&self) -> u64 {
        match self.fleet {
            FleetSource::Generated { seed, .. } => seed,
            FleetSource::File(_) => 1,
        }
    }
}

/// What a client gets for a mutation the sim has committed (the audit says `Dropped`: the answer was lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterCommit {
    /// The connection dies after the status line: no usable answer.
    Drop,
    /// The payload's `error { retryable: true, timedOut: false }` (a mutation without an error field in its
    /// payload gets an execution error instead).
    RetryablePayload,
    /// `data: null` and a GraphQL error with a `path`: an error raised while the field ran.
    ExecutionError,
    /// HTTP 502 from a proxy in front of the Gateway.
    Http502,
    /// HTTP 504 from a proxy in front of the Gateway.
    Http504,
}

impl AfterCommit {
    pub const ALL: [AfterCommit; 5] = [
        Self::Drop,
        Self::RetryablePayload,
        Self::ExecutionError,
        Self::Http502,
        Self::Http504,
    ];
}

/// Injected faults. `*_rate` are probabilities per request (drawn from `seed`); `*_next` force the
/// next N eligible requests and are decremented as they are used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    pub latency_ms: u64,
    pub http_500_rate: f64,
    pub http_500_next: u32,
    pub graphql_error_rate: f64,
    pub graphql_error_next: u32,
    pub retryable_error_rate: f64,
    pub retryable_error_next: u32,
    /// A mutation is committed, then its answer fails (how: `after_commit`).
    pub drop_after_commit_rate: f64,
    pub drop_after_commit_next: u32,
    /// How a committed mutation's answer fails, one picked at random per fault; empty: the connection drops.
    /// Tanium's documentation does not say that any error means "not applied", so every shape is played.
    pub after_commit: Vec<AfterCommit>,
    /// Limits drop-after-commit to these mutation fields; empty means every mutation.
    pub drop_operations: Vec<String>,
    /// Reads of an action or a scheduled action (alone or as one alias of a batch) answered `null` though it
    /// exists: not visible yet, or one field's failure reported as null. Tanium does not document when a read
    /// may be null.
    pub null_read_rate: f64,
    /// Reads answered with an error carrying the alias's `path` (that field null, the others answered).
    pub read_error_rate: f64,
    /// Action reads whose status is one this client's schema does not know (`QUEUED`, as a newer Gateway might
    /// add).
    pub unknown_status_rate: f64,
    /// A document with more top-level fields than this is refused whole with a GraphQL error without a `path`
    /// (a complexity or size limit); 0: no limit.
    pub max_top_level_fields: usize,
    /// Top-level fields the token's user may not use: HTTP 403 (the token is good, a permission is missing).
    pub forbidden_fields: Vec<String>,
    /// `scheduledActionDelete` answered with a non-retryable payload error while the schedule stays enabled (a
    /// refusal that is not "already deleted"; Tanium does not document when one comes).
    pub delete_refused_rate: f64,
    pub delete_refused_next: u32,
    /// Deleting a scheduled action that is already deleted is refused ("not found") instead of a quiet success.
    pub delete_again_refused: bool,
    pub seed: u64,
}

/// How the `scheduledActions` list answers where Tanium's documentation is silent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListingModes {
    /// A new scheduled action matches a `name` filter only this long after it was created (an index that lags).
    pub name_filter_lag_ms: u64,
    /// Filters list only the caller's own scheduled actions unless they say `restrictOwner: false` (the field's
    /// default is true).
    pub restrict_owner: bool,
}

/// How `endpoints` answers by source (`tds` cached readings, `ts` live questions) where Tanium's documentation
/// leaves room. The default plays the friendliest Gateway: TDS holds every sensor, fresh, and live questions are
/// answered at once by every online endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceModes {
    /// TDS holds only the sensors registered for collection (`Sensor.harvested`): a cached filter on any other
    /// sensor finds no reading on any endpoint. Off, every sensor is collected and `sensors` says so.
    pub tds_registered_only: bool,
    /// TDS readings are up to this old: an endpoint's cached readings are refreshed only this long after the
    /// last refresh, and `sensors` reports it as `maxAgeSeconds`. 0: always current.
    pub tds_max_age_ms: u64,
    /// Online endpoints answer a live question after a delay of up to this (fixed per endpoint); those slower
    /// than its `maxWaitTime` are missing from the answer, which then says so in `collectionInfo`. The answer
    /// takes as long as the Gateway waited (in simulated time). 0: every online endpoint answers at once.
    pub live_answer_spread_ms: u64,
}
