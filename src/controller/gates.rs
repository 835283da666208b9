//! A TaniumAction's gates: everything that holds a deployment back, in order, and why. Pure: what the Gateway said
//! goes in, a verdict comes out. The controller, `tanium-operator preview` and `kubectl tanium preview` all call
//! these, so they cannot disagree about what would deploy.
//!
//! The order: the spec and the admin policy; the package; the endpoints a preview found; then what the preview
//! says (complete, not empty, within limits, approved). `spec.suspend` is the callers': the controller checks it
//! before anything (and asks the Gateway nothing), the preview commands after everything (to show what resuming
//! would do).

use super::preview::{self, Found};
use super::{Policy, wire};
use crate::crd::{Reason, TaniumActionSpec, Targets};
use crate::gateway::PackageSpec;

/// Why a deployment is held, what a person reads, and how soon to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub reason: Reason,
    pub message: String,
    pub wait: Wait,
}

/// How soon a held object is looked at again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Only a change to the manifest, the policy or Tanium's catalog helps: slowly.
    Permanent,
    /// The fleet or a person may change it (endpoints, readings, an approval): soon.
    Blocked,
}

impl Held {
    fn new(reason: Reason, message: impl Into<String>, wait: Wait) -> Self {
        Self {
            reason,
            message: message.into(),
            wait,
        }
    }
}

/// What the preview allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Deploy,
    Held(Held),
    /// `requirePreviewApproval` waits for this digest in the approval annotation; `command` sets it.
    AwaitingApproval {
        message: String,
        command: String,
    },
}

/// The spec and the admin policy (`None`: not known, as in the CLI, which cannot see the operator's flags).
pub fn check_spec(
    spec: &TaniumActionSpec,
    namespace: &str,
    policy: Option<&Policy>,
) -> Result<(), Held> {
    check_targets(&spec.targets, namespace, policy, &[&spec.package.name])
}

/// The targets, and the admin policy for the packages an object deploys: every kind that deploys asks this.
pub fn check_targets(
    targets: &Targets,
    namespace: &str,
    policy: Option<&Policy>,
    packages: &[&str],
) -> Result<(), Held> {
    wire::targets(targets).map_err(|m| Held::new(Reason::InvalidSpec, m, Wait::Permanent))?;
    for package in packages {
        if let Some(refusal) = policy.and_then(|p| p.refuses(namespace, package)) {
            return Err(Held::new(Reason::PolicyDenied, refusal, Wait::Permanent));
        }
    }
    Ok(())
}

/// The package as Tanium's catalog has it (`None`: no package of that name).
pub fn check_package(spec: &TaniumActionSpec, package: Option<&PackageSpec>) -> Result<(), Held> {
    let Some(package) = package else {
        let message = format!("Tanium has no package named {:?}", spec.package.name);
        return Err(Held::new(Reason::UnknownPackage, message, Wait::Permanent));
    };
    wire::missing_params(&spec.package, package)
        .map_err(|m| Held::new(Reason::WrongParams, m, Wait::Permanent))
}

/// The endpoints the preview was asked about by id: each must be known to Tanium. Checked before the preview is
/// recorded, since its count would describe a different list.
pub fn check_found(found: &Found) -> Result<(), Held> {
    if found.unknown_ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = found.unknown_ids.iter().map(ToString::to_string).collect();
    let message = format!(
        "spec.targets.endpoints: Tanium knows no endpoint with id {}",
        ids.join(", ")
    );
    Err(Held::new(Reason::UnknownEndpoints, message, Wait::Blocked))
}

