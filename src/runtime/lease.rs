//! Leader election on a `coordination.k8s.io/v1` Lease, with what a generic lease crate does not tell: when this
//! replica last renewed, on its own monotonic clock. A side effect that must not repeat is sent only while that
//! renewal is younger than the lease duration minus a margin ([`Leadership`] is the Gateway client's
//! [`Fence`]), so a leader that was paused (SIGSTOP, a frozen node, a long stall) and resumes after a standby took
//! over sends nothing, even before its keeper has run again.
//!
//! A standby takes a Lease over when its record has not changed for a lease duration by the standby's own
//! monotonic clock (as client-go does), or when its renew time is a lease duration old by the standby's wall clock
//! (faster after a restart; trusts the clocks to agree within the margin). Writes are conditional on the Lease's
//! resourceVersion, so two replicas can never both win one round.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

use crate::gateway::Fence;

/// One replica's part in the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's name in the Lease.
    pub identity: String,
    /// A holder that has not renewed for this long is replaced.
    pub duration: Duration,
    /// The holder acts only while its last renewal is younger than `duration - margin`: the clock skew and the
    /// stall between the check and the write that are tolerated.
    pub margin: Duration,
}

impl LeaseSettings {
    /// How often the holder renews and a standby looks.
    pub fn retry_period(&self) -> Duration {
        (self.duration.saturating_sub(self.margin) / 3).max(Duration::from_millis(200))
    }

    /// Flags that cannot hold a lease: the margin must leave time to act, and renewals must fit inside it.
    pub fn check(&self) -> Result<(), String> {
        if self.margin.is_zero() || self.margin >= self.duration {
            return Err(format!(
                "LEASE_GRACE_SECONDS ({:?}) must be above zero and below LEASE_DURATION_SECONDS ({:?})",
                self.margin, self.duration
            ));
        }
        Ok(())
    }
}

/// What one look at the Lease decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Ours: renew it.
    Renew,
    /// Free or expired: take it.
    Acquire,
    /// Another replica holds it.
    Wait,
}

/// Decide from the Lease's spec, how long it has stood unchanged by this replica's monotonic clock, and the wall
/// clock now.
pub fn decide(
    spec: &LeaseSpec,
    me: &str,
    unchanged_for: Duration,
    default_duration: Duration,
    now: jiff::Timestamp,
) -> Step {
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => return Step::Renew,
        None | Some("") => return Step::Acquire,
        Some(_) => {}
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    let stale_by_wall = spec
        .renew_time
        .as_ref()
        .is_some_and(|t| now > t.0 && now.duration_since(t.0).unsigned_abs() >= duration);
    if unchanged_for >= duration || stale_by_wall {
        Step::Acquire
    } else {
        Step::Wait
    }
}

/// Whether this replica leads, and since which renewal: shared by the keeper, the controllers' loop and the
/// Gateway client's fence.
#[derive(Debug)]
pub struct Leadership {
    settings: LeaseSettings,
    /// Monotonic time at which the last successful acquisition or renewal was started (before its request: the
    /// server's renew time is no earlier).
    renewed: Mutex<Option<Instant>>,
    leading: tokio::sync::watch::Sender<bool>,
}

impl Leadership {
    pub fn new(settings: LeaseSettings) -> Self {
        Self {
            settings,
            renewed: Mutex::new(None),
            leading: tokio::sync::watch::Sender::new(false),
        }
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// Follows the leading state as the keeper sees it.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leading.subscribe()
    }

