//! A TaniumAction's decisions, without I/O: which stage a reconcile is in, and what one poll of its actions means.
//! The reconciler (`super`) does what these say; the gates before a deployment are `controller::gates`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::controller::deploy::LookUp;
use crate::controller::tracking::{self, Progress};
use crate::crd::EndpointCounts;
use crate::crd::Reason;
use crate::crd::action::{Phase, TaniumActionStatus};
use crate::gateway::ActionId;

/// Where a reconcile starts, from the phase the status records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Terminal: nothing to ask the Gateway; only the TTL remains.
    Finished,
    /// An `actionPerform` may have happened: follow it (or look it up).
    Track,
    /// Not deployed and `spec.suspend`: hold.
    Suspend,
    /// Not deployed: the gates, then the deployment.
    Prepare,
}

pub fn stage(phase: Phase, suspend: bool) -> Stage {
    if phase.is_terminal() {
        Stage::Finished
    } else if phase.is_deployed() {
        Stage::Track
    } else if suspend {
        Stage::Suspend
    } else {
        Stage::Prepare
    }
}

/// Ends the message of a refusal not confirmed yet: a refusal may follow a commit (Tanium does not say otherwise),
/// so it is final only once a look-up by name after the grace finds nothing; taken off the message then.
pub const UNCONFIRMED: &str = "; to be confirmed by a look-up by name before the object fails";

/// What a look-up by name after an `actionPerform` of unknown outcome means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The earlier attempt created these scheduled actions: follow them, never deploy again.
    Follow(Vec<String>),
    /// Too soon to say that nothing was created: look again after this.
    Wait(Duration),
    /// Nothing was created and the Gateway had refused the attempt: `Failed`, with its refusal.
    Failed(String),
    /// Nothing was created: back to `Pending`, through every gate again, before a new attempt.
    Redeploy,
}

/// `deployed` is the Deployed condition the attempt left (a refusal is recorded there, unconfirmed).
pub fn after_look_up(found: LookUp, deployed: Option<&Condition>) -> Recovery {
    match found {
        LookUp::Adopted(ids) => Recovery::Follow(ids),
        LookUp::TooEarly(wait) => Recovery::Wait(wait),
        LookUp::Nothing => match deployed
            .filter(|c| c.reason == Reason::DeployRefused.as_str() && c.status == "False")
        {
            Some(c) => Recovery::Failed(c.message.trim_end_matches(UNCONFIRMED).to_owned()),
            None => Recovery::Redeploy,
        },
    }
}

/// What one poll of a deployment's actions means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Tanium holds these scheduled actions for a second person's approval.
    AwaitingApproval(Vec<String>),
    Running,
    /// Over: the phase and reason to end in, and the action instances to stop first.
    Finish {
        phase: Phase,
        reason: Reason,
        stop: Vec<ActionId>,
    },
}

/// What the object is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Endpoints the preview counted.
    pub targeted: u64,
    /// `schedule.reissueSeconds`: Tanium reissues it until its end time.
    pub recurring: bool,
    /// The schedule's end time has passed (by the Gateway's clock), or there is none.
    pub schedule_ended: bool,
    pub stop_when_complete: bool,
}

/// The decision after a poll, in order: awaiting approval in Tanium; a recurring action before its end time runs;
/// stopped in Tanium before its work was done; over (nothing open, or the previewed work done: what is still open
/// is stopped when `stopWhenComplete` or recurring); past its expiry yet shown open (stopped, so it cannot
/// linger); otherwise running.
pub fn after_poll(p: &Progress, s: Settings) -> Step {
    if !p.awaiting_approval.is_empty() {
        return Step::AwaitingApproval(p.awaiting_approval.clone());
    }
    if s.recurring && !s.schedule_ended {
        return Step::Running;
    }
    let done = tracking::work_done(&p.results, s.targeted);
    if !p.any_open() && p.any_stopped && !done {
        return Step::Finish {
            phase: Phase::Stopped,
            reason: Reason::StoppedInTanium,
            stop: Vec::new(),
        };
    }
    if !p.any_open() || done {
        let (phase, reason) = outcome(&p.results, done);
        let stop = if s.stop_when_complete || s.recurring {
            p.open.clone()
        } else {
            Vec::new()
        };
        return Step::Finish {
            phase,
            reason,
            stop,
        };
    }
    if p.expires_at.is_some_and(|expiry| p.now >= expiry) {
        let (phase, reason) = outcome(&p.results, false);
        return Step::Finish {
            phase,
            reason,
            stop: p.open.clone(),
        };
    }
    Step::Running
}

