//! kstatus, the library Flux's health checks and `wait`, `kubectl wait` and every cli-utils-based tool read
//! objects with, run for real (`tools/kstatus`, built by `./scripts/test-tools.sh`, path in `$TANIUM_KSTATUS`) on
//! every version of our objects a watch saw while the operator took them through each phase against the local
//! control plane and tanium-sim. Each is judged as a GitOps tool needs: in progress while the operator gets on by
//! itself, failed when a person must act (a permanent hold, an approval, `suspend`, a failed end), current when
//! done. Before Reconciling and Stalled, a held or failed object read as in progress for ever, and a `wait: true`
//! timed out instead of failing.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Env, TOKEN};
use futures::StreamExt as _;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};
use tanium_operator::controller::Policy;
use tanium_operator::crd::{TaniumEndpointInspection, TaniumTag};
use tanium_sim::{EndpointSpec, Platform};

/// kstatus's verdict on each object, in order.
fn kstatus(binary: &PathBuf, objects: &[Value]) -> Vec<(String, String)> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(binary)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kstatus runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&serde_json::to_vec(objects).expect("JSON"))
        .expect("objects written");
    let out = child.wait_with_output().expect("kstatus ends");
    assert!(out.status.success(), "kstatus failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            (
                v["status"].as_str().unwrap_or_default().to_owned(),
                v["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Every version of every object of kind `K` in `api` that a watch delivers, as JSON.
fn record<K>(api: Api<K>) -> Arc<Mutex<Vec<Value>>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + 'static,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(obj)) = stream.next().await {
            let mut v = serde_json::to_value(&obj).expect("JSON");
            // kstatus reads apiVersion and kind; typed objects carry them.
            v["apiVersion"] = json!(K::api_version(&()));
            v["kind"] = json!(K::kind(&()));
            if let Ok(mut s) = sink.lock() {
                s.push(v);
            }
        }
    });
    seen
}

fn ready_reason(v: &Value) -> Option<&str> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["reason"].as_str())
}

/// What a GitOps tool must read, by the object's phase and Ready reason.
fn expected(kind: &str, phase: Option<&str>, reason: Option<&str>) -> &'static str {
    if reason == Some("Progressing") || (phase.is_none() && reason.is_none()) {
        // A generation the operator has not decided on yet.
        return "InProgress";
    }
    match (kind, phase, reason) {
        ("TaniumAction", Some("Completed"), _) => "Current",
        ("TaniumAction", Some("Pending" | "Deploying" | "Running"), _) => "InProgress",
        ("TaniumAction", Some("Blocked"), Some("NoTargets" | "PreviewIncomplete")) => "InProgress",
        (
            "TaniumAction",
            Some(
                "Blocked"
                | "AwaitingPreviewApproval"
                | "AwaitingApproval"
                | "Suspended"
                | "Expired"
                | "Stopped"
                | "Failed",
            ),
            _,
        ) => "Failed",
        ("TaniumTag", Some("InSync"), _) => "Current",
        ("TaniumTag", Some("Tagging" | "Removing"), _) => "InProgress",
        ("TaniumTag", Some("Blocked" | "Suspended" | "AwaitingPreviewApproval"), _) => "Failed",
        ("TaniumEndpointInspection", _, Some("Inspected")) => "Current",
        ("TaniumEndpointInspection", _, Some("EndpointUnreachable")) => "InProgress",
        ("TaniumEndpointInspection", _, Some("EndpointNotFound")) => "Failed",
        _ => panic!("no expectation for {kind} phase {phase:?} reason {reason:?}"),
    }
}

/// Judge every recorded version; the (kind, phase, reason) states judged, for coverage.
fn judge(binary: &PathBuf, seen: &[Value]) -> BTreeSet<(String, String, String)> {
    let verdicts = kstatus(binary, seen);
    assert_eq!(verdicts.len(), seen.len());
    let mut states = BTreeSet::new();
    for (obj, (status, message)) in seen.iter().zip(verdicts) {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        if obj["metadata"]["deletionTimestamp"].is_string() {
            assert_eq!(status, "Terminating", "{name}");
            continue;
        }
        let phase = obj["status"]["phase"].as_str();
        let reason = ready_reason(obj);
        // A generation the operator has not observed yet (a spec change just applied): in progress, whatever
        // the previous generation's verdict.
        let unobserved = obj["status"]["observedGeneration"] != obj["metadata"]["generation"];
        let want = if unobserved {
            "InProgress"
        } else {
            expected(kind, phase, reason)
        };
        assert_eq!(
            status, want,
            "{kind} {name} (phase {phase:?}, Ready reason {reason:?}): kstatus says {status}: {message}\n{obj:#}"
        );
        states.insert((
            kind.to_owned(),
            phase.unwrap_or("-").to_owned(),
            status.clone(),
        ));
    }
    states
}

