//! The controllers: one reconciler per kind, sharing a [`Context`] (clients, configuration, caches) and the
//! pieces every kind needs (preview, package lookup, action tracking, status writes, events, error policy).

pub mod action;
pub mod cached;
pub mod changes;
pub mod connection;
pub mod connections;
mod deploy;
mod events;
pub mod gates;
pub mod inspection;
pub mod invalid;
pub mod kstatus;
mod object;
mod packages;
mod policy;
pub mod poller;
pub mod preview;
pub mod rotation;
pub mod sessions;
pub mod shard;
pub mod tag;
mod tracking;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::runtime::events::Reporter;

use crate::gateway::{GatewayClient, GatewayError};

pub use object::Kind;
pub use packages::PackageCache;
pub use policy::{
    DEFAULT_APPROVAL_THRESHOLD, PROTECTED_PID_BELOW, PROTECTED_PROCESSES, Policy, TagBinding,
};
pub use shard::Shard;

/// How often to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Results poll right after a deployment; the interval grows with the action's age up to `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// Re-check of an object held by a gate (zero targets, awaiting preview approval).
    pub blocked: Duration,
    /// Re-check after an error a person must fix (token rejected, unknown package).
    pub permanent_error: Duration,
    /// How long a deletion waits for the Gateway before it lets the object go and says so.
    pub deletion_timeout: Duration,
    /// Cap of the per-object exponential backoff after retryable errors.
    pub error_backoff_max: Duration,
    /// After an `actionPerform` whose answer was lost, how long a look-up by name that finds nothing is not
    /// trusted (the Gateway may still be working on the request). Well past the request timeout.
    pub lookup_grace: Duration,
    /// A once-only mutation is written only this soon after its intent was recorded (on this process's monotonic
    /// clock); later (a reconcile that waited for a permit, a paused process), nothing is sent and recovery looks
    /// the name up. With the request timeout and the lease duration it must stay inside `lookup_grace`
    /// ([`Timing::check_fencing`]).
    pub intent_max_age: Duration,
    /// How long every poll must have answered `null` for an action before it is looked at as possibly gone: its
    /// scheduled action is then read instead, and only when that too answers `null` this long is it gone. Tanium
    /// does not document when a read may be null (an action not visible yet, one field's failure).
    pub gone_after: Duration,
    /// How long the Gateway keeps an unused Direct Connect connection (two minutes in Tanium's docs, five in
    /// newer ones). Connections are pinged well inside it, and kept between refreshes only when they come sooner.
    pub dc_idle_timeout: Duration,
    /// How long a new Direct Connect connection may take to become ready.
    pub dc_ready_timeout: Duration,
    /// While an action runs, its counts are written at most this often (phase changes and the end at once).
    pub results_write: Duration,
    /// A connection object that works is looked at again this often (its token Secret re-read); one that does
    /// not, a third of it.
    pub connection_recheck: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            poll_min: Duration::from_secs(2),
            poll_max: Duration::from_secs(60),
            blocked: Duration::from_secs(60),
            permanent_error: Duration::from_secs(300),
            deletion_timeout: Duration::from_secs(600),
            error_backoff_max: Duration::from_secs(300),
            lookup_grace: Duration::from_secs(90),
            intent_max_age: Duration::from_secs(45),
            gone_after: Duration::from_secs(300),
            dc_idle_timeout: Duration::from_secs(120),
            dc_ready_timeout: Duration::from_secs(60),
            results_write: Duration::from_secs(30),
            connection_recheck: Duration::from_secs(60),
        }
    }
}

impl Timing {
    /// The intent age a deployment may still be sent at, by default: what the look-up grace leaves after one
    /// request timeout and one lease duration (the time a paused leader may go unnoticed).
    pub fn default_intent_max_age(
        lookup_grace: Duration,
        request_timeout: Duration,
        lease_duration: Duration,
    ) -> Duration {
        lookup_grace
            .saturating_sub(request_timeout)
            .saturating_sub(lease_duration)
    }

