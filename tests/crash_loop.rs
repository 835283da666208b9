//! Crash loop: the operator process is SIGKILLed at random moments while TaniumActions arrive and the Gateway
//! misbehaves (HTTP 500s, retryable payload errors, actionPerform committed and its answer dropped, added latency);
//! then it is started once more, the faults stop, and it is left to settle. From the sim's audit: exactly one
//! actionPerform per object, every object terminal, and the token in no log line, event or status.
//!
//! `TANIUM_CRASH_LOOP_SECONDS` sets how long the killing goes on (default 30; docs/reliability.md's figures come
//! from `TANIUM_CRASH_LOOP_SECONDS=120`), `TANIUM_CRASH_LOOP_SEED` the random seed (printed on every run).

mod common;

use std::time::{Duration, Instant};

use common::{Env, OperatorProcess, TOKEN, phase};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tanium_operator::controller::Policy;
use tanium_operator::crd::TaniumAction;
use tanium_sim::{AuditOutcome, Faults};

const OBJECTS: usize = 200;
const NAMESPACE: &str = "crash-loop";

fn seconds_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Half the objects target endpoint ids, half a filter (a computer name, or a platform with a limit).
fn manifest(i: usize, endpoint: &(String, String)) -> serde_json::Value {
    let (id, name) = endpoint;
    let targets = match i % 4 {
        0 | 1 => json!({"endpoints": [id]}),
        2 => json!({"filter": {"sensor": {"name": "Computer Name"}, "op": "EQ", "value": name}}),
        _ => json!({"filter": {"filters": [
            {"sensor": {"name": "Computer Name"}, "op": "EQ", "value": name},
            {"sensor": {"name": "Computer Name"}, "op": "EQ", "value": "no-such-host", "negated": true}
        ]}}),
    };
    json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
        "metadata": {"name": format!("crash-{i:03}")},
        "spec": {
            "package": {"name": "Custom Tagging - Add Tags", "params": [format!("crash-{i}")]},
            "targets": targets,
            "schedule": {"distributeSeconds": 60},
        }
    })
}

