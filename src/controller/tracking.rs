//! Following deployed actions: the newest action instance of every scheduled action a deployment created, as the
//! shared poller reads them, summed into one view. Shared by every kind that deploys.

use std::collections::HashMap;

use super::poller::{Owner, Poller};
use crate::crd::ScheduledActionStatus;
use crate::gateway::actions::Polled;
use crate::gateway::{ActionId, ActionResults, ActionState, ActionStatus, ScheduledActionId};

/// What the scheduled actions of one deployment are doing, together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub results: ActionResults,
    /// Action instances that can still run (OPEN, PENDING, ACTIVE).
    pub open: Vec<ActionId>,
    /// Scheduled actions waiting for approval in Tanium.
    pub awaiting_approval: Vec<String>,
    /// Scheduled actions with no action instance yet (a future start time): they will still run.
    pub not_issued: Vec<String>,
    pub any_expired: bool,
    pub any_stopped: bool,
    /// The latest expiry among the instances.
    pub expires_at: Option<jiff::Timestamp>,
    /// The Gateway's clock at the poll: expiry and end times are compared with it, not with ours.
    pub now: jiff::Timestamp,
}

impl Progress {
    /// Anything that can still run on an endpoint.
    pub fn any_open(&self) -> bool {
        !self.open.is_empty() || !self.not_issued.is_empty()
    }
}

/// What the shared poller reads for each scheduled action of a deployment, in order: the instance by id when it is
/// known and does not change (a one-off action), else the scheduled action's newest instance (a recurring action
/// gets a new one at each reissue; a future start has none yet).
pub fn polled(scheduled: &[ScheduledActionStatus], recurring: bool) -> Vec<Polled> {
    scheduled
        .iter()
        .map(|sa| match &sa.last_action_id {
            Some(id) if !recurring => Polled::Action(ActionId(id.clone())),
            _ => Polled::Schedule(ScheduledActionId(sa.id.clone())),
        })
        .collect()
}

/// The newest instance of each scheduled action, as the shared poller last read it; updates `scheduled` in place
/// (ids, statuses). `None`: the poller has not answered for every one yet; it wakes `owner` when it has. No
/// Gateway request is made here: the poller asks for every object's actions together, in batches.
pub fn poll(
    poller: &Poller,
    owner: &Owner,
    scheduled: &mut [ScheduledActionStatus],
    recurring: bool,
) -> Option<Progress> {
    let keys = polled(scheduled, recurring);
    let seen = poller.observe(owner, &keys)?;
    let mut states: HashMap<String, Option<ActionState>> = HashMap::new();
    for (sa, key) in scheduled.iter_mut().zip(&keys) {
        let state = seen.states.get(key).cloned().flatten();
        if let (Polled::Schedule(_), Some(s)) = (key, &state) {
            if sa.last_action_id.is_none() && !recurring {
                // From now on the instance itself is read; its scheduled action no longer needs to be.
                poller.rename(key, Polled::Action(s.id.clone()));
            }
            sa.last_action_id = Some(s.id.0.clone());
        }
        states.insert(sa.id.clone(), state);
    }
    let mut progress = Progress {
        now: seen.now,
        ..Progress::default()
    };
    for sa in scheduled.iter_mut() {
        if sa.last_action_id.is_none() {
            progress.not_issued.push(sa.id.clone());
            continue;
        }
        let Some(state) = states.remove(&sa.id).flatten() else {
            // The Gateway no longer knows it (purged): nothing more will happen to it.
            sa.status = Some("UNKNOWN".into());
            continue;
        };
        sa.status = Some(status_name(state.status).into());
        add(&mut progress.results, &state.results);
        match state.status {
            ActionStatus::Pending => {
                progress.awaiting_approval.push(sa.id.clone());
                progress.open.push(state.id.clone());
            }
            s if s.is_open() => progress.open.push(state.id.clone()),
            ActionStatus::Expired => progress.any_expired = true,
            ActionStatus::Stopped => progress.any_stopped = true,
            _ => {}
        }
        if state.expiration_time > progress.expires_at {
            progress.expires_at = state.expiration_time;
        }
    }
    Some(progress)
}

fn status_name(s: ActionStatus) -> &'static str {
    match s {
        ActionStatus::Open => "OPEN",
        ActionStatus::Pending => "PENDING",
        ActionStatus::Active => "ACTIVE",
        ActionStatus::Stopped => "STOPPED",
        ActionStatus::Expired => "EXPIRED",
        ActionStatus::Closed => "CLOSED",
        ActionStatus::Unknown => "UNKNOWN",
    }
}

fn add(total: &mut ActionResults, r: &ActionResults) {
    total.waiting += r.waiting;
    total.downloading += r.downloading;
    total.running += r.running;
    total.waiting_to_retry += r.waiting_to_retry;
    total.completed += r.completed;
    total.expired += r.expired;
    total.failed += r.failed;
    total.pending_verification += r.pending_verification;
    total.verified += r.verified;
    total.failed_verification += r.failed_verification;
}
