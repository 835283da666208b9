//! The admin policy: what whoever installs the operator decides and no namespace can override (which namespaces and
//! packages may deploy, the ceiling, the approval threshold, protected processes, which namespaces may claim which
//! tags). The chart ships the same rules as ValidatingAdmissionPolicies (`templates/admission.yaml`); these are the
//! second wall, checked again by every reconcile.

/// Admin policy: set by whoever installs the operator, not overridable from a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Namespaces whose objects may deploy; empty: all.
    pub allowed_namespaces: Vec<String>,
    /// Package names that may be deployed; empty: all.
    pub allowed_packages: Vec<String>,
    /// No object may target more endpoints than this, whatever its `safety.maxTargets` says.
    pub max_targets_ceiling: Option<u64>,
    /// A deployment (a TaniumAction, or a TaniumTag round) that would reach more endpoints than this waits for
    /// an approved preview, whatever its spec says: the second act a namespace user cannot perform alone. `None`:
    /// only `safety.requirePreviewApproval` asks for one. The binary's and the chart's default is
    /// [`DEFAULT_APPROVAL_THRESHOLD`]; this type's `Default` (used by tests) has none.
    pub approval_threshold: Option<u64>,
    /// Let a TaniumEndpointInspection end a [`PROTECTED_PROCESSES`] process or one with a pid below
    /// [`PROTECTED_PID_BELOW`]: an admin's choice, never a namespace's.
    pub allow_protected_kills: bool,
    /// Tags whose name starts with a bound prefix may be claimed (by a TaniumTag) only from that binding's
    /// namespaces; tags no binding's prefix matches, from any namespace. Tanium tags are global, and often drive
    /// computer groups and so policies: a binding keeps one team's tags out of another's hands.
    pub tag_bindings: Vec<TagBinding>,
}

/// `team-a-*=team-a,team-a-ops`: tags starting with `team-a-` belong to those namespaces. Several bindings may
/// match a tag; any of their namespaces may claim it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagBinding {
    /// Without the optional trailing `*`.
    pub prefix: String,
    pub namespaces: Vec<String>,
}

impl std::str::FromStr for TagBinding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (prefix, namespaces) = s.split_once('=').ok_or_else(|| {
            format!(
                "tag binding {s:?} is not PREFIX=NAMESPACE[,NAMESPACE...] (e.g. team-a-*=team-a)"
            )
        })?;
        let prefix = prefix.trim();
        let prefix = prefix.strip_suffix('*').unwrap_or(prefix).to_owned();
        let namespaces: Vec<String> = namespaces
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if prefix.is_empty() || prefix.contains('*') {
            return Err(format!(
                "tag binding {s:?}: the prefix must be a tag's first characters, with at most a trailing *"
            ));
        }
        if namespaces.is_empty() {
            return Err(format!("tag binding {s:?} names no namespace"));
        }
        Ok(Self { prefix, namespaces })
    }
}

impl std::fmt::Display for TagBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}*={}", self.prefix, self.namespaces.join(","))
    }
}

/// Processes no kill may end unless the admin allows it: the Tanium client and its extensions, through which the
/// endpoint is managed at all (ended, the endpoint drops out of Tanium until someone restarts it by hand).
pub const PROTECTED_PROCESSES: [&str; 3] = ["TaniumClient", "TaniumCX", "TaniumDriverSvc"];

/// Process ids below this are the system's own (init and kernel threads; Windows' Idle and System, 0 and 4).
pub const PROTECTED_PID_BELOW: i64 = 10;

/// Endpoints a deployment may reach without an approved preview, unless the operator is told otherwise.
pub const DEFAULT_APPROVAL_THRESHOLD: u64 = 25;

impl Policy {
    /// Why the policy refuses a deployment, if it does.
    pub fn refuses(&self, namespace: &str, package: &str) -> Option<String> {
        if let Some(refusal) = self.refuses_namespace(namespace) {
            return Some(refusal);
        }
        if !self.allowed_packages.is_empty() && !self.allowed_packages.iter().any(|p| p == package)
        {
            return Some(format!(
                "package {package:?} is not allowed by the operator's policy (allowed: {})",
                self.allowed_packages.join(", ")
            ));
        }
        None
    }

    /// Why objects in `namespace` may not act on endpoints (deploy, end a process), if they may not.
    pub fn refuses_namespace(&self, namespace: &str) -> Option<String> {
        (!self.allowed_namespaces.is_empty()
            && !self.allowed_namespaces.iter().any(|n| n == namespace))
        .then(|| {
            format!(
                "namespace {namespace:?} may not act on Tanium endpoints (allowed: {})",
                self.allowed_namespaces.join(", ")
            )
        })
    }