/// What the recorded preview allows. `digest` is [`preview::action_digest`] of its count; `approved` the approval
/// annotation's value; `name`/`namespace` name the object in the approval command.
pub fn judge_preview(
    spec: &TaniumActionSpec,
    found: &Found,
    digest: &str,
    policy: Option<&Policy>,
    approved: Option<&str>,
    (name, namespace): (&str, Option<&str>),
) -> Verdict {
    let count = found.count;
    if let Some(message) = preview::incomplete(found, spec.preview.min_answered_percent) {
        // The count is a floor: endpoints that did not answer may match too, and the action will reach them.
        // Neither maxTargets nor an approval can be judged on it.
        return Verdict::Held(Held::new(Reason::PreviewIncomplete, message, Wait::Blocked));
    }
    if count == 0 {
        return Verdict::Held(Held::new(
            Reason::NoTargets,
            "no endpoint matches the targets; nothing to deploy",
            Wait::Blocked,
        ));
    }
    let (limit, whose) = match policy {
        Some(p) => (
            p.max_targets(spec.safety.max_targets),
            "spec.safety.maxTargets or the operator's ceiling",
        ),
        None => (spec.safety.max_targets, "spec.safety.maxTargets"),
    };
    if let Some(max) = limit
        && count > max
    {
        let message = format!(
            "{count} endpoints match, more than the limit of {max} ({whose}); narrow the targets or raise the limit"
        );
        return Verdict::Held(Held::new(Reason::TooManyTargets, message, Wait::Blocked));
    }
    let by_threshold = policy.and_then(|p| p.approval_needed(count));
    if (spec.safety.require_preview_approval || by_threshold.is_some()) && approved != Some(digest)
    {
        let command = preview::approve_command(name, namespace, digest);
        let why = match by_threshold {
            Some(t) if !spec.safety.require_preview_approval => format!(
                ", more than the operator's approval threshold ({t}) lets deploy unapproved"
            ),
            _ => String::new(),
        };
        let message = format!(
            "{count} endpoint(s) would be targeted{why}; to deploy, approve this preview: {command}"
        );
        return Verdict::AwaitingApproval { message, command };
    }
    Verdict::Deploy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PreviewRead;
    use crate::gateway::EndpointId;

    fn spec(yaml: &str) -> TaniumActionSpec {
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    const TAG: &str = "package: {name: Custom Tagging - Add Tags, params: [x]}\n\
                       targets: {filter: {sensor: {name: OS Platform}, op: EQ, value: Linux}}\n";

    fn found(count: u64) -> Found {
        Found {
            count,
            sample: Vec::new(),
            unknown_ids: Vec::new(),
            source: preview::Choice {
                read: PreviewRead::Cached,
                reason: String::new(),
            },
            answered: None,
            expected: None,
        }
    }

    fn package(params: usize) -> PackageSpec {
        serde_json::from_value(serde_json::json!({
            "id": "101", "name": "Custom Tagging - Add Tags",
            "params": (1..=params).map(|i| serde_json::json!({"key": format!("${i}")})).collect::<Vec<_>>(),
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn reason(v: &Verdict) -> Option<Reason> {
        match v {
            Verdict::Deploy => None,
            Verdict::Held(h) => Some(h.reason),
            Verdict::AwaitingApproval { .. } => Some(Reason::AwaitingPreviewApproval),
        }
    }

    #[test]
    fn the_spec_and_the_policy_come_first() {
        let ok = spec(TAG);
        assert_eq!(check_spec(&ok, "team-a", None), Ok(()));
        let no_targets = spec("package: {name: P}\ntargets: {}\n");
        let held = check_spec(&no_targets, "team-a", None).err();
        assert_eq!(
            held.map(|h| (h.reason, h.wait)),
            Some((Reason::InvalidSpec, Wait::Permanent))
        );
        let policy = Policy {
            allowed_namespaces: vec!["team-b".into()],
            ..Policy::default()
        };
        let held = check_spec(&ok, "team-a", Some(&policy)).err();
        assert_eq!(held.map(|h| h.reason), Some(Reason::PolicyDenied));
        assert_eq!(
            check_spec(&ok, "team-a", None),
            Ok(()),
            "the CLI knows no policy"
        );
    }

    #[test]
    fn the_package_must_exist_and_take_the_params() {
        let s = spec(TAG);
        let held = |p: Option<&PackageSpec>| check_package(&s, p).err().map(|h| h.reason);
        assert_eq!(held(None), Some(Reason::UnknownPackage));
        assert_eq!(held(Some(&package(1))), None);
        assert_eq!(held(Some(&package(2))), Some(Reason::WrongParams));
    }

    #[test]
    fn unknown_listed_endpoints_hold_before_the_preview_counts() {
        let mut f = found(1);
        assert_eq!(check_found(&f), Ok(()));
        f.unknown_ids = vec![EndpointId("42".into())];
        let held = check_found(&f).err();
        assert_eq!(
            held.as_ref().map(|h| h.reason),
            Some(Reason::UnknownEndpoints)
        );
        assert!(held.is_some_and(|h| h.message.contains("42")));
    }

    #[test]
    fn the_preview_gates_in_order() {
        let base = spec(TAG);
        let limited = |n| {
            let mut s = base.clone();
            s.safety.max_targets = Some(n);
            s
        };
        let approval = {
            let mut s = base.clone();
            s.safety.require_preview_approval = true;
            s
        };
        let ceiling = Policy {
            max_targets_ceiling: Some(5),
            ..Policy::default()
        };
        let live_short = Found {
            source: preview::Choice {
                read: PreviewRead::Live,
                reason: String::new(),
            },
            answered: Some(9),
            expected: Some(10),
            ..found(0)
        };
        let at = ("a", Some("ns"));
        let judge = |s: &TaniumActionSpec, f: &Found, p: Option<&Policy>, ok: Option<&str>| {
            reason(&judge_preview(s, f, "sha256:1", p, ok, at))
        };
        // (spec, found, policy, approval annotation) → the first gate that holds, or none.
        let table: Vec<(&str, Option<Reason>)> = vec![
            (
                "incomplete before empty",
                judge(&base, &live_short, None, None),
            ),
            ("empty", judge(&base, &found(0), None, None)),
            (
                "within the object's limit",
                judge(&limited(3), &found(3), None, None),
            ),
            (
                "over the object's limit",
                judge(&limited(3), &found(4), None, None),
            ),
            (
                "over the ceiling",
                judge(&base, &found(6), Some(&ceiling), None),
            ),
            (
                "the CLI knows no ceiling",
                judge(&base, &found(6), None, None),
            ),
            ("awaiting approval", judge(&approval, &found(2), None, None)),
            (
                "another digest approved",
                judge(&approval, &found(2), None, Some("sha256:0")),
            ),
            (
                "approved",
                judge(&approval, &found(2), None, Some("sha256:1")),
            ),
            (
                "limit before approval",
                judge(
                    &{
                        let mut s = approval.clone();
                        s.safety.max_targets = Some(1);
                        s
                    },
                    &found(2),
                    None,
                    None,
                ),
            ),
        ];
        let expected = [
            Some(Reason::PreviewIncomplete),
            Some(Reason::NoTargets),
            None,
            Some(Reason::TooManyTargets),
            Some(Reason::TooManyTargets),
            None,
            Some(Reason::AwaitingPreviewApproval),
            Some(Reason::AwaitingPreviewApproval),
            None,
            Some(Reason::TooManyTargets),
        ];
        for ((case, got), want) in table.into_iter().zip(expected) {
            assert_eq!(got, want, "{case}");
        }
        // The operator's approval threshold: above it, an approved preview is needed whatever the spec says.
        let threshold = Policy {
            approval_threshold: Some(25),
            ..Policy::default()
        };
        assert_eq!(judge(&base, &found(25), Some(&threshold), None), None);
        assert_eq!(
            judge(&base, &found(26), Some(&threshold), None),
            Some(Reason::AwaitingPreviewApproval)
        );
        assert_eq!(
            judge(&base, &found(26), Some(&threshold), Some("sha256:1")),
            None
        );
        match judge_preview(&base, &found(26), "sha256:1", Some(&threshold), None, at) {
            Verdict::AwaitingApproval { message, .. } => {
                assert!(message.contains("approval threshold (25)"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match judge_preview(&approval, &found(2), "sha256:1", None, None, at) {
            Verdict::AwaitingApproval { message, command } => {
                assert!(
                    command.contains("-n ns") && command.ends_with("=sha256:1"),
                    "{command}"
                );
                assert!(message.contains(&command), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match judge_preview(&base, &found(6), "d", Some(&ceiling), None, at) {
            Verdict::Held(h) => assert!(
                h.message.contains("more than the limit of 5 "),
                "{}",
                h.message
            ),
            other => panic!("{other:?}"),
        }
    }
}
