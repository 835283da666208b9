//! TaniumEndpointInspection end to end: real kube-apiserver + etcd, tanium-sim over HTTP, the controller
//! in-process.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Env, TOKEN, fast_timing};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tanium_operator::controller::{Config, Context, Policy};
use tanium_operator::crd::TaniumEndpointInspection;
use tanium_operator::crd::inspection::{ConnectionState, KillState};
use tanium_sim::AuditOutcome;

fn manifest(name: &str, spec: serde_json::Value) -> TaniumEndpointInspection {
    serde_json::from_value(json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumEndpointInspection",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("a TaniumEndpointInspection")
}

fn ready_reason(o: &TaniumEndpointInspection) -> Option<String> {
    o.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.reason.clone())
    })
}

fn reason_is(reason: &'static str) -> impl Fn(&TaniumEndpointInspection) -> bool {
    move |o| ready_reason(o).as_deref() == Some(reason)
}

/// (committed, refused) calls of a Direct Connect mutation whose input mentions `needle`.
fn calls(env: &Env, operation: &str, needle: &str) -> (usize, usize) {
    let all = env.mutations(operation, needle);
    let committed = all.iter().filter(|o| o.is_committed()).count();
    (committed, all.len() - committed)
}

/// Connections opened to `endpoint`.
fn opened(env: &Env, endpoint: &str) -> Vec<String> {
    env.sim
        .sim()
        .audit()
        .into_iter()
        .filter(|e| e.operation == "directConnectOpen" && e.input.to_string().contains(endpoint))
        .filter_map(|e| match e.outcome {
            AuditOutcome::Ok { ids } => ids.into_iter().next(),
            _ => None,
        })
        .collect()
}

/// Connections to `endpoint` opened and closed again.
fn closed(env: &Env, endpoint: &str) -> usize {
    opened(env, endpoint)
        .iter()
        .filter(|id| calls(env, "directConnectClose", id).0 == 1)
        .count()
}

/// Every connection the operator opened to `endpoint` was closed again.
fn all_closed(env: &Env, endpoint: &str) -> bool {
    let opened = opened(env, endpoint).len();
    opened > 0 && closed(env, endpoint) == opened
}

/// Wait until `closes` connections to `endpoint` were opened and closed again: that many refreshes ended.
async fn refreshed(env: &Env, endpoint: &str, closes: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while closed(env, endpoint) < closes {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{endpoint}: {closes} refreshes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kill's outcome is known (it is no longer only the recorded intent).
fn kill_settled(o: &TaniumEndpointInspection) -> bool {
    o.status
        .as_ref()
        .and_then(|s| s.kill.as_ref())
        .is_some_and(|k| k.state != KillState::Requested)
}

/// A process started on a sim endpoint for this kill alone (one no other test ends), with a pid above every other.
fn newest_process(env: &Env, endpoint: &str) -> tanium_sim::ProcessSpec {
    // Never a pid used before in this process: a pid names the kill in the sim's audit.
    static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(70_000);
    let sim = env.sim.sim();
    let highest = sim
        .endpoint(endpoint)
        .expect("the endpoint")
        .processes
        .iter()
        .map(|p| p.pid)
        .max()
        .unwrap_or(1000)
        .max(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let process = tanium_sim::ProcessSpec {
        name: format!("worker-{}", highest + 1),
        pid: highest + 1,
        ppid: 1,
        md5: "0cc175b9c0f1b6a831c399e269772661".into(),
        user: "svc".into(),
        group: "svc".into(),
        command_line: format!("/usr/local/bin/worker --id {}", highest + 1),
        memory: 4_000_000,
        cpu_percent: 0.5,
    };
    assert!(sim.add_process(endpoint, process.clone()));
    process
}

/// Wait until the sim committed a process termination for `pid`.
async fn terminate_sent(env: &Env, pid: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while calls(env, "directConnectProcessTerminate", pid).0 == 0 {
        assert!(tokio::time::Instant::now() < deadline, "terminate sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A person's edit that makes the controller look again now (annotations wake it).
async fn poke(api: &Api<TaniumEndpointInspection>, name: &str, n: u32) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"test/poke": n.to_string()}}})),
    )
    .await
    .expect("annotated");
}

async fn namespace(env: &Env, name: &str) -> Api<TaniumEndpointInspection> {
    env.namespace(name).await;
    Api::namespaced(env.client.clone(), name)
}