    /// Do these settings keep "never deploy twice"? A request written at most `intent_max_age` after its intent
    /// reaches the Gateway within `request_timeout`; a replica that took over (at the earliest one lease duration
    /// after the last renewal it saw) trusts "not found by name" only `lookup_grace` after the intent. So the
    /// three must fit inside the grace, and the age must leave time to send at all.
    pub fn check_fencing(
        &self,
        request_timeout: Duration,
        lease_duration: Duration,
    ) -> Result<(), String> {
        if self.intent_max_age < Duration::from_millis(500) {
            return Err(format!(
                "the intent age a deployment may still be sent at is {:?}: too short to send anything. Raise                  TANIUM_LOOKUP_GRACE_SECONDS ({:?}) above the request timeout ({request_timeout:?}) plus the lease                  duration ({lease_duration:?}) plus a few seconds",
                self.intent_max_age, self.lookup_grace
            ));
        }
        let needed = self.intent_max_age + request_timeout + lease_duration;
        if needed > self.lookup_grace {
            return Err(format!(
                "TANIUM_LOOKUP_GRACE_SECONDS ({:?}) must be at least the intent age a deployment may be sent at                  ({:?}, TANIUM_INTENT_MAX_AGE_SECONDS) plus the request timeout ({request_timeout:?}) plus the lease                  duration ({lease_duration:?}) = {needed:?}: otherwise a replica taking over could deploy again                  while the first request is still on its way",
                self.lookup_grace, self.intent_max_age
            ));
        }
        Ok(())
    }

    /// Fast right after a deployment, slower as it ages, capped.
    pub fn poll_interval(&self, since_deploy: Duration) -> Duration {
        (since_deploy / 10).clamp(self.poll_min, self.poll_max.max(self.poll_min))
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub policy: Policy,
    pub timing: Timing,
    /// Which objects this process reconciles.
    pub shard: Shard,
    /// Objects reconciled at once.
    pub concurrency: u16,
    /// Actions per results-poll request (GraphQL aliases in one document, at most 50). 1 polls the way scripts
    /// do, one request per action: only for comparison.
    pub poll_batch: usize,
    /// Rotate the Gateway token before it expires (leader only); `None`: off.
    pub token_rotation: Option<rotation::RotationConfig>,
    /// Publish every event, also those that only repeat what status says (`Object::echo`).
    pub all_events: bool,
    /// The operator's own namespace: where a ClusterTaniumConnection's token Secret is unless it names another.
    pub own_namespace: String,
    /// Rotate the tokens of connection objects that ask for it (`spec.rotation`): an admin's second act (the chart
    /// value `connections.tokenRotation`, which also grants `patch` on those Secrets).
    pub rotate_connection_tokens: bool,
    /// Use connection objects without writing their status or rotating their tokens: the chart's shards, which
    /// read what the main Deployment's leader writes (one writer per object; otherwise two would take turns).
    pub connections_read_only: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            timing: Timing::default(),
            shard: Shard::everything(),
            concurrency: 8,
            poll_batch: crate::gateway::poll::POLL_BATCH,
            token_rotation: None,
            all_events: false,
            own_namespace: "default".into(),
            rotate_connection_tokens: false,
            connections_read_only: false,
        }
    }
}

/// Test hooks that stop a reconcile at a point where a crash must be survivable. Never set in production.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct FailPoints {
    /// After `actionPerform` answered and before its ids reach status: hang for ever (the test then kills the
    /// controller, as a crash at that line would).
    pub hang_after_perform: AtomicBool,
    /// After a Direct Connect process termination answered and before its outcome reaches status: wait while
    /// set (the test edits the object meanwhile, or kills the controller).
    pub hang_after_kill: AtomicBool,
    /// After `apiTokenRotate` answered and before the new token reaches the Secret: wait while set.
    pub hang_after_rotate: AtomicBool,
    /// After the new token reached the Secret and before it is confirmed: wait while set.
    pub hang_after_token_write: AtomicBool,
}

pub struct Context {
    pub client: kube::Client,
    /// Every Tanium server the operator speaks to: its own (flags and chart values) and the connection objects'.
    pub connections: connections::Connections,
    /// Who publishes events (see [`events::Events`]).
    pub reporter: Reporter,
    pub config: Config,
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// Consecutive failed reconciles per object uid, for capped exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Kinds whose watch cache has synced since the controllers last started.
    pub caches_synced: std::sync::atomic::AtomicUsize,
    #[doc(hidden)]
    pub fail_points: FailPoints,
    /// Every TaniumTag watched, to decide who owns a tag.
    pub tag_claimants: tag::Claimants,
}

