//! The benchmark at N = 20, so that it never rots: it runs end to end and its figures are sane. Timing targets
//! live in the benchmark's printed verdicts, not here.

use std::path::PathBuf;

/// The operator binary of the same build profile, built if this test was run on its own.
fn operator_binary() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_tanium-bench"));
    let dir = bench.parent().expect("a directory").to_path_buf();
    let operator = dir.join("tanium-operator");
    if !operator.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = dir.ends_with("release");
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "-p", "tanium-operator", "--bin", "tanium-operator"]);
        if release {
            build.arg("--release");
        }
        assert!(build.status().expect("cargo runs").success());
    }
    operator
}

/// The benchmark at N = 20 with `extra` arguments: its stdout and its figures (JSON), once it ran.
fn small_run(extra: &[&str]) -> Option<(String, serde_json::Value)> {
    if tanium_testenv::Binaries::locate().is_err() && !tanium_testenv::control_plane_required() {
        eprintln!(
            "\n==== SKIPPED: the benchmark needs kube-apiserver and etcd (./scripts/test provides them)\n"
        );
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("figures.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tanium-bench"))
        .args([
            "--actions",
            "20",
            "--fleet",
            "300",
            "--distribute-seconds",
            "100",
        ])
        .args(extra)
        .arg("--operator")
        .arg(operator_binary())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("the benchmark runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    // 0: every target met, 1: some not met (a verdict, not a failure here), 2: the benchmark itself failed.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("figures written")).expect("json");
    Some((stdout, figures))
}

/// One run's figures are sane.
fn sane(run: &str, f: &serde_json::Value) {
    assert_eq!(f["completed"], 20, "{run}: every object finished");
    let p50 = f["applyToPerformMs"]["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 60_000.0, "{run}: p50 {p50}");
    assert!(
        f["actionsPolled"].as_u64().unwrap() >= 20,
        "{run}: each action polled"
    );
    assert_eq!(
        f["requestsAfterRestart"], 0,
        "{run}: terminal objects cost nothing"
    );
    assert!(
        f["peakRssMib"].as_f64().unwrap() > 1.0,
        "{run}: RSS read from /proc"
    );
    assert!(
        f["floor"]["sumMs"].as_f64().unwrap() > 0.0,
        "{run}: floor measured"
    );
    let writes = f["writesPerObject"].as_f64().unwrap();
    assert!(
        (2.0..=8.0).contains(&writes),
        "{run}: {writes} writes per object"
    );
    assert!(
        f["apiserverWritesPerS"].as_f64().unwrap() > 1.0
            && f["deploysPerS"].as_f64().unwrap() > 0.0,
        "{run}: the write budget and the deploy rate measured"
    );
    let per_deploy = f["gatewayRequestsPerDeploy"].as_f64().unwrap();
    assert!(
        (2.0..10.0).contains(&per_deploy),
        "{run}: {per_deploy} requests per deploy"
    );
}

#[test]
fn twenty_actions_run_end_to_end_with_sane_figures() {
    let Some((stdout, figures)) = small_run(&[]) else {
        return;
    };
    for verdict in [
        "peak RSS",
        "poll request per 50",
        "naive / ours",
        "apply → perform p50",
        "after a restart",
        "write budget",
    ] {
        assert!(stdout.contains(verdict), "verdict {verdict:?} printed");
    }
    for run in ["ours", "naive"] {
        sane(run, &figures[run]);
        assert_eq!(figures[run]["connection"], "own", "{run}");
    }
    let naive = &figures["naive"];
    assert_eq!(
        naive["pollRequests"], naive["actionsPolled"],
        "batch 1: one action per request"
    );
    assert!(
        figures["ours"]["pollRequests"].as_u64().unwrap() < naive["pollRequests"].as_u64().unwrap(),
        "batched polling asks less"
    );
}

/// `--through-connection`: every object names a TaniumConnection, and the figures are as sane.
#[test]
fn twenty_actions_through_a_connection_object_with_sane_figures() {
    let Some((stdout, figures)) = small_run(&["--through-connection", "--no-naive"]) else {
        return;
    };
    assert!(stdout.contains("connection bench"), "{stdout}");
    sane("through a connection", &figures["ours"]);
    assert_eq!(figures["ours"]["connection"], "bench");
}

/// `--at-rest` at N = 50: finished objects listed, each reconciled once, and not one Gateway request for them.
#[test]
fn finished_objects_at_rest_cost_no_gateway_request() {
    if tanium_testenv::Binaries::locate().is_err() && !tanium_testenv::control_plane_required() {
        eprintln!(
            "\n==== SKIPPED: the benchmark needs kube-apiserver and etcd (./scripts/test provides them)\n"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("figures.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tanium-bench"))
        .args([
            "--at-rest",
            "50",
            "--fleet",
            "300",
            "--timeout-seconds",
            "300",
        ])
        .arg("--operator")
        .arg(operator_binary())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("the benchmark runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("figures written")).expect("json");
    let f = &figures["atRest"];
    assert_eq!(f["objects"], 50);
    assert_eq!(f["requests"], 0, "finished objects cost no Gateway request");
    assert!(
        f["peakRssMib"].as_f64().unwrap() > 1.0,
        "RSS read from /proc"
    );
    assert!(f["countedS"].as_f64().unwrap() >= f["readyS"].as_f64().unwrap());
}