#[tokio::test]
async fn inspects_a_seeded_endpoint_by_id_and_by_computer_name() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.start_controller();
    let api = namespace(&env, "inspect").await;
    let example: TaniumEndpointInspection =
        serde_json::from_value(common::example("inspect-tanium-server")).unwrap();
    api.create(&PostParams::default(), &example).await.unwrap();
    let obj = env
        .wait_until(
            &api,
            "inspect-tanium-server",
            "inspected",
            reason_is("Inspected"),
        )
        .await;
    let status = obj.status.unwrap();
    let seeded = env.sim.sim().endpoint("12323").unwrap();
    assert_eq!(status.endpoint.unwrap().computer_name, seeded.name);
    let perf = status.performance.unwrap();
    assert!((perf.cpu_usage_percent - 28.75).abs() < 0.01, "{perf:?}");
    let processes = status.processes.unwrap();
    assert_eq!(processes.count, seeded.processes.len() as u64);
    assert!(processes.top.len() <= 10 && !processes.top.is_empty());
    let biggest = seeded.processes.iter().map(|p| p.memory).max().unwrap();
    assert_eq!(processes.top[0].memory_resident_bytes, biggest);
    assert!(
        processes
            .top
            .windows(2)
            .all(|w| w[0].memory_resident_bytes >= w[1].memory_resident_bytes)
    );
    let alerts = status.alerts.unwrap();
    assert!(alerts.count >= 1, "the seed's endpoint has an alert");
    assert_eq!(alerts.firing, 1, "{alerts:?}");
    assert!(alerts.recent.len() as u64 <= alerts.count.min(10));
    assert!(status.last_refreshed.is_some());
    // The default refresh (1m) comes long after the idle timeout: the connection was closed, not kept.
    assert_eq!(status.connection.unwrap().state, ConnectionState::Closed);
    assert!(
        all_closed(&env, "12323"),
        "every connection is closed: {:#?}",
        env.sim.sim().audit()
    );

    // By computer name, with a process filter and only what was asked for.
    api.create(
        &PostParams::default(),
        &manifest(
            "by-name",
            json!({
                "endpoint": {"computerName": "testmachine999"},
                "collect": {"processes": {"nameContains": "TANIUM", "top": 2}}
            }),
        ),
    )
    .await
    .unwrap();
    let obj = env
        .wait_until(&api, "by-name", "inspected", reason_is("Inspected"))
        .await;
    let status = obj.status.unwrap();
    assert_eq!(status.endpoint.unwrap().id, "274177");
    assert!(status.performance.is_none() && status.alerts.is_none());
    let processes = status.processes.unwrap();
    let test_machine = env.sim.sim().endpoint("274177").unwrap();
    let tanium = test_machine
        .processes
        .iter()
        .filter(|p| p.name.to_lowercase().contains("tanium"))
        .count() as u64;
    assert!(tanium > 0 && tanium < test_machine.processes.len() as u64);
    assert_eq!(processes.matched, Some(tanium));
    assert_eq!(processes.count, test_machine.processes.len() as u64);
    assert_eq!(processes.top.len() as u64, tanium.min(2));
    assert!(
        processes
            .top
            .iter()
            .all(|p| p.name.to_lowercase().contains("tanium"))
    );

    let table = env.kubectl(&["get", "tei", "-n", "inspect"]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["ENDPOINT", "CPU", "PROCESSES", "ALERTS", "STATUS", "AGE"] {
        assert!(header.contains(column), "{table}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("inspect-tanium-server"))
        .expect("a row");
    assert!(
        row.contains("tanium-server-01") && row.contains("28.75"),
        "{table}"
    );
    assert!(row.contains(&seeded.processes.len().to_string()), "{table}");
    env.stop_controller();
}

#[tokio::test]
async fn kill_by_pid_is_confirmed_and_never_sent_twice_across_restarts() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let api = namespace(&env, "kill").await;

    // A clean kill, confirmed by the sim.
    env.start_controller();
    let example: TaniumEndpointInspection =
        serde_json::from_value(common::example("end-notepad")).unwrap();
    api.create(&PostParams::default(), &example).await.unwrap();
    let obj = env
        // The outcome is written as soon as it is known, before the endpoint is read again: wait for that read.
        .wait_until(
            &api,
            "end-notepad",
            "kill done and endpoint read again",
            |o| kill_settled(o) && o.status.as_ref().is_some_and(|s| s.processes.is_some()),
        )
        .await;
    let kill = obj.status.as_ref().unwrap().kill.clone().unwrap();
    assert_eq!(kill.state, KillState::Ended, "{kill:?}");
    let processes = obj.status.as_ref().unwrap().processes.clone().unwrap();
    assert_eq!(
        processes.matched,
        Some(0),
        "status shows the endpoint after the kill: {processes:?}"
    );
    assert!(
        !env.sim
            .sim()
            .endpoint("12323")
            .unwrap()
            .processes
            .iter()
            .any(|p| p.pid == 7056)
    );
    assert_eq!(calls(&env, "directConnectProcessTerminate", "7056"), (1, 0));
    env.wait_for_event("kill", "end-notepad", |r, _| r == "ProcessEnded")
        .await;
    // Later refreshes and a restart do not send it again.
    poke(&api, "end-notepad", 1).await;
    env.start_controller();
    // Counted after the old controller is gone: the refresh awaited is the new one's.
    let before = closed(&env, "12323");
    poke(&api, "end-notepad", 2).await;
    refreshed(&env, "12323", before + 1).await;
    assert_eq!(calls(&env, "directConnectProcessTerminate", "7056"), (1, 0));

    // A crash after the endpoint ended the process and before status says so: after the restart the request
    // is not sent again, and status tells what is known.
    let victim = newest_process(&env, "54321");
    let ctx = env.start_controller();
    ctx.fail_points
        .hang_after_kill
        .store(true, Ordering::SeqCst);
    api.create(
        &PostParams::default(),
        &manifest(
            "crash",
            json!({
                "endpoint": {"id": "54321"},
                "killProcess": {"pid": victim.pid, "name": victim.name}
            }),
        ),
    )
    .await
    .unwrap();
    let pid = victim.pid.to_string();
    terminate_sent(&env, &pid).await;
    let obj = api.get("crash").await.unwrap();
    assert_eq!(
        obj.status.unwrap().kill.unwrap().state,
        KillState::Requested,
        "the intent was recorded before the request"
    );
    env.stop_controller();
    env.start_controller();
    let obj = env
        .wait_until(&api, "crash", "kill resolved", kill_settled)
        .await;
    let kill = obj.status.unwrap().kill.unwrap();
    assert_eq!(kill.state, KillState::Unknown);
    assert!(
        kill.message
            .as_deref()
            .unwrap_or_default()
            .contains("no longer running"),
        "{kill:?}"
    );
    env.start_controller();
    let before = closed(&env, "54321");
    poke(&api, "crash", 1).await;
    refreshed(&env, "54321", before + 1).await;
    assert_eq!(calls(&env, "directConnectProcessTerminate", &pid), (1, 0));

    // A person edits the object while the request is in flight: the outcome still reaches status (the
    // conditional write is redone on the fresh version), not "unknown".
    let victim = newest_process(&env, "54321");
    let ctx = env.start_controller();
    ctx.fail_points
        .hang_after_kill
        .store(true, Ordering::SeqCst);
    api.create(
        &PostParams::default(),
        &manifest(
            "edited",
            json!({"endpoint": {"id": "54321"}, "killProcess": {"pid": victim.pid, "name": victim.name}}),
        ),
    )
    .await
    .unwrap();
    let pid = victim.pid.to_string();
    terminate_sent(&env, &pid).await;
    poke(&api, "edited", 1).await;
    ctx.fail_points
        .hang_after_kill
        .store(false, Ordering::SeqCst);
    let obj = env
        .wait_until(&api, "edited", "kill done", kill_settled)
        .await;
    assert_eq!(obj.status.unwrap().kill.unwrap().state, KillState::Ended);
    assert_eq!(calls(&env, "directConnectProcessTerminate", &pid), (1, 0));

    // No such process: said so, sent once.
    api.create(
        &PostParams::default(),
        &manifest(
            "ghost",
            json!({"endpoint": {"id": "21212"}, "killProcess": {"pid": 999999, "name": "ghost"}}),
        ),
    )
    .await
    .unwrap();
    let obj = env
        .wait_until(&api, "ghost", "kill done", kill_settled)
        .await;
    assert_eq!(obj.status.unwrap().kill.unwrap().state, KillState::NotFound);
    assert_eq!(
        calls(&env, "directConnectProcessTerminate", "999999"),
        (1, 0)
    );

    // The Tanium client's own process, and a system one: held (an admin's choice to allow), nothing sent.
    let before = calls(&env, "directConnectProcessTerminate", "");
    for (name, kill) in [
        ("client", json!({"pid": 5000, "name": "TaniumClient.exe"})),
        ("system", json!({"pid": 4, "name": "System"})),
    ] {
        api.create(
            &PostParams::default(),
            &manifest(
                name,
                json!({"endpoint": {"id": "21212"}, "killProcess": kill}),
            ),
        )
        .await
        .unwrap();
        let obj = env
            .wait_until(&api, name, "held as protected", |o| {
                o.status.as_ref().is_some_and(|s| {
                    tanium_operator::crd::condition(&s.conditions, "Ready")
                        .is_some_and(|c| c.reason == "ProtectedProcess")
                })
            })
            .await;
        assert!(
            obj.status.unwrap().kill.is_none(),
            "{name}: no kill recorded"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        calls(&env, "directConnectProcessTerminate", ""),
        before,
        "a protected process was sent a kill"
    );

    // killProcess is immutable once set.
    let changed = api
        .patch(
            "ghost",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"killProcess": {"pid": 4, "name": "System"}}})),
        )
        .await;
    assert!(
        matches!(&changed, Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("at most once")),
        "{changed:?}"
    );
    env.stop_controller();
}