impl Context {
    pub fn new(client: kube::Client, gateway: GatewayClient, config: Config) -> Self {
        let reporter = Reporter {
            controller: "tanium-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let metrics = Arc::new(crate::telemetry::Metrics::default());
        let own = connection::Connection::new(
            connections::Key::Own.label(),
            gateway,
            &metrics,
            config.poll_batch,
            config.timing.dc_idle_timeout,
        );
        Self {
            reporter,
            client,
            connections: connections::Connections::new(own),
            config,
            metrics,
            failures: Mutex::new(HashMap::new()),
            caches_synced: std::sync::atomic::AtomicUsize::new(0),
            fail_points: FailPoints::default(),
            tag_claimants: tag::Claimants::default(),
        }
    }

    fn record_success(&self, uid: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(uid);
        }
    }

    /// Capped exponential backoff with jitter, per object.
    pub(crate) fn backoff(&self, uid: &str) -> Duration {
        let attempts = match self.failures.lock() {
            Ok(mut f) => {
                let n = f.entry(uid.to_owned()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        let base = Duration::from_secs(2).saturating_mul(2u32.saturating_pow(attempts.min(16) - 1));
        let capped = base.min(self.config.timing.error_backoff_max);
        let jitter = rand::random_range(0.8..1.2);
        capped.mul_f64(jitter)
    }

    #[doc(hidden)]
    pub async fn fail_point_after_perform(&self) {
        if self.fail_points.hang_after_perform.load(Ordering::SeqCst) {
            tracing::warn!("fail point: hanging after actionPerform");
            std::future::pending::<()>().await;
        }
    }

    /// Wait while `point` is set (a test kills the controller there, as a crash at that line would).
    #[doc(hidden)]
    pub async fn fail_point(&self, name: &str, point: &AtomicBool) {
        if point.load(Ordering::SeqCst) {
            tracing::warn!(name, "fail point: holding");
        }
        while point.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How long ago the object's deletion was asked for (zero when it is not being deleted).
pub(crate) fn deleting_for(meta: &kube::core::ObjectMeta) -> Duration {
    meta.deletion_timestamp
        .as_ref()
        .map_or(Duration::ZERO, |t| {
            jiff::Timestamp::now().duration_since(t.0).unsigned_abs()
        })
}

pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// Not a failure: work in progress that must be looked at again (a finalizer that is not done yet).
    #[error("in progress; again in {0:?}")]
    Requeue(Duration),
}

impl Error {
    /// Metric label and log field.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Gateway(e) => e.reason(),
            Self::Kube(_) => "KubernetesApiError",
            Self::Finalizer(_) => "FinalizerError",
            Self::MissingField(_) => "MalformedObject",
            Self::Requeue(_) => "InProgress",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_settings_must_fit_inside_the_lookup_grace() {
        let s = Duration::from_secs;
        let timing = |grace, age| Timing {
            lookup_grace: s(grace),
            intent_max_age: s(age),
            ..Timing::default()
        };
        // The defaults (30 s requests, a 15 s lease) fit.
        assert_eq!(Timing::default_intent_max_age(s(90), s(30), s(15)), s(45));
        assert!(Timing::default().check_fencing(s(30), s(15)).is_ok());
        // An age the grace does not cover, or none left at all, is refused.
        let too_old = timing(90, 60).check_fencing(s(30), s(15)).unwrap_err();
        assert!(too_old.contains("TANIUM_LOOKUP_GRACE_SECONDS"), "{too_old}");
        let derived = Timing::default_intent_max_age(s(90), s(30), s(60));
        assert_eq!(derived, Duration::ZERO);
        assert!(timing(90, 0).check_fencing(s(30), s(60)).is_err());
        // The crash loops' settings: 2 s requests, a 3 s lease, a 6 s grace leave 1 s.
        let age = Timing::default_intent_max_age(s(6), s(2), s(3));
        assert_eq!(age, s(1));
        assert!(timing(6, 1).check_fencing(s(2), s(3)).is_ok());
    }
}
