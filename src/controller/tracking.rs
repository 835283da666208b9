//! Following deployed actions: the newest action instance of every scheduled action a deployment created, as the
//! shared poller reads them, summed into one view. Shared by every kind that deploys.

use super::poller::{Owner, Poller};
use super::wire;
use crate::crd::{EndpointCounts, ScheduledActionStatus};
use crate::gateway::poll::Polled;
use crate::gateway::{ActionId, ActionStatus, Read, ScheduledActionId};

/// What the scheduled actions of one deployment are doing, together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub results: EndpointCounts,
    /// Action instances that can still run (OPEN, PENDING, ACTIVE, or a status this client does not know).
    pub open: Vec<ActionId>,
    /// Scheduled actions waiting for approval in Tanium.
    pub awaiting_approval: Vec<String>,
    /// Scheduled actions with no action instance yet (a future start time): they will still run.
    pub not_issued: Vec<String>,
    /// Scheduled actions the Gateway does not show now (a `null` answer, not yet long enough to mean "gone"):
    /// they may still run.
    pub unseen: Vec<String>,
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
        !self.open.is_empty() || !self.not_issued.is_empty() || !self.unseen.is_empty()
    }
}

/// The action did what the preview showed: as many endpoints finished as were previewed (`targeted`), and none is
/// at work, so that a stop cuts off only endpoints that had not started (see `stopWhenComplete`). Finishing the
/// previewed number is not enough: the preview may have counted fewer than the action reached (endpoints that came
/// online later, readings that changed since), and those may still be downloading or running.
pub fn work_done(r: &EndpointCounts, targeted: u64) -> bool {
    targeted > 0 && u64::from(r.finished()) >= targeted && r.at_work() == 0
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

/// Recorded for a scheduled action Tanium no longer shows: its instance and then the scheduled action itself were
/// answered `null` for `gone_after` each.
pub const GONE: &str = "GONE";

/// The newest instance of each scheduled action, as the shared poller last read it; updates `scheduled` in place
/// (ids, statuses). `None`: the poller has not answered for every one yet; it wakes `owner` when it has. No
/// Gateway request is made here: the poller asks for every object's actions together, in batches.
///
/// A `null` answer is "not shown now", never "gone": what was known stays, and the action counts as open. Only when
/// an instance has been `null` for `gone_after` is it read through its scheduled action instead, and only when
/// that too has been `null` for `gone_after` is it gone.
pub fn poll(
    poller: &Poller,
    owner: &Owner,
    scheduled: &mut [ScheduledActionStatus],
    recurring: bool,
    gone_after: std::time::Duration,
) -> Option<Progress> {
    let keys = polled(scheduled, recurring);
    let seen = poller.observe(owner, &keys)?;
    let mut progress = Progress {
        now: seen.now,
        ..Progress::default()
    };
    for (sa, key) in scheduled.iter_mut().zip(&keys) {
        let reading = seen.states.get(key).cloned().unwrap_or_default();
        if reading.absent_for.is_some_and(|d| d >= gone_after) {
            match key {
                Polled::Action(_) => {
                    // Asked through its scheduled action from now on: only that can say it is gone.
                    poller.forget(std::slice::from_ref(key));
                    sa.last_action_id = None;
                    progress.unseen.push(sa.id.clone());
                }
                Polled::Schedule(_) => sa.status = Some(GONE.into()),
            }
            continue;
        }
        let state = match reading.known {
            None => {
                // Never shown yet (not visible so soon after its creation, or its reads failed): it may run.
                progress.unseen.push(sa.id.clone());
                continue;
            }
            Some(Read::Absent | Read::NotIssued) => {
                progress.not_issued.push(sa.id.clone());
                continue;
            }
            Some(Read::State(state)) => state,
        };
        if let Polled::Schedule(_) = key {
            if sa.last_action_id.is_none() && !recurring {
                // From now on the instance itself is read; its scheduled action no longer needs to be.
                poller.rename(key, Polled::Action(state.id.clone()));
            }
            sa.last_action_id = Some(state.id.0.clone());
        }
        sa.status = Some(status_name(state.status).into());
        progress.results = progress.results.plus(wire::counts(&state.results));
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
        // Not one of ours: followed as open until it expires (`ActionStatus::is_open`).
        ActionStatus::Unknown => "UNRECOGNIZED",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use kube::runtime::reflector::ObjectRef;

    use super::*;
    use crate::controller::Timing;

    use crate::controller::poller::tests::state as open;

    #[test]
    fn a_null_is_not_gone_until_its_scheduled_action_says_so_for_long() {
        let poller = Poller::new(50);
        let owner = Owner::Action(ObjectRef::new("a").within("ns"));
        let timing = Timing {
            gone_after: Duration::from_millis(40),
            ..Timing::default()
        };
        let now = jiff::Timestamp::UNIX_EPOCH;
        let mut scheduled = vec![ScheduledActionStatus {
            id: "5".into(),
            platforms: Vec::new(),
            last_action_id: Some("9".into()),
            status: None,
        }];
        let instance = Polled::Action(ActionId::from("9"));
        let schedule = Polled::Schedule(ScheduledActionId("5".into()));
        let look = |scheduled: &mut Vec<ScheduledActionStatus>| {
            poll(&poller, &owner, scheduled, false, timing.gone_after)
        };
        assert_eq!(look(&mut scheduled), None, "not polled yet");
        let answer = |key: &Polled, read: Read| HashMap::from([(key.clone(), read)]);
        poller.record(&timing, now, answer(&instance, open("9", 1)));
        let p = look(&mut scheduled).unwrap();
        assert!(p.any_open() && p.results.completed == 1);

        // A null: no news. What was known stands.
        poller.record(&timing, now, answer(&instance, Read::Absent));
        let p = look(&mut scheduled).unwrap();
        assert_eq!((p.open.len(), p.results.completed), (1, 1));
        assert_eq!(scheduled[0].status.as_deref(), Some("OPEN"));

        // Null for long: read through the scheduled action from now on, still open meanwhile.
        std::thread::sleep(Duration::from_millis(50));
        poller.record(&timing, now, answer(&instance, Read::Absent));
        let p = look(&mut scheduled).unwrap();
        assert!(p.any_open() && p.unseen == vec!["5".to_owned()]);
        assert_eq!(scheduled[0].last_action_id, None);
        assert_eq!(
            look(&mut scheduled),
            None,
            "its scheduled action is not polled yet"
        );

        // The scheduled action shows its instance again: followed by id again.
        poller.record(&timing, now, answer(&schedule, open("9", 2)));
        let p = look(&mut scheduled).unwrap();
        assert_eq!((p.open.len(), p.results.completed), (1, 2));
        assert_eq!(scheduled[0].last_action_id.as_deref(), Some("9"));

        // Gone for real: the instance null for long, then its scheduled action null for long.
        std::thread::sleep(Duration::from_millis(50));
        poller.record(&timing, now, answer(&instance, Read::Absent));
        std::thread::sleep(Duration::from_millis(50));
        poller.record(&timing, now, answer(&instance, Read::Absent));
        assert!(look(&mut scheduled).unwrap().any_open());
        assert_eq!(
            look(&mut scheduled),
            None,
            "its scheduled action is not polled yet"
        );
        poller.record(&timing, now, answer(&schedule, Read::Absent));
        assert!(
            look(&mut scheduled).unwrap().any_open(),
            "a first null of the schedule"
        );
        std::thread::sleep(Duration::from_millis(50));
        poller.record(&timing, now, answer(&schedule, Read::Absent));
        let p = look(&mut scheduled).unwrap();
        assert!(!p.any_open(), "{p:?}");
        assert_eq!(scheduled[0].status.as_deref(), Some(GONE));
    }

    #[test]
    fn a_status_this_client_does_not_know_is_open() {
        let poller = Poller::new(50);
        let owner = Owner::Action(ObjectRef::new("a").within("ns"));
        let timing = Timing::default();
        let mut scheduled = vec![ScheduledActionStatus {
            id: "5".into(),
            platforms: Vec::new(),
            last_action_id: Some("9".into()),
            status: None,
        }];
        let key = Polled::Action(ActionId::from("9"));
        poll(&poller, &owner, &mut scheduled, false, timing.gone_after);
        let Read::State(mut state) = open("9", 0) else {
            unreachable!()
        };
        state.status = ActionStatus::Unknown;
        poller.record(
            &timing,
            jiff::Timestamp::UNIX_EPOCH,
            HashMap::from([(key, Read::State(state))]),
        );
        let p = poll(&poller, &owner, &mut scheduled, false, timing.gone_after).unwrap();
        assert!(p.any_open());
        assert_eq!(scheduled[0].status.as_deref(), Some("UNRECOGNIZED"));
    }

    #[test]
    fn done_means_the_previewed_number_finished_and_none_is_at_work() {
        let r = |completed, running, waiting| EndpointCounts {
            completed,
            running,
            waiting,
            ..EndpointCounts::default()
        };
        assert!(work_done(&r(3, 0, 0), 3));
        assert!(work_done(&r(3, 0, 2), 3), "waiting ones may be cut off");
        assert!(
            !work_done(&r(3, 1, 0), 3),
            "one that came in late is still running"
        );
        assert!(!work_done(&r(2, 0, 0), 3));
        assert!(
            !work_done(&r(0, 0, 0), 0),
            "nothing previewed, nothing to judge by"
        );
        let retrying = EndpointCounts {
            completed: 5,
            waiting_to_retry: 1,
            ..EndpointCounts::default()
        };
        assert!(!work_done(&retrying, 3));
    }
}
