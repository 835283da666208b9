//! A TaniumTag's decisions, without I/O: where a reconcile starts, which tags come off, whether the matching
//! endpoints are in sync or a round is due (and allowed), when a round is over, and which phase and Ready each
//! outcome means. Its spec and policy gate is `gates::check_targets`. The reconciler (`super`) asks the Gateway
//! and does what these say.

use crate::controller::gates::{Held, Wait};
use crate::controller::tracking::{self, Progress};
use crate::crd::Reason;
use crate::crd::tag::{RoundKind, TagPhase};
use crate::gateway::PackageSpec;

/// Where a reconcile starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A round is in flight: follow it to its end (even when suspended: it was sent).
    Round,
    /// `spec.suspend`, and no round in flight: no new round.
    Suspended,
    /// The gates, then the counts.
    Survey,
}

pub fn stage(round_in_flight: bool, suspend: bool) -> Stage {
    if round_in_flight {
        Stage::Round
    } else if suspend {
        Stage::Suspended
    } else {
        Stage::Survey
    }
}

/// What a reconcile ended in: the one place a TaniumTag's phase and Ready condition are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Suspended,
    /// The next round waits for an approved preview (the operator's approval threshold).
    AwaitingApproval,
    /// A gate, the packages or a limit hold it; the reason says which.
    Held(Reason),
    InSync,
    /// A round was sent.
    Round(RoundKind),
}

impl Transition {
    pub fn phase(self) -> TagPhase {
        match self {
            Self::Suspended => TagPhase::Suspended,
            Self::AwaitingApproval => TagPhase::AwaitingPreviewApproval,
            Self::Held(_) => TagPhase::Blocked,
            Self::InSync => TagPhase::InSync,
            Self::Round(RoundKind::Add) => TagPhase::Tagging,
            Self::Round(RoundKind::Remove) => TagPhase::Removing,
        }
    }

    /// Ready's status and reason.
    pub fn ready(self) -> (bool, Reason) {
        match self {
            Self::Suspended => (false, Reason::Suspended),
            Self::AwaitingApproval => (false, Reason::AwaitingPreviewApproval),
            Self::Held(reason) => (false, reason),
            Self::InSync => (true, Reason::InSync),
            Self::Round(RoundKind::Add) => (false, Reason::Tagging),
            Self::Round(RoundKind::Remove) => (false, Reason::Removing),
        }
    }
}

/// What a person approves before an add round that needs it: the tags, the targets, and how many endpoints lack
/// a tag. A change to any of them (the fleet drifting too) asks again.
pub fn round_digest(tags: &[String], targets: &crate::crd::Targets, pending: u64) -> String {
    let intent = serde_json::json!({"kind": "TaniumTag", "tags": tags, "targets": targets});
    crate::controller::preview::digest(&intent, pending)
}

/// `tags` are on the endpoints (a finished add round, a count that found them all): recorded once each, so
/// that deleting the object takes them off.
pub fn record_applied(applied: &mut Vec<String>, tags: &[String]) {
    for t in tags {
        if !applied.contains(t) {
            applied.push(t.clone());
        }
    }
}

/// A tagging package as Tanium's catalog has it: it must exist and take one parameter (the tags).
pub fn check_package(name: &str, package: Option<&PackageSpec>) -> Result<(), Held> {
    match package {
        Some(p) if p.params.len() == 1 => Ok(()),
        _ => Err(Held {
            reason: Reason::UnknownPackage,
            message: format!("Tanium has no package {name:?} taking one parameter (the tags)"),
            wait: Wait::Permanent,
        }),
    }
}

/// Tags the operator applied that the spec no longer names: they come off first.
pub fn dropped(applied: &[String], wanted: &[String]) -> Vec<String> {
    applied
        .iter()
        .filter(|t| !wanted.contains(t))
        .cloned()
        .collect()
}

/// What the counts call for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Every matching endpoint carries every tag.
    InSync,
    /// A round to the endpoints lacking a tag.
    Round,
    Held(Held),
}

/// `pending` matching endpoints lack a tag; `limit` is the stricter of `spec.safety.maxTargets` and the
/// operator's ceiling, per round.
pub fn after_count(pending: u64, limit: Option<u64>) -> Next {
    if pending == 0 {
        return Next::InSync;
    }
    if let Some(max) = limit
        && pending > max
    {
        return Next::Held(Held {
            reason: Reason::TooManyTargets,
            message: format!(
                "{pending} endpoints lack a tag, more than the limit of {max} per round (spec.safety.maxTargets or \
                 the operator's ceiling)"
            ),
            wait: Wait::Blocked,
        });
    }
    Next::Round
}

