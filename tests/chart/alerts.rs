//! The chart's alerts, unit-tested: the PrometheusRule rendered as a release would have it, checked by `promtool
//! check rules` and run by `promtool test rules` against the cases in `alerts.test.yaml` (input series, and which
//! alert fires when, with which labels and summary). Every alert must fire in some case there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tanium_testenv::TestTool;

use crate::common::{CHART, CHART_NAMESPACE, CHART_RELEASE};

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chart/alerts.test.yaml");

#[test]
fn alerts_fire_when_they_should_and_not_before() {
    let Some(helm) = tanium_testenv::helm_or_skip() else {
        return;
    };
    let Some(promtool) = TestTool::PROMTOOL.locate_or_skip() else {
        return;
    };
    let kube_version = format!("--kube-version={}", tanium_testenv::K8S_VERSION);
    let rendered = run(Command::new(helm).args([
        "template",
        CHART_RELEASE,
        CHART,
        "--namespace",
        CHART_NAMESPACE,
        &kube_version,
        "--set=gateway.url=https://tanium.example.com",
        "--set=metrics.prometheusRule.enabled=true",
        "--set=metrics.serviceMonitor.enabled=true",
        "--set=sharding.shards={blue}",
        "--show-only=templates/prometheusrule.yaml",
    ]));
    let rule: Value = serde_yaml_ng::from_str(&rendered).expect("the PrometheusRule is YAML");
    let groups = rule["spec"]["groups"].clone();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        serde_yaml_ng::to_string(&serde_json::json!({ "groups": groups })).unwrap(),
    )
    .unwrap();
    let checked = run(Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(&rules));
    println!("{checked}");

    // Each rule's description, which the cases leave out.
    let mut descriptions = BTreeMap::new();
    for group in groups.as_array().expect("rule groups") {
        for r in group["rules"].as_array().expect("rules") {
            let alert = r["alert"].as_str().expect("an alerting rule").to_owned();
            let description = r["annotations"]["description"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert} has a description"))
                .to_owned();
            assert!(
                !description.contains("{{"),
                "{alert}: a templated description belongs in the cases, not filled in"
            );
            descriptions.insert(alert, description);
        }
    }
    let text = std::fs::read_to_string(CASES).expect("the alert test cases");
    let mut cases: Value = serde_yaml_ng::from_str(&text).expect("the cases are YAML");
    let mut fired = BTreeSet::new();
    for test in cases["tests"].as_array_mut().expect("tests") {
        for check in test["alert_rule_test"]
            .as_array_mut()
            .expect("alert_rule_test")
        {
            let alert = check["alertname"].as_str().unwrap_or_default().to_owned();
            let description = descriptions
                .get(&alert)
                .unwrap_or_else(|| panic!("{CASES}: no alert {alert} in the chart"));
            for expected in check["exp_alerts"].as_array_mut().into_iter().flatten() {
                fired.insert(alert.clone());
                let annotations = &mut expected["exp_annotations"];
                if annotations.get("description").is_none() {
                    annotations["description"] = description.clone().into();
                }
            }
        }
    }
    let never: Vec<&String> = descriptions
        .keys()
        .filter(|a| !fired.contains(*a))
        .collect();
    assert!(never.is_empty(), "no case in {CASES} makes {never:?} fire");

    let filled = dir.path().join("alerts.test.yaml");
    std::fs::write(&filled, serde_yaml_ng::to_string(&cases).unwrap()).unwrap();
    let started = std::time::Instant::now();
    let tested = run(Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(&filled));
    println!(
        "{tested}promtool test rules: {} alerts, {} cases in {:?}",
        descriptions.len(),
        cases["tests"].as_array().map_or(0, Vec::len),
        started.elapsed()
    );
}

/// Runs a command that must succeed; its stdout.
fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", Path::new(command.get_program()).display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{:?} failed:\n{stdout}{}",
        command,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