#[tokio::test]
async fn a_dropped_connection_is_opened_again_and_every_connection_is_closed() {
    // Connections idle out only when the test moves the sim's clock.
    let Some(env) = Env::start(Policy::default(), |c| {
        c.dc_idle_timeout = Duration::from_secs(24 * 3600)
    })
    .await
    else {
        return;
    };
    let api = namespace(&env, "idle").await;
    // The operator believes connections live a minute, so it keeps them between 10 s refreshes; the sim drops
    // one when the test says (Tanium's idle timeout differs between releases; a guess can be wrong).
    let timing = tanium_operator::controller::Timing {
        dc_idle_timeout: Duration::from_secs(60),
        ..fast_timing()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ctx = Arc::new(Context::new(
        env.client.clone(),
        env.gateway(TOKEN),
        Config {
            policy: Policy::default(),
            timing,
            concurrency: 4,
            // Reconnected only repeats what status.connection says: published with the full set.
            all_events: true,
            ..Config::default()
        },
    ));
    let controller = tokio::spawn(tanium_operator::runtime::run(ctx.clone(), async {
        let _ = stopped.await;
    }));
    api.create(
        &PostParams::default(),
        &manifest(
            "kept",
            json!({"endpoint": {"id": "12323"}, "refreshInterval": "10s"}),
        ),
    )
    .await
    .unwrap();
    let obj = env
        .wait_until(&api, "kept", "inspected", reason_is("Inspected"))
        .await;
    let first = obj.status.unwrap().connection.unwrap();
    assert_eq!(first.state, ConnectionState::Open, "kept between refreshes");
    assert_eq!(ctx.connections.own().sessions.len(), 1);

    // Idle past the sim's timeout: the next refresh finds the connection gone and opens another.
    env.sim.sim().advance(Duration::from_secs(25 * 3600));
    poke(&api, "kept", 1).await;
    let obj = env
        .wait_until(&api, "kept", "reconnected", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.connection.as_ref())
                .is_some_and(|c| c.reconnects >= 1)
        })
        .await;
    let second = obj.status.as_ref().unwrap().connection.clone().unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(ready_reason(&obj).as_deref(), Some("Inspected"));
    env.wait_for_event("idle", "kept", |r, _| r == "Reconnected")
        .await;

    // Deleting the object closes its connection.
    api.delete("kept", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while api.get_opt("kept").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second_id = second.id.unwrap();
    assert_eq!(calls(&env, "directConnectClose", &second_id), (1, 0));

    // Shutting down closes every kept connection.
    api.create(
        &PostParams::default(),
        &manifest(
            "at-shutdown",
            json!({"endpoint": {"id": "54321"}, "refreshInterval": "10s"}),
        ),
    )
    .await
    .unwrap();
    let obj = env
        .wait_until(&api, "at-shutdown", "inspected", reason_is("Inspected"))
        .await;
    let open = obj.status.unwrap().connection.unwrap().id.unwrap();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), controller)
        .await
        .expect("the controllers stop")
        .unwrap();
    assert_eq!(calls(&env, "directConnectClose", &open), (1, 0));
    assert!(ctx.connections.own().sessions.is_empty());
}