/// While an action runs, can what a poll learned wait for a later write? Only when the status differs from the one
/// written in nothing but the tally: the counts, the expiry, Ready's and Completed's messages (which say the counts),
/// and a first reading of "OPEN" after none (both mean it may run); and the counts written last are younger than
/// `every`. Anything else (a phase, an instance, a condition, a new generation) is written at once: this only spares
/// the apiserver the running tally under a burst.
pub fn progress_can_wait(
    written: &TaniumActionStatus,
    polled: &TaniumActionStatus,
    now: jiff::Timestamp,
    every: Duration,
) -> bool {
    let without_tally = |s: &TaniumActionStatus| {
        let mut s = s.clone();
        s.results = None;
        s.results_written_at = None;
        s.expires_at = None;
        for sa in &mut s.deployment.scheduled_actions {
            sa.status.get_or_insert_with(|| "OPEN".into());
        }
        for c in &mut s.conditions {
            if c.type_ == crate::crd::condition::READY
                || c.type_ == crate::crd::condition::COMPLETED
            {
                c.message.clear();
            }
        }
        s
    };
    let fresh = written
        .results_written_at
        .as_ref()
        .is_some_and(|at| now.duration_since(at.0).unsigned_abs() < every);
    fresh && without_tally(written) == without_tally(polled)
}

