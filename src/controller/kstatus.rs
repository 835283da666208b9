//! How kstatus reads our objects: Flux's health checks and `wait`, `kubectl wait`, Argo CD's and every
//! cli-utils-based tool. kstatus reads `Reconciling=True` as in progress and `Stalled=True` as failed, and only
//! then looks at Ready. Both are derived here from Ready on every status write (`Object::save`), so they cannot
//! disagree with it, and a new generation says "in progress" before any Gateway request (`Object::start`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::crd::{Reason, condition, set_condition};
use crate::gateway::GatewayError;

/// Ready=False with `reason` needs a person: one of ours that [`Reason::stalls`], or a Gateway error that
/// certainly does ([`GatewayError::reason_needs_a_person`]).
pub fn stalls(reason: &str) -> bool {
    Reason::parse(reason).map_or_else(
        || GatewayError::reason_needs_a_person(reason),
        Reason::stalls,
    )
}

/// Reconciling and Stalled as Ready says: neither when Ready is True; Stalled, with Ready's reason and message,
/// when it is False for a reason that [`stalls`]; Reconciling otherwise, and while Ready is not set yet. They are
/// present only while True (the abnormal-true convention Flux follows), so a healthy object lists neither.
pub fn derive(conditions: &mut Vec<Condition>, generation: Option<i64>) {
    let ready = crate::crd::condition(conditions, condition::READY)
        .map(|c| (c.status == "True", c.reason.clone(), c.message.clone()));
    let (keep, drop) = match &ready {
        Some((true, ..)) => {
            conditions
                .retain(|c| c.type_ != condition::RECONCILING && c.type_ != condition::STALLED);
            return;
        }
        Some((false, reason, _)) if stalls(reason) => (condition::STALLED, condition::RECONCILING),
        _ => (condition::RECONCILING, condition::STALLED),
    };
    let (reason, message) = match ready {
        Some((_, reason, message)) => (reason, message),
        None => (
            Reason::Progressing.as_str().to_owned(),
            "the operator has not decided yet".to_owned(),
        ),
    };
    conditions.retain(|c| c.type_ != drop);
    set_condition(conditions, keep, true, &reason, message, generation);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ready(ready: Option<(bool, &str)>) -> Vec<Condition> {
        let mut c = Vec::new();
        if let Some((ok, reason)) = ready {
            set_condition(&mut c, condition::READY, ok, reason, "m", Some(1));
        }
        derive(&mut c, Some(1));
        c
    }

    fn types(c: &[Condition]) -> Vec<(&str, &str, &str)> {
        c.iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect()
    }

    #[test]
    fn ready_decides_reconciling_or_stalled() {
        type Ready<'a> = Option<(bool, &'a str)>;
        let table: [(Ready, Option<(&str, &str)>); 9] = [
            (None, Some(("Reconciling", "Progressing"))),
            (Some((true, "Completed")), None),
            (Some((true, "InSync")), None),
            (Some((false, "Running")), Some(("Reconciling", "Running"))),
            (
                Some((false, "NoTargets")),
                Some(("Reconciling", "NoTargets")),
            ),
            (
                Some((false, "GatewayUnreachable")),
                Some(("Reconciling", "GatewayUnreachable")),
            ),
            (
                Some((false, "TooManyTargets")),
                Some(("Stalled", "TooManyTargets")),
            ),
            (Some((false, "Expired")), Some(("Stalled", "Expired"))),
            (
                Some((false, "TokenRejected")),
                Some(("Stalled", "TokenRejected")),
            ),
        ];
        for (ready, want) in table {
            let c = with_ready(ready);
            let derived: Vec<_> = types(&c)
                .into_iter()
                .filter(|(t, ..)| *t != condition::READY)
                .collect();
            let want: Vec<_> = want.map(|(t, r)| (t, "True", r)).into_iter().collect();
            assert_eq!(derived, want, "{ready:?}");
        }
    }

    #[test]
    fn a_change_of_ready_replaces_the_other_condition() {
        let mut c = with_ready(Some((false, "Running")));
        set_condition(
            &mut c,
            condition::READY,
            false,
            "StoppedInTanium",
            "m",
            Some(1),
        );
        derive(&mut c, Some(1));
        assert!(crate::crd::condition(&c, condition::RECONCILING).is_none());
        assert_eq!(
            crate::crd::condition(&c, condition::STALLED).map(|s| s.reason.as_str()),
            Some("StoppedInTanium")
        );
        set_condition(&mut c, condition::READY, true, "Completed", "m", Some(1));
        derive(&mut c, Some(1));
        assert_eq!(c.len(), 1, "{c:?}");
    }

    #[test]
    fn the_gateway_reasons_that_stall_are_the_permanent_ones() {
        let token = GatewayError::TokenRejected {
            operation: "actionPerform",
            reason: "expired".into(),
            status: Some(401),
        };
        assert!(token.is_permanent() && stalls(token.reason()));
        let config = GatewayError::Config("bad url".into());
        assert!(config.is_permanent() && stalls(config.reason()));
        let invalid = GatewayError::InvalidRequest("no".into());
        assert!(invalid.is_permanent() && stalls(invalid.reason()));
        let forbidden = GatewayError::Forbidden {
            operation: "actionPerform",
        };
        assert!(forbidden.is_permanent() && stalls(forbidden.reason()));
        assert!(!stalls("GatewayUnreachable"));
        assert!(!stalls("OutcomeUnknown"));
        assert!(!stalls("SomethingNew"));
    }
}