#[tokio::test]
async fn unknown_and_offline_endpoints_are_reported_and_nothing_is_sent() {
    let policy = Policy {
        allowed_namespaces: vec!["trouble".into()],
        ..Policy::default()
    };
    let Some(mut env) = Env::start(policy, |_| {}).await else {
        return;
    };
    env.start_controller();
    let api = namespace(&env, "trouble").await;

    // Refused by the API server before the operator sees it.
    for (spec, expected) in [
        (
            json!({"endpoint": {"id": "1", "computerName": "x"}}),
            "exactly one of id or computerName",
        ),
        (
            json!({"endpoint": {"id": "1"}, "refreshInterval": "5s"}),
            "at least 10s",
        ),
        (
            json!({"endpoint": {"id": "1"}, "collect": {"processes": {"top": 500}}}),
            "top",
        ),
    ] {
        let refused = api
            .create(&PostParams::default(), &manifest("bad", spec.clone()))
            .await;
        assert!(
            matches!(&refused, Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(expected)),
            "{spec}: {refused:?}"
        );
    }

    // Outside the namespaces the admin allows: held, nothing opened, not even a read.
    let elsewhere = namespace(&env, "elsewhere").await;
    elsewhere
        .create(
            &PostParams::default(),
            &manifest(
                "denied",
                json!({"endpoint": {"id": "274177"}, "killProcess": {"pid": 4, "name": "System"}}),
            ),
        )
        .await
        .unwrap();
    let obj = env
        .wait_until(&elsewhere, "denied", "refused", reason_is("PolicyDenied"))
        .await;
    assert!(obj.status.unwrap().kill.is_none());
    assert_eq!(calls(&env, "directConnectOpen", "274177"), (0, 0));

    api.create(
        &PostParams::default(),
        &manifest(
            "unknown",
            json!({"endpoint": {"id": "424242424"}, "killProcess": {"pid": 4242, "name": "miner"}}),
        ),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &manifest(
            "unknown-name",
            json!({"endpoint": {"computerName": "no-such-machine"}}),
        ),
    )
    .await
    .unwrap();
    for name in ["unknown", "unknown-name"] {
        let obj = env
            .wait_until(&api, name, "not found", reason_is("EndpointNotFound"))
            .await;
        assert!(obj.status.unwrap().kill.is_none());
    }
    assert_eq!(calls(&env, "directConnectOpen", "424242424"), (0, 0));
    env.wait_for_event("trouble", "unknown", |r, n| {
        r == "EndpointNotFound" && n.contains("424242424")
    })
    .await;

    // Offline: reported, the kill waits; back online, it is carried out.
    let victim = newest_process(&env, "21212");
    assert!(env.sim.sim().set_online("21212", false));
    api.create(
        &PostParams::default(),
        &manifest(
            "offline",
            json!({"endpoint": {"id": "21212"}, "killProcess": {"pid": victim.pid, "name": victim.name}}),
        ),
    )
    .await
    .unwrap();
    let obj = env
        .wait_until(
            &api,
            "offline",
            "unreachable",
            reason_is("EndpointUnreachable"),
        )
        .await;
    let status = obj.status.unwrap();
    assert_eq!(status.connection.unwrap().state, ConnectionState::Failed);
    assert!(status.kill.is_none(), "nothing sent to an offline endpoint");
    assert_eq!(
        calls(
            &env,
            "directConnectProcessTerminate",
            &victim.pid.to_string()
        ),
        (0, 0)
    );
    assert!(env.sim.sim().set_online("21212", true));
    poke(&api, "offline", 1).await;
    let obj = env
        .wait_until(&api, "offline", "inspected", reason_is("Inspected"))
        .await;
    assert_eq!(obj.status.unwrap().kill.unwrap().state, KillState::Ended);
    assert_eq!(
        calls(
            &env,
            "directConnectProcessTerminate",
            &victim.pid.to_string()
        ),
        (1, 0)
    );
    // The connection that failed while the endpoint was offline was closed too.
    assert!(opened(&env, "21212").len() >= 2);
    assert!(all_closed(&env, "21212"));
    env.stop_controller();
}