    fn last_renewal(&self) -> Option<Instant> {
        match self.renewed.lock() {
            Ok(r) => *r,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn set_renewal(&self, at: Option<Instant>) {
        match self.renewed.lock() {
            Ok(mut r) => *r = at,
            Err(poisoned) => *poisoned.into_inner() = at,
        }
    }

    /// Until when this replica may act on what its last renewal showed.
    pub fn valid_until(&self) -> Option<Instant> {
        let budget = self.settings.duration.saturating_sub(self.settings.margin);
        self.last_renewal().map(|at| at + budget)
    }

    /// Does it hold the Lease with the margin, now?
    pub fn holds(&self) -> bool {
        self.valid_until()
            .is_some_and(|until| Instant::now() < until)
    }

    fn renewed_at(&self, started: Instant) {
        self.set_renewal(Some(started));
        self.leading
            .send_if_modified(|l| !std::mem::replace(l, true));
    }

    fn lost(&self) {
        self.set_renewal(None);
        if self
            .leading
            .send_if_modified(|l| std::mem::replace(l, false))
        {
            tracing::warn!(lease = %self.settings.name, "leadership lost");
        }
    }

    /// The time is up (no renewal for too long, as when the process was paused): stand down now.
    /// Stand down once no renewal succeeded for a whole lease duration (another replica may hold it by now). A
    /// slow apiserver that renews late is not a lost Lease: the controllers keep running meanwhile, and only
    /// side effects wait for the fence ([`Leadership::may_act`], the duration minus the margin).
    fn expire(&self) {
        if self
            .last_renewal()
            .is_some_and(|at| at.elapsed() >= self.settings.duration)
        {
            tracing::warn!(lease = %self.settings.name, "no successful renewal within the lease duration");
            self.lost();
        }
    }
}

impl Fence for Leadership {
    fn may_act(&self) -> Result<(), String> {
        match self.last_renewal() {
            None => Err(format!(
                "this replica does not hold the Lease {}/{}",
                self.settings.namespace, self.settings.name
            )),
            Some(at) => {
                let age = at.elapsed();
                let budget = self.settings.duration.saturating_sub(self.settings.margin);
                if age < budget {
                    Ok(())
                } else {
                    Err(format!(
                        "this replica's last renewal of the Lease {}/{} was {age:?} ago, past the {budget:?} it may \
                         act on (lease duration minus margin): another replica may lead",
                        self.settings.namespace, self.settings.name
                    ))
                }
            }
        }
    }
}

/// Take part in the election until `stop`; then give the Lease up if this replica holds it.
pub async fn keep(
    leadership: std::sync::Arc<Leadership>,
    api: Api<Lease>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let settings = leadership.settings.clone();
    let every = settings.retry_period();
    // A request that hangs must not keep the keeper from noticing that the time is up; one that is only slow (a
    // loaded apiserver) must still count when it succeeds, or no replica would lead while the apiserver is slow.
    let patience = settings.duration.max(every);
    let mut seen = Seen::default();
    loop {
        let started = Instant::now();
        match tokio::time::timeout(patience, round(&api, &settings, &mut seen)).await {
            Ok(Ok(true)) => leadership.renewed_at(started),
            Ok(Ok(false)) => leadership.lost(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, lease = %settings.name, "lease round failed");
                leadership.expire();
            }
            Err(_) => {
                tracing::warn!(lease = %settings.name, ?patience, "lease round timed out");
                leadership.expire();
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = &mut stop => break,
        }
        leadership.expire();
    }
    let held = leadership.last_renewal().is_some();
    leadership.lost();
    if held {
        // Bounded: an apiserver that is down must not hold the shutdown past the pod's grace period.
        match tokio::time::timeout(patience, release(&api, &settings)).await {
            Ok(Ok(())) => tracing::info!(lease = %settings.name, "lease released"),
            Ok(Err(e)) => tracing::warn!(error = %e, lease = %settings.name, "releasing the lease"),
            Err(_) => tracing::warn!(lease = %settings.name, "releasing the lease timed out"),
        }
    }
}

/// What this replica has seen of the Lease, on its own clock.
#[derive(Debug, Default)]
struct Seen {
    /// The record's version, and since when it has stood unchanged.
    record: Option<(String, Instant)>,
    /// Since when the Lease has been missing (deleted, or not created yet).
    missing: Option<Instant>,
}

/// One look at the Lease, and the write it calls for. `Ok(true)`: this replica holds it now.
async fn round(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    seen: &mut Seen,
) -> Result<bool, kube::Error> {
    let now = jiff::Timestamp::now();
    let Some(lease) = api.get_opt(&settings.name).await? else {
        // A Lease deleted under a leader (a person, a reinstall): that leader may act on its last renewal for up to
        // a lease duration, so nobody creates it anew before one has passed since it was first seen missing.
        seen.record = None;
        let missing = *seen.missing.get_or_insert_with(Instant::now);
        if missing.elapsed() < settings.duration {
            return Ok(false);
        }
        let fresh = Lease {
            metadata: ObjectMeta {
                name: Some(settings.name.clone()),
                namespace: Some(settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(held_spec(settings, None, now)),
        };
        return match api.create(&PostParams::default(), &fresh).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    seen.missing = None;
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let unchanged_since = match &seen.record {
        Some((known, since)) if *known == version => *since,
        _ => {
            let since = Instant::now();
            seen.record = Some((version.clone(), since));
            since
        }
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let step = decide(
        &spec,
        &settings.identity,
        unchanged_since.elapsed(),
        settings.duration,
        now,
    );
    if step == Step::Wait {
        return Ok(false);
    }
    let next = serde_json::to_value(held_spec(settings, Some(&spec), now)).unwrap_or_default();
    match write(api, &settings.name, &version, next).await {
        Ok(written) => {
            if step == Step::Acquire {
                tracing::info!(lease = %settings.name, identity = %settings.identity, "lease acquired");
            }
            seen.record = written
                .metadata
                .resource_version
                .map(|v| (v, Instant::now()));
            Ok(true)
        }
        // Another replica wrote first: it holds the Lease (or will say so on the next look).
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// A merge patch of the Lease's spec, conditional on the version read (a patch, as the chart's Role allows).
async fn write(
    api: &Api<Lease>,
    name: &str,
    version: &str,
    spec: serde_json::Value,
) -> Result<Lease, kube::Error> {
    let patch = serde_json::json!({"metadata": {"resourceVersion": version}, "spec": spec});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// The spec of a Lease this replica holds, renewed `now`.
fn held_spec(
    settings: &LeaseSettings,
    before: Option<&LeaseSpec>,
    now: jiff::Timestamp,
) -> LeaseSpec {
    let ours =
        before.is_some_and(|b| b.holder_identity.as_deref() == Some(settings.identity.as_str()));
    let transitions = before.and_then(|b| b.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(
            i32::try_from(settings.duration.as_secs()).unwrap_or(i32::MAX),
        ),
        acquire_time: if ours {
            before.and_then(|b| b.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours || before.is_none() {
            transitions
        } else {
            transitions.saturating_add(1)
        }),
        ..LeaseSpec::default()
    }
}

/// Give the Lease up so that a standby takes over at once (as client-go does: no holder, a one-second duration).
async fn release(api: &Api<Lease>, settings: &LeaseSettings) -> Result<(), kube::Error> {
    let Some(lease) = api.get_opt(&settings.name).await? else {
        return Ok(());
    };
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref());
    if holder != Some(settings.identity.as_str()) {
        return Ok(());
    }
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let spec = serde_json::json!({
        "holderIdentity": null,
        "leaseDurationSeconds": 1,
        "renewTime": MicroTime(jiff::Timestamp::now()),
    });
    write(api, &settings.name, &version, spec).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LeaseSettings {
        LeaseSettings {
            name: "l".into(),
            namespace: "ns".into(),
            identity: "me".into(),
            duration: Duration::from_secs(3),
            margin: Duration::from_secs(1),
        }
    }

    fn spec(holder: Option<&str>, renewed_ago: i64, now: jiff::Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(3),
            renew_time: Some(MicroTime(
                now - jiff::SignedDuration::from_secs(renewed_ago),
            )),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn who_takes_the_lease() {
        let now = jiff::Timestamp::now();
        let d = Duration::from_secs(3);
        let fresh = Duration::from_millis(100);
        assert_eq!(
            decide(&spec(Some("me"), 0, now), "me", fresh, d, now),
            Step::Renew
        );
        assert_eq!(
            decide(&spec(None, 0, now), "me", fresh, d, now),
            Step::Acquire
        );
        assert_eq!(
            decide(&spec(Some(""), 0, now), "me", fresh, d, now),
            Step::Acquire
        );
        // Held by another and renewed lately: wait, however the record looks.
        assert_eq!(
            decide(&spec(Some("b"), 1, now), "me", fresh, d, now),
            Step::Wait
        );
        // Unchanged for a lease duration by our own clock: expired, whatever its renew time says.
        assert_eq!(
            decide(
                &spec(Some("b"), 0, now),
                "me",
                Duration::from_secs(3),
                d,
                now
            ),
            Step::Acquire
        );
        // Renewed a lease duration ago by the wall clock: expired (a replica that just started).
        assert_eq!(
            decide(&spec(Some("b"), 4, now), "me", fresh, d, now),
            Step::Acquire
        );
        // A renew time in the future (a clock ahead) is not taken for expiry.
        assert_eq!(
            decide(&spec(Some("b"), -10, now), "me", fresh, d, now),
            Step::Wait
        );
    }

    #[test]
    fn the_fence_holds_only_inside_the_duration_minus_the_margin() {
        let l = Leadership::new(settings());
        assert!(l.may_act().is_err(), "never renewed");
        l.renewed_at(Instant::now());
        assert!(l.may_act().is_ok() && l.holds() && *l.subscribe().borrow());
        // A renewal 2.5 s ago (a slow apiserver, or a pause): past 3 s - 1 s, no side effect, still leading.
        l.set_renewal(Instant::now().checked_sub(Duration::from_millis(2500)));
        let refused = l.may_act().unwrap_err();
        assert!(refused.contains("another replica may lead"), "{refused}");
        l.expire();
        assert!(
            *l.subscribe().borrow(),
            "a late renewal is not a lost Lease"
        );
        // None for a whole lease duration: stand down.
        l.set_renewal(Instant::now().checked_sub(Duration::from_millis(3100)));
        l.expire();
        assert!(!*l.subscribe().borrow(), "stood down");
        assert!(l.may_act().is_err());
    }

    #[test]
    fn settings_are_checked() {
        assert!(settings().check().is_ok());
        let mut s = settings();
        s.margin = Duration::from_secs(3);
        assert!(s.check().is_err());
        s.margin = Duration::ZERO;
        assert!(s.check().is_err());
        assert!(settings().retry_period() < settings().duration - settings().margin);
    }
}
