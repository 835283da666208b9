//! Reasons have one home (`crd::Reason`): the controllers spell none as a literal, and what Argo CD's health checks
//! compare a condition's reason with is one of them. Reads the sources, so it needs no control plane.

use std::path::Path;

use tanium_operator::crd::Reason;

fn source(dir: &str) -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            if path.is_dir() {
                walk(&path, out);
            } else {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push((path.display().to_string(), text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut out);
    out.sort();
    assert!(!out.is_empty(), "nothing in {dir}");
    out
}

/// `"CamelCase"` string literals of a text: what a reason looks like.
fn camel_literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in text.split('"').skip(1).step_by(2) {
        let camel = part.len() > 1
            && part.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && part.chars().all(|c| c.is_ascii_alphanumeric())
            && part.chars().skip(1).any(|c| c.is_ascii_uppercase())
            && part.chars().any(|c| c.is_ascii_lowercase());
        if camel {
            out.push(part.to_string());
        }
    }
    out
}

#[test]
fn the_controllers_spell_no_reason_as_a_literal() {
    // Kind names, and the reconcile outcomes that label a metric (`controller::Error::reason`), are not reasons.
    let not_reasons = [
        "TaniumAction",
        "TaniumTag",
        "TaniumEndpointInspection",
        "KubernetesApiError",
        "FinalizerError",
        "MalformedObject",
        "InProgress",
        // The Tanium client's processes a kill may not end (`controller::PROTECTED_PROCESSES`).
        "TaniumClient",
        "TaniumCX",
        "TaniumDriverSvc",
    ];
    let mut spelled = Vec::new();
    for (path, text) in source("src/controller") {
        // Unit tests may compare with literals: what a person reads is what they check.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for lit in camel_literals(code) {
            if !not_reasons.contains(&lit.as_str()) {
                spelled.push(format!("{path}: \"{lit}\""));
            }
        }
    }
    assert!(
        spelled.is_empty(),
        "use crd::Reason instead of these literals: {spelled:#?}"
    );
}

#[test]
fn the_health_checks_compare_with_known_reasons() {
    let mut compared = 0;
    for (path, text) in source("argocd") {
        for line in text.lines().filter(|l| l.contains(".reason ==")) {
            for lit in camel_literals(line) {
                compared += 1;
                assert!(
                    Reason::ALL.iter().any(|r| r.as_str() == lit),
                    "{path}: {lit} is not a crd::Reason"
                );
            }
        }
    }
    assert!(
        compared > 0,
        "the health checks compare no reason: is this test still reading them?"
    );
}