/// How an action that is over ended: `Completed` once it ran anywhere (the reason says whether every target
/// finished cleanly), `Expired` when it ran nowhere before it expired.
pub fn outcome(r: &EndpointCounts, all_finished: bool) -> (Phase, Reason) {
    let ran = r.completed + r.verified + r.failed + r.failed_verification;
    if ran == 0 {
        (Phase::Expired, Reason::Expired)
    } else if r.failed + r.failed_verification > 0 {
        (Phase::Completed, Reason::CompletedWithFailures)
    } else if r.expired > 0 || !all_finished {
        (Phase::Completed, Reason::CompletedPartially)
    } else {
        (Phase::Completed, Reason::Completed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_up_follows_waits_fails_or_deploys_again() {
        let refused = Condition {
            type_: "Deployed".into(),
            status: "False".into(),
            reason: Reason::DeployRefused.as_str().into(),
            message: format!("the Gateway refused actionPerform: no such group{UNCONFIRMED}"),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::UNIX_EPOCH,
            ),
            observed_generation: None,
        };
        let unknown = Condition {
            reason: Reason::OutcomeUnknown.as_str().into(),
            ..refused.clone()
        };
        // Found: followed, whatever the attempt was told.
        assert_eq!(
            after_look_up(LookUp::Adopted(vec!["7".into()]), Some(&refused)),
            Recovery::Follow(vec!["7".into()])
        );
        let wait = Duration::from_secs(3);
        assert_eq!(
            after_look_up(LookUp::TooEarly(wait), Some(&refused)),
            Recovery::Wait(wait)
        );
        assert_eq!(
            after_look_up(LookUp::Nothing, Some(&refused)),
            Recovery::Failed("the Gateway refused actionPerform: no such group".into())
        );
        assert_eq!(
            after_look_up(LookUp::Nothing, Some(&unknown)),
            Recovery::Redeploy
        );
        assert_eq!(after_look_up(LookUp::Nothing, None), Recovery::Redeploy);
    }

    #[test]
    fn every_phase_starts_its_own_stage() {
        use Phase::*;
        let table = [
            (Pending, false, Stage::Prepare),
            (Pending, true, Stage::Suspend),
            (Blocked, false, Stage::Prepare),
            (Suspended, false, Stage::Prepare),
            (Suspended, true, Stage::Suspend),
            (AwaitingPreviewApproval, false, Stage::Prepare),
            (Deploying, false, Stage::Track),
            // Once an actionPerform may have happened, suspend has no effect.
            (Deploying, true, Stage::Track),
            (AwaitingApproval, true, Stage::Track),
            (Running, false, Stage::Track),
            (Completed, false, Stage::Finished),
            (Expired, false, Stage::Finished),
            (Stopped, true, Stage::Finished),
            (Failed, false, Stage::Finished),
        ];
        for (phase, suspend, want) in table {
            assert_eq!(stage(phase, suspend), want, "{phase:?} suspend={suspend}");
        }
    }

    fn results(
        completed: u32,
        failed: u32,
        expired: u32,
        running: u32,
        waiting: u32,
    ) -> EndpointCounts {
        EndpointCounts {
            completed,
            failed,
            expired,
            running,
            waiting,
            ..EndpointCounts::default()
        }
    }

    fn progress(r: EndpointCounts, open: &[&str]) -> Progress {
        Progress {
            results: r,
            open: open.iter().map(|id| ActionId((*id).into())).collect(),
            now: jiff::Timestamp::UNIX_EPOCH,
            ..Progress::default()
        }
    }

    const ONE_OFF: Settings = Settings {
        targeted: 3,
        recurring: false,
        schedule_ended: true,
        stop_when_complete: true,
    };

    fn finish(phase: Phase, reason: Reason, stop: &[&str]) -> Step {
        Step::Finish {
            phase,
            reason,
            stop: stop.iter().map(|id| ActionId((*id).into())).collect(),
        }
    }

    #[test]
    fn every_poll_outcome() {
        let expired_at = |mut p: Progress| {
            p.expires_at = Some(p.now);
            p
        };
        let stopped = |mut p: Progress| {
            p.any_stopped = true;
            p
        };
        let awaiting = |mut p: Progress| {
            p.awaiting_approval = vec!["7".into()];
            p
        };
        let keep_open = Settings {
            stop_when_complete: false,
            ..ONE_OFF
        };
        let recurring = |ended| Settings {
            recurring: true,
            schedule_ended: ended,
            stop_when_complete: false,
            ..ONE_OFF
        };
        let table: Vec<(&str, Progress, Settings, Step)> = vec![
            (
                "approval in Tanium comes first",
                awaiting(progress(results(3, 0, 0, 0, 0), &["1"])),
                ONE_OFF,
                Step::AwaitingApproval(vec!["7".into()]),
            ),
            (
                "running",
                progress(results(1, 0, 0, 2, 0), &["1"]),
                ONE_OFF,
                Step::Running,
            ),
            (
                "done: stopped",
                progress(results(3, 0, 0, 0, 0), &["1"]),
                ONE_OFF,
                finish(Phase::Completed, Reason::Completed, &["1"]),
            ),
            (
                "done, left open",
                progress(results(3, 0, 0, 0, 0), &["1"]),
                keep_open,
                finish(Phase::Completed, Reason::Completed, &[]),
            ),
            (
                "done with waiting ones: stopped",
                progress(results(3, 0, 0, 0, 2), &["1"]),
                ONE_OFF,
                finish(Phase::Completed, Reason::Completed, &["1"]),
            ),
            (
                "previewed number done, one at work",
                progress(results(3, 0, 0, 1, 0), &["1"]),
                ONE_OFF,
                Step::Running,
            ),
            (
                "failures",
                progress(results(2, 1, 0, 0, 0), &["1"]),
                ONE_OFF,
                finish(Phase::Completed, Reason::CompletedWithFailures, &["1"]),
            ),
            (
                "closed by Tanium, partly",
                progress(results(2, 0, 1, 0, 0), &[]),
                ONE_OFF,
                finish(Phase::Completed, Reason::CompletedPartially, &[]),
            ),
            (
                "closed by Tanium, ran nowhere",
                progress(results(0, 0, 3, 0, 0), &[]),
                ONE_OFF,
                finish(Phase::Expired, Reason::Expired, &[]),
            ),
            (
                "stopped in Tanium",
                stopped(progress(results(1, 0, 0, 0, 0), &[])),
                ONE_OFF,
                finish(Phase::Stopped, Reason::StoppedInTanium, &[]),
            ),
            (
                "stopped in Tanium after the work",
                stopped(progress(results(3, 0, 0, 0, 0), &[])),
                ONE_OFF,
                finish(Phase::Completed, Reason::Completed, &[]),
            ),
            (
                "past expiry, shown open",
                expired_at(progress(results(1, 0, 0, 1, 0), &["1"])),
                ONE_OFF,
                finish(Phase::Completed, Reason::CompletedPartially, &["1"]),
            ),
            (
                "past expiry, ran nowhere",
                expired_at(progress(results(0, 0, 0, 0, 3), &["1"])),
                keep_open,
                finish(Phase::Expired, Reason::Expired, &["1"]),
            ),
            (
                "recurring before its end",
                progress(results(3, 0, 0, 0, 0), &["1"]),
                recurring(false),
                Step::Running,
            ),
            (
                "recurring after its end: stopped",
                progress(results(3, 0, 0, 0, 0), &["1"]),
                recurring(true),
                finish(Phase::Completed, Reason::Completed, &["1"]),
            ),
            (
                "nothing previewed to judge by",
                progress(results(5, 0, 0, 0, 0), &["1"]),
                Settings {
                    targeted: 0,
                    ..ONE_OFF
                },
                Step::Running,
            ),
        ];
        for (case, p, s, want) in table {
            assert_eq!(after_poll(&p, s), want, "{case}");
        }
    }

    #[test]
    fn an_unseen_or_unissued_schedule_keeps_it_open() {
        let mut p = progress(results(1, 0, 0, 0, 0), &[]);
        p.unseen = vec!["9".into()];
        assert_eq!(after_poll(&p, ONE_OFF), Step::Running);
        p.unseen.clear();
        p.not_issued = vec!["9".into()];
        assert_eq!(after_poll(&p, ONE_OFF), Step::Running);
    }

    #[test]
    fn only_the_running_tally_waits_and_never_long() {
        use crate::crd::{ResultCounts, ScheduledActionStatus};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let t =
            |s: i64| jiff::Timestamp::from_second(1_000_000 + s).unwrap_or_else(|e| panic!("{e}"));
        let mut written = TaniumActionStatus {
            phase: Some(Phase::Running),
            results: Some(ResultCounts {
                targeted: 2,
                ..ResultCounts::default()
            }),
            results_written_at: Some(Time(t(0))),
            ..TaniumActionStatus::default()
        };
        written.deployment.scheduled_actions = vec![ScheduledActionStatus {
            id: "7".into(),
            platforms: Vec::new(),
            last_action_id: Some("70".into()),
            status: None,
        }];
        crate::crd::set_condition(
            &mut written.conditions,
            crate::crd::condition::READY,
            false,
            "Running",
            "0 of 2",
            Some(1),
        );
        // What a poll makes of it, as `track` does: a copy with what it learned.
        let status = |sa_status: Option<&str>, instance: &str, completed: u32, message: &str| {
            let mut s = written.clone();
            if let Some(r) = s.results.as_mut() {
                r.counts.completed = completed;
            }
            let sa = &mut s.deployment.scheduled_actions[0];
            sa.status = sa_status.map(str::to_owned);
            sa.last_action_id = Some(instance.into());
            crate::crd::set_condition(
                &mut s.conditions,
                crate::crd::condition::READY,
                false,
                "Running",
                message,
                Some(1),
            );
            s
        };
        let every = Duration::from_secs(30);
        // The tally only (the first OPEN reading after none is the same "may run").
        let tally = status(Some("OPEN"), "70", 1, "1 of 2");
        assert!(progress_can_wait(&written, &tally, t(29), every));
        // Due again.
        assert!(!progress_can_wait(&written, &tally, t(30), every));
        // Never written; an instance that ended; a new instance; an unknown status; another condition: now.
        let mut never = written.clone();
        never.results_written_at = None;
        assert!(!progress_can_wait(&never, &tally, t(1), every));
        for polled in [
            status(Some("CLOSED"), "70", 1, "1 of 2"),
            status(Some("OPEN"), "71", 1, "1 of 2"),
            status(Some("UNRECOGNIZED"), "70", 1, "1 of 2"),
        ] {
            assert!(
                !progress_can_wait(&written, &polled, t(1), every),
                "{polled:?}"
            );
        }
        let mut token = tally.clone();
        crate::crd::set_condition(
            &mut token.conditions,
            "GatewayToken",
            false,
            "TokenRejected",
            "no",
            Some(1),
        );
        assert!(!progress_can_wait(&written, &token, t(1), every));
    }
}