/// A round is over when nothing of it can still run, when it did what its count showed (and no endpoint is at
/// work), or when it is past its expiry.
pub fn round_over(p: &Progress, targeted: u64) -> bool {
    !p.any_open()
        || tracking::work_done(&p.results, targeted)
        || p.expires_at.is_some_and(|e| p.now >= e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::EndpointCounts;
    use crate::gateway::ActionId;

    #[test]
    fn a_round_in_flight_is_followed_even_when_suspended() {
        assert_eq!(stage(true, true), Stage::Round);
        assert_eq!(stage(true, false), Stage::Round);
        assert_eq!(stage(false, true), Stage::Suspended);
        assert_eq!(stage(false, false), Stage::Survey);
    }

    #[test]
    fn every_outcome_has_its_phase_and_ready() {
        use RoundKind::*;
        let table = [
            (
                Transition::Suspended,
                TagPhase::Suspended,
                false,
                Reason::Suspended,
            ),
            (
                Transition::AwaitingApproval,
                TagPhase::AwaitingPreviewApproval,
                false,
                Reason::AwaitingPreviewApproval,
            ),
            (
                Transition::Held(Reason::TooManyTargets),
                TagPhase::Blocked,
                false,
                Reason::TooManyTargets,
            ),
            (
                Transition::Held(Reason::UnknownPackage),
                TagPhase::Blocked,
                false,
                Reason::UnknownPackage,
            ),
            (Transition::InSync, TagPhase::InSync, true, Reason::InSync),
            (
                Transition::Round(Add),
                TagPhase::Tagging,
                false,
                Reason::Tagging,
            ),
            (
                Transition::Round(Remove),
                TagPhase::Removing,
                false,
                Reason::Removing,
            ),
        ];
        for (t, phase, ready, reason) in table {
            assert_eq!((t.phase(), t.ready()), (phase, (ready, reason)), "{t:?}");
        }
        // Every phase but Pending (an object not reconciled yet) is the outcome of one transition.
        let reached: Vec<TagPhase> = table.iter().map(|(t, ..)| t.phase()).collect();
        for phase in [
            TagPhase::InSync,
            TagPhase::Tagging,
            TagPhase::Removing,
            TagPhase::Blocked,
            TagPhase::Suspended,
            TagPhase::AwaitingPreviewApproval,
        ] {
            assert!(reached.contains(&phase), "{phase:?}");
        }
    }

    #[test]
    fn applied_tags_are_recorded_once() {
        let mut applied = vec!["a".to_string()];
        record_applied(&mut applied, &["a".into(), "b".into(), "b".into()]);
        assert_eq!(applied, ["a", "b"]);
    }

    #[test]
    fn dropped_tags_are_the_applied_ones_no_longer_wanted() {
        let s = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        assert_eq!(dropped(&s(&["a", "b"]), &s(&["b", "c"])), s(&["a"]));
        assert!(dropped(&s(&["a"]), &s(&["a"])).is_empty());
        assert!(dropped(&[], &s(&["a"])).is_empty());
    }

    #[test]
    fn counts_call_for_sync_a_round_or_a_hold() {
        assert_eq!(after_count(0, Some(1)), Next::InSync);
        assert_eq!(after_count(3, None), Next::Round);
        assert_eq!(after_count(3, Some(3)), Next::Round);
        match after_count(4, Some(3)) {
            Next::Held(h) => {
                assert_eq!(h.reason, Reason::TooManyTargets);
                assert!(
                    h.message.contains("more than the limit of 3 "),
                    "{}",
                    h.message
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_spec_the_policy_and_the_packages() {
        use crate::controller::Policy;
        use crate::controller::gates::check_targets;
        use crate::crd::tag::TaniumTagSpec;
        let spec: TaniumTagSpec = serde_yaml_ng::from_str(
            "tags: [a]\ntargets: {filter: {sensor: {name: OS Platform}, op: EQ, value: Linux}}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let open = Policy::default();
        assert_eq!(
            check_targets(&spec.targets, "ns", Some(&open), &["Add"]),
            Ok(())
        );
        let closed = Policy {
            allowed_packages: vec!["Other".into()],
            ..Policy::default()
        };
        let held = check_targets(&spec.targets, "ns", Some(&closed), &["Add"]).err();
        assert_eq!(held.map(|h| h.reason), Some(Reason::PolicyDenied));
        let package = |params: usize| -> PackageSpec {
            serde_json::from_value(serde_json::json!({
                "id": "1", "name": "Add",
                "params": (1..=params).map(|i| serde_json::json!({"key": format!("${i}")})).collect::<Vec<_>>(),
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(check_package("Add", Some(&package(1))), Ok(()));
        for wrong in [None, Some(&package(2))] {
            let held = check_package("Add", wrong).err();
            assert_eq!(held.map(|h| h.reason), Some(Reason::UnknownPackage));
        }
    }

    #[test]
    fn a_round_is_over_when_nothing_can_run_its_work_is_done_or_it_expired() {
        let p = |completed, running, open: bool| Progress {
            results: EndpointCounts {
                completed,
                running,
                ..EndpointCounts::default()
            },
            open: if open {
                vec![ActionId("1".into())]
            } else {
                Vec::new()
            },
            now: jiff::Timestamp::UNIX_EPOCH,
            ..Progress::default()
        };
        assert!(!round_over(&p(1, 1, true), 2));
        assert!(round_over(&p(2, 0, true), 2));
        assert!(
            !round_over(&p(2, 1, true), 2),
            "a late endpoint still at work"
        );
        assert!(round_over(&p(1, 0, false), 2), "nothing open");
        let mut expired = p(0, 1, true);
        expired.expires_at = Some(expired.now);
        assert!(round_over(&expired, 2));
    }
}
