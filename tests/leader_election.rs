//! Two operator processes, as the chart's ServiceAccount, with leader election on a Lease: one reconciles; SIGKILL
//! it and the other takes over within the lease duration; across the hand-over nothing is deployed twice.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{CHART_NAMESPACE, Env, TOKEN, phase};
use kube::api::Api;
use serde_json::json;
use tanium_operator::controller::Policy;
use tanium_operator::crd::TaniumAction;
use tanium_testenv::Identity;

const LEASE_SECONDS: u64 = 4;

struct Replica {
    name: &'static str,
    port: u16,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start(
    env: &Env,
    name: &'static str,
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
) -> Replica {
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tanium-operator"))
        .arg("run")
        .env("KUBECONFIG", kubeconfig)
        .env("TANIUM_GATEWAY_URL", env.sim.url())
        .env("TANIUM_TOKEN_FILE", &token)
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("TANIUM_POLL_MIN_SECONDS", "1")
        .env("TANIUM_POLL_MAX_SECONDS", "2")
        .env("LEADER_ELECT", "true")
        .env("POD_NAMESPACE", CHART_NAMESPACE)
        .env("POD_NAME", name)
        .env("LEASE_DURATION_SECONDS", LEASE_SECONDS.to_string())
        .env("LEASE_GRACE_SECONDS", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
        .spawn()
        .expect("the operator starts");
    Replica { name, port, child }
}

/// The replica's `tanium_operator_leader` gauge, if it answers.
async fn leading(replica: &Replica) -> Option<bool> {
    let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", replica.port))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("tanium_operator_leader "))
        .map(|l| l.ends_with(" 1"))
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
        let states = [leading(&replicas[0]).await, leading(&replicas[1]).await];
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
    replicas[leader].child.kill().unwrap();
    let _ = replicas[leader].child.wait();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(LEASE_SECONDS * 3 + 10);
    while leading(&replicas[standby]).await != Some(true) {
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
    for r in &mut replicas {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
}