    /// Why ending `name` (pid `pid`) is refused, if it is: the Tanium client's own processes, and the system's, unless
    /// the admin allows it. Names compare case-insensitively, with or without `.exe`.
    pub fn protects(&self, pid: i64, name: &str) -> Option<String> {
        if self.allow_protected_kills {
            return None;
        }
        let lower = name.trim().to_ascii_lowercase();
        let bare = lower.strip_suffix(".exe").unwrap_or(&lower);
        if let Some(p) = PROTECTED_PROCESSES
            .iter()
            .find(|p| p.eq_ignore_ascii_case(bare))
        {
            return Some(format!(
                "{name:?} is the Tanium client's own ({p}): ending it takes the endpoint out of Tanium; an admin may \
                 allow it (--allow-protected-process-kills)"
            ));
        }
        (pid < PROTECTED_PID_BELOW).then(|| {
            format!(
                "pid {pid} is the system's own (below {PROTECTED_PID_BELOW}); an admin may allow it \
                 (--allow-protected-process-kills)"
            )
        })
    }

    /// Why objects in `namespace` may not claim `tags`, if they may not: the first tag a binding keeps for other
    /// namespaces.
    pub fn refuses_tags(&self, namespace: &str, tags: &[String]) -> Option<String> {
        tags.iter().find_map(|tag| {
            let bound: Vec<&TagBinding> = self
                .tag_bindings
                .iter()
                .filter(|b| tag.starts_with(&b.prefix))
                .collect();
            let allowed = bound.is_empty()
                || bound
                    .iter()
                    .any(|b| b.namespaces.iter().any(|n| n == namespace));
            (!allowed).then(|| {
                let owners: Vec<String> = bound.iter().map(ToString::to_string).collect();
                format!(
                    "tag {tag:?} may be claimed only from the namespaces the operator's admin policy binds to its \
                     prefix ({}), not from {namespace:?}",
                    owners.join("; ")
                )
            })
        })
    }

    /// The approval threshold that reaching `count` endpoints passes, if it does: an approved preview is needed.
    pub fn approval_needed(&self, count: u64) -> Option<u64> {
        self.approval_threshold.filter(|&t| count > t)
    }

    /// The stricter of an object's own limit and the ceiling.
    pub fn max_targets(&self, requested: Option<u64>) -> Option<u64> {
        match (requested, self.max_targets_ceiling) {
            (Some(r), Some(c)) => Some(r.min(c)),
            (r, c) => r.or(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tanium_client_and_the_system_are_protected() {
        let p = Policy::default();
        for (pid, name) in [
            (4, "System"),
            (1, "systemd"),
            (5000, "TaniumClient.exe"),
            (5000, "taniumclient"),
            (5000, "TaniumCX.EXE"),
            (5000, " TaniumDriverSvc.exe "),
        ] {
            assert!(p.protects(pid, name).is_some(), "{pid} {name}");
        }
        for (pid, name) in [
            (5000, "notepad.exe"),
            (10, "sshd"),
            (5000, "TaniumClientHelper"),
        ] {
            assert_eq!(p.protects(pid, name), None, "{pid} {name}");
        }
        let allowed = Policy {
            allow_protected_kills: true,
            ..Policy::default()
        };
        assert_eq!(allowed.protects(4, "TaniumClient.exe"), None);
    }

    #[test]
    fn bound_tag_prefixes_keep_to_their_namespaces() {
        let binding = |s: &str| s.parse::<TagBinding>().unwrap();
        let p = Policy {
            tag_bindings: vec![
                binding("team-a-*=team-a,team-a-ops"),
                binding("team-=platform"),
            ],
            ..Policy::default()
        };
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            p.refuses_tags("team-a", &tags(&["team-a-web", "free"])),
            None
        );
        assert_eq!(p.refuses_tags("team-a-ops", &tags(&["team-a-web"])), None);
        // Both bindings match: either's namespaces may claim it.
        assert_eq!(p.refuses_tags("platform", &tags(&["team-a-web"])), None);
        let refused = p
            .refuses_tags("team-b", &tags(&["free", "team-a-web"]))
            .unwrap();
        assert!(
            refused.contains("\"team-a-web\"") && refused.contains("team-a-*=team-a,team-a-ops"),
            "{refused}"
        );
        assert!(p.refuses_tags("team-a", &tags(&["team-b-web"])).is_some());
        assert_eq!(
            Policy::default().refuses_tags("anyone", &tags(&["team-a-web"])),
            None
        );
        for bad in ["team-a", "=team-a", "team-a-*=", "*=x", "a*b=x"] {
            assert!(bad.parse::<TagBinding>().is_err(), "{bad}");
        }
        assert_eq!(
            binding("pci- = security , audit").to_string(),
            "pci-*=security,audit"
        );
    }
}