#[tokio::test]
async fn sigkill_at_random_under_gateway_faults_deploys_each_object_exactly_once() {
    let Some(env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let loop_for = Duration::from_secs(seconds_from_env("TANIUM_CRASH_LOOP_SECONDS", 30));
    let seed = seconds_from_env("TANIUM_CRASH_LOOP_SEED", rand::random::<u32>().into());
    println!(
        "crash loop: {OBJECTS} objects, killing for {loop_for:?}, seed {seed} (TANIUM_CRASH_LOOP_SEED={seed} repeats it)"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let api: Api<TaniumAction> = env.namespace(NAMESPACE).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Online endpoints only: every object can finish (an offline target would keep it open until expiry).
    let endpoints: Vec<(String, String)> = env
        .sim
        .sim()
        .online_endpoint_ids()
        .into_iter()
        .filter_map(|id| {
            let spec = env.sim.sim().endpoint(&id)?;
            Some((id, spec.name))
        })
        .collect();
    assert!(endpoints.len() > 50, "{} endpoints online", endpoints.len());

    // The Gateway misbehaves for as long as the operator is being killed.
    env.sim.sim().set_faults(Faults {
        latency_ms: 25,
        http_500_rate: 0.05,
        retryable_error_rate: 0.05,
        drop_after_commit_rate: 0.25,
        drop_operations: vec!["actionPerform".into()],
        seed,
        ..Faults::default()
    });
    let vars = [
        ("TANIUM_REQUEST_TIMEOUT_SECONDS", "2"),
        ("TANIUM_LOOKUP_GRACE_SECONDS", "6"),
        ("TANIUM_RETRY_HELD_SECONDS", "2"),
        ("RUST_LOG", "info,kube=warn"),
    ];
    let kubeconfig = env.cp.kubeconfig_path().to_owned();
    let spawn = |n: u32| {
        OperatorProcess::spawn(
            &env,
            &kubeconfig,
            dir.path(),
            &format!("operator-{n}"),
            &vars,
        )
    };

    // Objects arrive in waves while the operator lives and dies: creates land in every phase of its life.
    let started = Instant::now();
    let mut created = 0;
    let mut kills = 0u32;
    while started.elapsed() < loop_for || created < OBJECTS {
        let mut operator = spawn(kills);
        let wave = rng.random_range(10..=40).min(OBJECTS - created);
        for i in created..created + wave {
            let obj: TaniumAction =
                serde_json::from_value(manifest(i, &endpoints[i % endpoints.len()]))
                    .expect("a manifest");
            api.create(&PostParams::default(), &obj)
                .await
                .expect("created");
        }
        created += wave;
        let alive = Duration::from_millis(rng.random_range(300..=3000));
        tokio::time::sleep(alive).await;
        operator.kill();
        kills += 1;
    }
    let faults: Vec<_> = env
        .sim
        .sim()
        .audit()
        .into_iter()
        .filter(|e| !matches!(e.outcome, AuditOutcome::Ok { .. }))
        .collect();
    env.sim.sim().set_faults(Faults::default());
    println!(
        "crash loop: {kills} SIGKILLs over {:?}, {} faulted mutations so far; settling",
        started.elapsed(),
        faults.len()
    );

    // One last start, faults over: everything settles, boundedly.
    let _operator = spawn(kills);
    let deadline = Instant::now() + Duration::from_secs(180);
    let terminal = |o: &TaniumAction| {
        o.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.is_terminal())
    };
    let objects = loop {
        let list = api.list(&ListParams::default()).await.expect("list");
        let open: Vec<String> = list
            .items
            .iter()
            .filter(|o| !terminal(o))
            .map(|o| {
                format!(
                    "{} {:?}",
                    o.metadata.name.as_deref().unwrap_or(""),
                    phase(o)
                )
            })
            .collect();
        if open.is_empty() && list.items.len() == OBJECTS {
            break list.items;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {OBJECTS} objects not terminal 180 s after the last restart: {open:?}",
            open.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };

    // Exactly one committed actionPerform per object, and none for anything else.
    let performs = env.performs();
    let mut duplicates = Vec::new();
    for obj in &objects {
        let n = env.performs_for(obj);
        if n != 1 {
            duplicates.push(format!(
                "{}: {n}",
                obj.metadata.name.as_deref().unwrap_or("")
            ));
        }
        assert_eq!(
            phase(obj).as_deref(),
            Some("Completed"),
            "{}: {:#?}",
            obj.metadata.name.as_deref().unwrap_or(""),
            obj.status
        );
        assert!(
            !serde_json::to_string(obj)
                .unwrap_or_default()
                .contains(TOKEN)
        );
    }
    assert!(
        duplicates.is_empty(),
        "not deployed exactly once: {duplicates:?}"
    );
    let committed: usize = performs.values().map(|(c, _)| c).sum();
    assert_eq!(committed, OBJECTS, "committed actionPerforms: {performs:?}");
    env.assert_exactly_once();

    // The token is in no log line and no event.
    let mut log_lines = 0;
    for entry in std::fs::read_dir(dir.path()).expect("logs") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).expect("log");
            assert!(!text.contains(TOKEN), "the token is in {}", path.display());
            log_lines += text.lines().count();
        }
    }
    let events: Api<Event> = Api::namespaced(env.client.clone(), NAMESPACE);
    let events = events.list(&ListParams::default()).await.expect("events");
    for e in &events.items {
        assert!(!serde_json::to_string(e).unwrap_or_default().contains(TOKEN));
    }

    let audit = env.sim.sim().audit();
    let count = |f: &dyn Fn(&AuditOutcome) -> bool| audit.iter().filter(|e| f(&e.outcome)).count();
    let dropped = count(&|o| matches!(o, AuditOutcome::Dropped { .. }));
    let refused = count(&|o| matches!(o, AuditOutcome::Error { .. }));
    let attempts: usize = performs.values().map(|(_, a)| a).sum();
    println!(
        "crash loop: {OBJECTS} objects, {kills} SIGKILLs, {attempts} actionPerform attempts ({committed} committed, \
         {dropped} answers dropped after commit), {refused} mutations refused by injected faults, \
         {log_lines} log lines and {} events without the token, duplicates: 0",
        events.items.len()
    );
}
