//! Fault decisions: which injected failure, if any, one request gets.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{AfterCommit, Faults};

/// Mutation fields whose payload has an `error: SystemError`, where a retryable error can be
/// reported in-band.
pub(crate) const WITH_ERROR_PAYLOAD: &[&str] = &[
    "actionPerform",
    "actionStop",
    "scheduledActionApprove",
    "scheduledActionDelete",
    "apiTokenRotate",
];

#[derive(Debug)]
pub(crate) struct FaultState {
    pub faults: Faults,
    rng: StdRng,
}

/// What the HTTP layer decided for one request; resolvers read it from the request data.
/// How one read of an action or scheduled action is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadFault {
    Null,
    Error,
    UnknownStatus,
}

/// Fields whose reads the read faults apply to.
pub(crate) const READS: &[&str] = &["action", "scheduledAction"];

#[derive(Debug, Clone, Default)]
pub(crate) struct FaultPlan {
    /// By response key (alias): how that read is answered.
    pub reads: std::collections::HashMap<String, ReadFault>,
    /// Refuse the document whole (too many top-level fields).
    pub too_big: bool,
    /// HTTP 403: a field the user may not use.
    pub forbidden: Option<String>,
    pub latency_ms: u64,
    pub http_500: bool,
    pub graphql_error: bool,
    pub retryable: bool,
    /// Commit, then answer this way.
    pub after_commit: Option<AfterCommit>,
    pub drop_operations: Vec<String>,
}

impl FaultPlan {
    /// How the answer to `field` fails after its commit, if it does.
    pub(crate) fn after_commit_of(&self, field: &str) -> Option<AfterCommit> {
        self.after_commit.filter(|_| {
            self.drop_operations.is_empty() || self.drop_operations.iter().any(|o| o == field)
        })
    }
}

impl FaultState {
    pub(crate) fn new(faults: Faults) -> Self {
        let rng = StdRng::seed_from_u64(faults.seed);
        Self { faults, rng }
    }

    pub(crate) fn set(&mut self, faults: Faults) {
        *self = Self::new(faults);
    }

    fn fire(rng: &mut StdRng, next: &mut u32, rate: f64) -> bool {
        if *next > 0 {
            *next -= 1;
            return true;
        }
        rate > 0.0 && rng.random::<f64>() < rate.min(1.0)
    }

    /// How each read among `fields` (field name, response key) of a query is answered.
    pub(crate) fn decide_reads(&mut self, fields: &[(String, String)]) -> FaultPlan {
        let f = &self.faults;
        let mut plan = FaultPlan::default();
        if f.max_top_level_fields > 0 && fields.len() > f.max_top_level_fields {
            plan.too_big = true;
        }
        plan.forbidden = fields
            .iter()
            .find(|(name, _)| f.forbidden_fields.contains(name))
            .map(|(name, _)| name.clone());
        for (name, key) in fields {
            if !READS.contains(&name.as_str()) {
                continue;
            }
            let draw: f64 = self.rng.random();
            let (null, error, unknown) =
                (f.null_read_rate, f.read_error_rate, f.unknown_status_rate);
            let fault = if draw < null {
                Some(ReadFault::Null)
            } else if draw < null + error {
                Some(ReadFault::Error)
            } else if draw < null + error + unknown && name == "action" {
                Some(ReadFault::UnknownStatus)
            } else {
                None
            };
            if let Some(fault) = fault {
                plan.reads.insert(key.clone(), fault);
            }
        }
        plan
    }

    /// Is this schedule deletion refused without deleting (`delete_refused_*`)?
    pub(crate) fn refuse_delete(&mut self) -> bool {
        let f = &mut self.faults;
        Self::fire(
            &mut self.rng,
            &mut f.delete_refused_next,
            f.delete_refused_rate,
        )
    }

    /// `mutation_fields` is empty for queries.
    pub(crate) fn decide(&mut self, mutation_fields: &[String]) -> FaultPlan {
        let f = &mut self.faults;
        let mut plan = FaultPlan {
            latency_ms: f.latency_ms,
            drop_operations: f.drop_operations.clone(),
            ..FaultPlan::default()
        };
        if Self::fire(&mut self.rng, &mut f.http_500_next, f.http_500_rate) {
            plan.http_500 = true;
            return plan;
        }
        if Self::fire(
            &mut self.rng,
            &mut f.graphql_error_next,
            f.graphql_error_rate,
        ) {
            plan.graphql_error = true;
            return plan;
        }
        if mutation_fields
            .iter()
            .any(|m| WITH_ERROR_PAYLOAD.contains(&m.as_str()))
            && Self::fire(
                &mut self.rng,
                &mut f.retryable_error_next,
                f.retryable_error_rate,
            )
        {
            plan.retryable = true;
            return plan;
        }
        let droppable = mutation_fields
            .iter()
            .any(|m| f.drop_operations.is_empty() || f.drop_operations.contains(m));
        if droppable
            && Self::fire(
                &mut self.rng,
                &mut f.drop_after_commit_next,
                f.drop_after_commit_rate,
            )
        {
            let shapes = &f.after_commit;
            plan.after_commit = Some(if shapes.is_empty() {
                AfterCommit::Drop
            } else {
                shapes[self.rng.random_range(0..shapes.len())]
            });
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_counters_fire_exactly_n_times_and_only_for_eligible_requests() {
        let mut s = FaultState::new(Faults {
            retryable_error_next: 2,
            ..Faults::default()
        });
        let q: Vec<String> = vec![];
        let m = vec!["actionPerform".to_string()];
        assert!(!s.decide(&q).retryable);
        assert!(s.decide(&m).retryable);
        assert!(s.decide(&m).retryable);
        assert!(!s.decide(&m).retryable);
        assert_eq!(s.faults.retryable_error_next, 0);
    }

    #[test]
    fn drop_is_limited_to_listed_operations() {
        let mut s = FaultState::new(Faults {
            drop_after_commit_next: 1,
            drop_operations: vec!["actionStop".into()],
            ..Faults::default()
        });
        assert!(
            s.decide(&["actionPerform".to_string()])
                .after_commit
                .is_none()
        );
        let plan = s.decide(&["actionStop".to_string()]);
        assert_eq!(plan.after_commit_of("actionStop"), Some(AfterCommit::Drop));
        assert_eq!(plan.after_commit_of("actionPerform"), None);
    }

    #[test]
    fn every_listed_answer_shape_is_played() {
        let mut s = FaultState::new(Faults {
            drop_after_commit_rate: 1.0,
            after_commit: AfterCommit::ALL.to_vec(),
            seed: 3,
            ..Faults::default()
        });
        let m = vec!["actionPerform".to_string()];
        let seen: std::collections::HashSet<_> =
            (0..200).filter_map(|_| s.decide(&m).after_commit).collect();
        assert_eq!(seen.len(), AfterCommit::ALL.len(), "{seen:?}");
    }

    #[test]
    fn rates_are_deterministic_from_the_seed() {
        let f = Faults {
            http_500_rate: 0.5,
            seed: 9,
            ..Faults::default()
        };
        let run = |f: &Faults| {
            let mut s = FaultState::new(f.clone());
            (0..64).map(|_| s.decide(&[]).http_500).collect::<Vec<_>>()
        };
        let a = run(&f);
        assert_eq!(a, run(&f));
        let hits = a.iter().filter(|h| **h).count();
        assert!((16..48).contains(&hits), "{hits}");
    }
}
