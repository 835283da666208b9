//! Two operator processes, as the chart's ServiceAccount, with leader election on a Lease: one reconciles; SIGKILL
//! it and the other takes over within the lease duration; across the hand-over nothing is deployed twice.

mod common;

use std::time::{Duration, Instant};

use common::{CHART_NAMESPACE, Env, OperatorProcess, phase};
use kube::api::Api;
use serde_json::json;
use tanium_operator::controller::Policy;
use tanium_operator::crd::TaniumAction;
use tanium_testenv::Identity;

const LEASE_SECONDS: u64 = 4;

fn start(
    env: &Env,
    name: &'static str,
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
) -> OperatorProcess {
    let lease = LEASE_SECONDS.to_string();
    OperatorProcess::spawn(
        env,
        kubeconfig,
        dir,
        name,
        &[
            ("LEADER_ELECT", "true"),
            ("POD_NAMESPACE", CHART_NAMESPACE),
            ("LEASE_DURATION_SECONDS", &lease),
            ("LEASE_GRACE_SECONDS", "1"),
        ],
    )
}

#[tokio::test]
async fn one_leader_reconciles_and_a_standby_takes_over() {
    let Some(env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.apply_chart();
    let sa = Identity::service_account(CHART_NAMESPACE, "tanium-operator");
    let kubeconfig = env.cp.kubeconfig_path_for(&sa).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = vec![
        start(&env, "replica-a", &kubeconfig, dir.path()),
        start(&env, "replica-b", &kubeconfig, dir.path()),
    ];

    // Exactly one leads.
    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        let states = [replicas[0].leading().await, replicas[1].leading().await];
        match states {
            [Some(true), Some(false)] => break 0,
            [Some(false), Some(true)] => break 1,
            [Some(true), Some(true)] => panic!("two leaders at once"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no leader: {states:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let standby = 1 - leader;
    // Both are ready: the leader once its caches synced and the Gateway answered, the standby to take over.
    let deadline = Instant::now() + Duration::from_secs(30);
    for r in &replicas {
        loop {
            let status = reqwest::get(format!("http://127.0.0.1:{}/readyz", r.port))
                .await
                .map(|x| x.status().as_u16());
            if status.as_ref().ok() == Some(&200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready: {status:?}",
                r.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    env.namespace("ha").await;
    let api: Api<TaniumAction> = Api::namespaced(env.client.clone(), "ha");
    let manifest = |name: String| {
        json!({"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction", "metadata": {"name": name},
               "spec": {"package": {"name": "Custom Tagging - Add Tags", "params": ["ha"]},
                        "targets": {"endpoints": ["274177", "12323"]},
                        "schedule": {"distributeSeconds": 120}}})
    };
    for i in 0..8 {
        env.create(&api, manifest(format!("before-{i}"))).await;
    }
    env.wait_for(&api, "before-0", "Running", |o| {
        phase(o).as_deref() == Some("Running")
    })
    .await;

    // The leader dies without a word; the standby takes over within the lease duration.
    replicas[leader].kill();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(LEASE_SECONDS * 3 + 10);
    while replicas[standby].leading().await != Some(true) {
        assert!(
            Instant::now() < deadline,
            "{} never took over",
            replicas[standby].name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = killed.elapsed();
    println!(
        "{} took over {took:?} after {} was killed",
        replicas[standby].name, replicas[leader].name
    );
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 3),
        "took over in {took:?}, lease is {LEASE_SECONDS}s"
    );

    for i in 0..4 {
        env.create(&api, manifest(format!("after-{i}"))).await;
    }
    let names: Vec<String> = (0..8)
        .map(|i| format!("before-{i}"))
        .chain((0..4).map(|i| format!("after-{i}")))
        .collect();
    for name in &names {
        let obj = env
            .wait_for(&api, name, "Completed", |o| {
                phase(o).as_deref() == Some("Completed")
            })
            .await;
        assert_eq!(
            env.performs_for(&obj),
            1,
            "{name} deployed exactly once across the hand-over"
        );
    }
    env.assert_exactly_once();
    drop(replicas);
}

/// Settings under which a replica taking over could deploy again while the first request is on its way stop the
/// start with a message naming them, before anything is contacted.
#[test]
fn settings_that_could_deploy_twice_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let run = |vars: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tanium-operator"));
        command
            .arg("run")
            .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
            .env("TANIUM_GATEWAY_URL", "http://127.0.0.1:9")
            .env("TANIUM_TOKEN_FILE", &token)
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("LEADER_ELECT", "true");
        for (k, v) in vars {
            command.env(k, v);
        }
        common::Run::from(command.output().expect("runs"))
    };
    // The intent may be sent later than the grace allows for.
    let too_old = run(&[
        ("TANIUM_REQUEST_TIMEOUT_SECONDS", "30"),
        ("TANIUM_LOOKUP_GRACE_SECONDS", "90"),
        ("LEASE_DURATION_SECONDS", "15"),
        ("TANIUM_INTENT_MAX_AGE_SECONDS", "60"),
    ]);
    assert_eq!(too_old.code, 1, "{too_old}");
    assert!(
        too_old.stderr.contains("TANIUM_LOOKUP_GRACE_SECONDS"),
        "{too_old}"
    );
    // A lease so long that the default grace leaves no time to send at all.
    let no_time = run(&[
        ("TANIUM_REQUEST_TIMEOUT_SECONDS", "30"),
        ("LEASE_DURATION_SECONDS", "90"),
    ]);
    assert_eq!(no_time.code, 1, "{no_time}");
    assert!(
        no_time.stderr.contains("too short to send anything"),
        "{no_time}"
    );
    // A margin that leaves a leader no time to act.
    let margin = run(&[
        ("LEASE_DURATION_SECONDS", "5"),
        ("LEASE_GRACE_SECONDS", "5"),
    ]);
    assert_eq!(margin.code, 1, "{margin}");
    assert!(margin.stderr.contains("LEASE_GRACE_SECONDS"), "{margin}");
    // The defaults pass these checks and fail only at the missing kubeconfig.
    let defaults = run(&[]);
    assert_eq!(defaults.code, 1, "{defaults}");
    assert!(!defaults.stderr.contains("LOOKUP_GRACE"), "{defaults}");
}
