//! Following deployed actions: one batched poll for the newest action instance of every scheduled action a
//! deployment created, summed into one view. Shared by every kind that deploys.

use std::collections::HashMap;

use super::poller::{Owner, Poller};
use crate::crd::ScheduledActionStatus;
use crate::gateway::{
    ActionId, ActionResults, ActionState, ActionStatus, GatewayClient, GatewayError,
};

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

/// Read the newest instance of each scheduled action and update `scheduled` in place (ids, statuses). `None`:
/// the shared poller has not answered for every instance yet; it wakes `owner` when it has.
///
/// A recurring action gets a new instance at each reissue, so its scheduled action is asked which instance is
/// newest; a one-off action's instance never changes, so its instances are left to the shared poller, which asks
/// for every open action of every object in batches.
pub async fn poll(
    gateway: &GatewayClient,
    poller: &Poller,
    owner: &Owner,
    scheduled: &mut [ScheduledActionStatus],
    recurring: bool,
) -> Result<Option<Progress>, GatewayError> {
    let mut states: HashMap<String, Option<ActionState>> = HashMap::new();
    let mut now = None;
    if recurring {
        for sa in scheduled.iter_mut() {
            let info = gateway
                .scheduled_action(&crate::gateway::ScheduledActionId(sa.id.clone()))
                .await?;
            let last = info.and_then(|i| i.last_action);
            if let Some(l) = &last {
                sa.last_action_id = Some(l.id.0.clone());
            }
            states.insert(sa.id.clone(), last);
        }
    } else {
        // An instance the deployment's answer did not name yet (a future start): ask its scheduled action.
        for sa in scheduled
            .iter_mut()
            .filter(|sa| sa.last_action_id.is_none())
        {
            let info = gateway
                .scheduled_action(&crate::gateway::ScheduledActionId(sa.id.clone()))
                .await?;
            sa.last_action_id = info.and_then(|i| i.last_action).map(|a| a.id.0);
        }
        let ids = instances(scheduled);
        let Some(seen) = poller.observe(owner, &ids) else {
            return Ok(None);
        };
        now = Some(seen.now);
        let mut by_action = seen.states;
        for sa in scheduled.iter() {
            let state = sa
                .last_action_id
                .as_ref()
                .and_then(|id| by_action.remove(&ActionId(id.clone())).flatten());
            states.insert(sa.id.clone(), state);
        }
    }
    let mut progress = Progress {
        now: match now {
            Some(now) => now,
            None => gateway.now().await?,
        },
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
    Ok(Some(progress))
}

/// The action instances a deployment has issued (what the poller watches for it).
pub fn instances(scheduled: &[ScheduledActionStatus]) -> Vec<ActionId> {
    scheduled
        .iter()
        .filter_map(|sa| sa.last_action_id.clone().map(ActionId))
        .collect()
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