fn action(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction", "metadata": {"name": name}, "spec": spec})
}

fn add_tag(tag: &str, targets: Value) -> Value {
    json!({"package": {"name": "Custom Tagging - Add Tags", "params": [tag]}, "targets": targets})
}

#[tokio::test]
async fn every_phase_reads_right_to_kstatus() {
    let Some(binary) = tanium_testenv::TestTool::KSTATUS.locate_or_skip() else {
        return;
    };
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let api = env.namespace("kstatus").await;
    let actions = record(api.clone());
    let tags: Api<TaniumTag> = Api::namespaced(env.client.clone(), "kstatus");
    let tag_versions = record(tags.clone());
    let inspections: Api<TaniumEndpointInspection> = Api::namespaced(env.client.clone(), "kstatus");
    let inspection_versions = record(inspections.clone());
    let offline = env.sim.sim().add_endpoints(vec![EndpointSpec {
        online: false,
        ..EndpointSpec::new("offline-box", Platform::Windows)
    }]);
    env.start_controller();

    let linux =
        json!({"filter": {"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Linux"}});
    let mut too_many = add_tag("Many", linux.clone());
    too_many["safety"] = json!({"maxTargets": 1});
    let mut approval = add_tag("Approve", json!({"endpoints": ["274177"]}));
    approval["safety"] = json!({"requirePreviewApproval": true});
    let mut suspended = add_tag("Later", json!({"endpoints": ["274177"]}));
    suspended["suspend"] = json!(true);
    let mut expiring = add_tag("Expiring", json!({"endpoints": [offline[0]]}));
    expiring["schedule"] = json!({"expireSeconds": 60});
    let mut refused = add_tag("Nowhere", json!({"endpoints": ["274177"]}));
    refused["targets"]["actionGroup"] = json!({"name": "No Such Group"});
    let mut long = add_tag("Long", linux);
    long["schedule"] = json!({"distributeSeconds": 86400});
    let unknown =
        json!({"package": {"name": "No Such Package"}, "targets": {"endpoints": ["274177"]}});
    for (name, spec) in [
        (
            "completes",
            add_tag("Done", json!({"endpoints": ["274177"]})),
        ),
        ("too-many", too_many),
        ("unknown-package", unknown),
        ("needs-approval", approval),
        ("suspended", suspended),
        ("expiring", expiring),
        ("refused", refused),
        ("stopped-in-tanium", long),
    ] {
        env.create(&api, action(name, spec)).await;
    }
    for (name, phase) in [
        ("completes", "Completed"),
        ("too-many", "Blocked"),
        ("unknown-package", "Blocked"),
        ("needs-approval", "AwaitingPreviewApproval"),
        ("suspended", "Suspended"),
        ("expiring", "Expired"),
        ("refused", "Failed"),
        ("stopped-in-tanium", "Running"),
    ] {
        env.wait_for(&api, name, phase, common::phase_is(phase))
            .await;
    }
    // Stopped by someone in Tanium: over, and not by the operator's choice.
    let running = api.get("stopped-in-tanium").await.expect("get");
    let id = running
        .status
        .and_then(|s| s.deployment.scheduled_actions.first().cloned())
        .and_then(|sa| sa.last_action_id)
        .expect("an action instance");
    env.gateway(TOKEN)
        .stop_action(&tanium_operator::gateway::ActionId(id))
        .await
        .expect("stopped in Tanium");
    env.wait_for(
        &api,
        "stopped-in-tanium",
        "Stopped",
        common::phase_is("Stopped"),
    )
    .await;
    // A new generation: lifting suspend is in progress at once, then done.
    api.patch(
        "suspended",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .expect("unsuspended");
    env.wait_for(
        &api,
        "suspended",
        "Completed",
        common::phase_is("Completed"),
    )
    .await;

    // TaniumTag: in sync, a round, held, suspended.
    for (name, spec) in [
        (
            "in-sync",
            json!({"tags": ["kstatus"], "targets": {"endpoints": ["274177"]}, "interval": "2s"}),
        ),
        (
            "held",
            json!({"tags": ["x"], "targets": {"filter": {"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Windows"}},
                   "interval": "2s", "safety": {"maxTargets": 1}}),
        ),
        (
            "paused",
            json!({"tags": ["p"], "targets": {"endpoints": ["274177"]}, "suspend": true}),
        ),
    ] {
        let tag: TaniumTag = serde_json::from_value(json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumTag", "metadata": {"name": name}, "spec": spec
        }))
        .expect("a TaniumTag");
        tags.create(&PostParams::default(), &tag)
            .await
            .expect("created");
    }
    for (name, phase) in [
        ("in-sync", "InSync"),
        ("held", "Blocked"),
        ("paused", "Suspended"),
    ] {
        env.wait_until(&tags, name, phase, |t| {
            t.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| format!("{p:?}") == phase)
        })
        .await;
    }

    // TaniumEndpointInspection: read, offline, unknown.
    for (name, id) in [
        ("reads", "12323"),
        ("offline", offline[0].as_str()),
        ("nobody", "999999"),
    ] {
        let obj: TaniumEndpointInspection = serde_json::from_value(json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumEndpointInspection",
            "metadata": {"name": name}, "spec": {"endpoint": {"id": id}, "collect": {"performance": true}}
        }))
        .expect("an inspection");
        inspections
            .create(&PostParams::default(), &obj)
            .await
            .expect("created");
    }
    for (name, reason) in [
        ("reads", "Inspected"),
        ("offline", "EndpointUnreachable"),
        ("nobody", "EndpointNotFound"),
    ] {
        env.wait_until(&inspections, name, reason, |o| {
            o.status.as_ref().is_some_and(|s| {
                tanium_operator::crd::condition(&s.conditions, "Ready")
                    .is_some_and(|c| c.reason == reason)
            })
        })
        .await;
    }
    // The watches deliver what was written; give them a moment to catch up.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let actions = actions.lock().expect("recorded").clone();
    // Before the operator writes anything, the schema's default says "not observed" (kstatus: in progress, judged
    // below with every other version), and a new object's first status write is already a decision: no write
    // only to say "in progress" (under a burst, the apiserver is the limit).
    for name in ["completes", "too-many", "refused"] {
        let mine: Vec<&Value> = actions
            .iter()
            .filter(|v| v["metadata"]["name"] == name)
            .collect();
        assert_eq!(
            mine.first().map(|v| &v["status"]),
            Some(&json!({"observedGeneration": 0})),
            "{name}: as created"
        );
        let first = mine
            .iter()
            .find(|v| v["status"]["observedGeneration"] == json!(1))
            .unwrap_or_else(|| panic!("{name}: no status written"));
        assert_ne!(
            ready_reason(first),
            Some("Progressing"),
            "{name}: {first:#}"
        );
    }
    let mut states = judge(&binary, &actions);
    states.extend(judge(
        &binary,
        &tag_versions.lock().expect("recorded").clone(),
    ));
    states.extend(judge(
        &binary,
        &inspection_versions.lock().expect("recorded").clone(),
    ));
    for (kind, phase, status) in [
        ("TaniumAction", "-", "InProgress"),
        ("TaniumAction", "Deploying", "InProgress"),
        ("TaniumAction", "Running", "InProgress"),
        ("TaniumAction", "Completed", "Current"),
        ("TaniumAction", "Blocked", "Failed"),
        ("TaniumAction", "AwaitingPreviewApproval", "Failed"),
        ("TaniumAction", "Suspended", "Failed"),
        ("TaniumAction", "Expired", "Failed"),
        ("TaniumAction", "Stopped", "Failed"),
        ("TaniumAction", "Failed", "Failed"),
        ("TaniumTag", "InSync", "Current"),
        ("TaniumTag", "Tagging", "InProgress"),
        ("TaniumTag", "Blocked", "Failed"),
        ("TaniumTag", "Suspended", "Failed"),
        ("TaniumEndpointInspection", "-", "Current"),
        ("TaniumEndpointInspection", "-", "InProgress"),
        ("TaniumEndpointInspection", "-", "Failed"),
    ] {
        assert!(
            states.contains(&(kind.into(), phase.into(), status.into())),
            "{kind} {phase} {status} was never seen: {states:#?}"
        );
    }
    env.assert_exactly_once();
}

/// Tanium's own approval (a second person, in Tanium) is a person's act too.
#[tokio::test]
async fn awaiting_approval_in_tanium_reads_as_failed() {
    let Some(binary) = tanium_testenv::TestTool::KSTATUS.locate_or_skip() else {
        return;
    };
    let Some(mut env) = Env::start(Policy::default(), |c| c.approval_required = true).await else {
        return;
    };
    let api = env.namespace("kstatus-approval").await;
    env.start_controller();
    env.create(
        &api,
        action(
            "approve-in-tanium",
            add_tag("A", json!({"endpoints": ["274177"]})),
        ),
    )
    .await;
    let obj = env
        .wait_for(
            &api,
            "approve-in-tanium",
            "AwaitingApproval",
            common::phase_is("AwaitingApproval"),
        )
        .await;
    let mut v = serde_json::to_value(&obj).expect("JSON");
    v["apiVersion"] = json!("tanium-operator.dev/v1alpha1");
    v["kind"] = json!("TaniumAction");
    let states = judge(&binary, &[v]);
    assert!(states.contains(&(
        "TaniumAction".into(),
        "AwaitingApproval".into(),
        "Failed".into()
    )));
}
