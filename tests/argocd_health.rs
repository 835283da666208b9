//! The Argo CD health checks (`argocd/resource_customizations/tanium-operator.dev/<Kind>/health.lua`, Argo CD's
//! own layout), run by a Lua 5.1 interpreter (Argo CD's gopher-lua speaks 5.1) against real objects: each kind
//! taken through its states by the operator on the local control plane and tanium-sim, read back from the
//! apiserver, and judged. Those objects are the `testdata/` of each kind's `health_test.yaml`, which Argo CD's own
//! harness runs (and so does `health_tests_pass_as_argo_cd_runs_them`); `TANIUM_WRITE_ARGOCD_TESTDATA=1` writes
//! them again from a run. Also: `kubectl tanium argocd-health` prints exactly those scripts under the keys Argo CD
//! reads.

mod common;

use common::Env;
use kube::api::{Api, PostParams};
use std::path::{Path, PathBuf};

use mlua::{Lua, LuaSerdeExt as _, SerializeOptions};
use serde_json::{Value, json};
use tanium_operator::controller::Policy;
use tanium_operator::crd::tag::TagPhase;
use tanium_operator::crd::{
    ClusterTaniumConnection, TaniumConnection, TaniumEndpointInspection, TaniumTag,
};
use tanium_operator::plugin::argocd::{HEALTH_CHECKS, key};

/// (status, message) the kind's script gives `obj`.
fn health(kind: &str, obj: &Value) -> (String, String) {
    let script = HEALTH_CHECKS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, lua)| *lua)
        .expect("a script for the kind");
    let lua = Lua::new();
    // JSON null is Lua nil, as Argo CD hands objects to its scripts.
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let table = lua
        .to_value_with(obj, options)
        .expect("object as a Lua table");
    lua.globals().set("obj", table).expect("obj set");
    let hs: mlua::Table = lua
        .load(script)
        .set_name(kind)
        .eval()
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
    (
        hs.get::<String>("status").expect("status"),
        hs.get::<Option<String>>("message")
            .ok()
            .flatten()
            .unwrap_or_default(),
    )
}

fn as_json(obj: &impl serde::Serialize) -> Value {
    serde_json::to_value(obj).expect("an object")
}

/// Argo CD's layout: one folder per kind, with `health.lua`, `health_test.yaml` and `testdata/`.
fn layout(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("argocd/resource_customizations/tanium-operator.dev")
        .join(kind)
}

/// One judged object: a `health_test.yaml` case.
struct Case {
    kind: &'static str,
    name: String,
    obj: Value,
    status: String,
    message: String,
}

/// `health_test.yaml` as Argo CD's harness reads it.
#[derive(serde::Deserialize, serde::Serialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: Expected,
    input_path: String,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Expected {
    status: String,
    message: String,
}

fn health_tests(kind: &str) -> HealthTests {
    let path = layout(kind).join("health_test.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The live run's cases agree with the checked-in ones (by name, on the health status; messages carry ids), or,
/// with `TANIUM_WRITE_ARGOCD_TESTDATA=1`, become them.
fn keep_as_testdata(cases: &[Case]) {
    let write = std::env::var("TANIUM_WRITE_ARGOCD_TESTDATA").is_ok_and(|v| v == "1");
    for (kind, _) in HEALTH_CHECKS {
        let mine: Vec<&Case> = cases.iter().filter(|c| c.kind == kind).collect();
        assert!(!mine.is_empty(), "{kind}: no case");
        if write {
            let dir = layout(kind).join("testdata");
            std::fs::create_dir_all(&dir).expect("testdata folder");
            let mut tests = Vec::new();
            for c in &mine {
                let mut obj = c.obj.clone();
                // What changes from run to run and says nothing to a health check.
                if let Some(meta) = obj["metadata"].as_object_mut() {
                    for volatile in [
                        "managedFields",
                        "uid",
                        "resourceVersion",
                        "creationTimestamp",
                    ] {
                        meta.remove(volatile);
                    }
                }
                let file = format!("testdata/{}.yaml", c.name);
                let yaml = serde_yaml_ng::to_string(&obj).expect("YAML");
                std::fs::write(layout(kind).join(&file), yaml).expect("testdata written");
                tests.push(HealthTest {
                    health_status: Expected {
                        status: c.status.clone(),
                        message: c.message.clone(),
                    },
                    input_path: file,
                });
            }
            let yaml = serde_yaml_ng::to_string(&HealthTests { tests }).expect("YAML");
            std::fs::write(layout(kind).join("health_test.yaml"), yaml).expect("written");
            continue;
        }
        let checked_in = health_tests(kind);
        for c in mine {
            let file = format!("testdata/{}.yaml", c.name);
            let case = checked_in
                .tests
                .iter()
                .find(|t| t.input_path == file)
                .unwrap_or_else(|| {
                    panic!("{kind}: no {file} in health_test.yaml; run with TANIUM_WRITE_ARGOCD_TESTDATA=1")
                });
            assert_eq!(
                case.health_status.status, c.status,
                "{kind} {file}: the checked-in case and a real reconcile disagree"
            );
        }
    }
}

/// Each kind's `health_test.yaml`, run as Argo CD's harness runs it: every input file judged, status and message.
#[test]
fn health_tests_pass_as_argo_cd_runs_them() {
    for (kind, _) in HEALTH_CHECKS {
        let tests = health_tests(kind);
        assert!(tests.tests.len() >= 3, "{kind}: too few cases");
        let mut statuses = std::collections::BTreeSet::new();
        for t in &tests.tests {
            let path = layout(kind).join(&t.input_path);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let obj: Value = serde_yaml_ng::from_str(&text).expect("YAML");
            let (status, message) = health(kind, &obj);
            assert_eq!(
                (&status, &message),
                (&t.health_status.status, &t.health_status.message),
                "{kind} {}",
                t.input_path
            );
            statuses.insert(status);
        }
        assert!(statuses.len() >= 2, "{kind}: one status only: {statuses:?}");
    }
}

#[tokio::test]
async fn each_kind_is_judged_in_each_state_it_reaches() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    // Before the operator has seen it.
    let fresh = common::example("tag-by-endpoint-id");
    assert_eq!(health("TaniumAction", &fresh).0, "Progressing");
    assert_eq!(
        health("TaniumTag", &common::example("tag-linux-servers")).0,
        "Progressing"
    );
    assert_eq!(
        health(
            "TaniumEndpointInspection",
            &common::example("inspect-tanium-server")
        )
        .0,
        "Progressing"
    );

    // Connection objects the operator has not looked at yet.
    let actions = env.namespace("argo").await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), "argo");
    let token: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "argo-token"}, "stringData": {"token": common::TOKEN}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &token)
        .await
        .unwrap();
    let refused: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "refused-token"}, "stringData": {"token": "not-a-token-the-gateway-knows"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &refused)
        .await
        .unwrap();
    let namespaced: Api<TaniumConnection> = Api::namespaced(env.client.clone(), "argo");
    let cluster: Api<ClusterTaniumConnection> = Api::all(env.client.clone());
    for (name, secret) in [
        ("answers", "argo-token"),
        ("no-secret", "missing-token"),
        ("refused", "refused-token"),
    ] {
        let spec = json!({"gatewayUrl": env.sim.url(), "tokenSecretRef": {"name": secret}});
        let c: TaniumConnection = serde_json::from_value(json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumConnection",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        namespaced.create(&PostParams::default(), &c).await.unwrap();
        let mut spec = spec.clone();
        spec["tokenSecretRef"]["namespace"] = json!("argo");
        spec["namespaces"] = json!(["argo"]);
        let c: ClusterTaniumConnection = serde_json::from_value(json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "ClusterTaniumConnection",
            "metadata": {"name": format!("argo-{name}")}, "spec": spec
        }))
        .unwrap();
        cluster.create(&PostParams::default(), &c).await.unwrap();
    }
    let mut cases: Vec<Case> = Vec::new();
    let unseen = as_json(&namespaced.get("answers").await.unwrap());
    assert_eq!(health("TaniumConnection", &unseen).0, "Progressing");
    let unseen_cluster = as_json(&cluster.get("argo-answers").await.unwrap());
    for (kind, obj) in [
        ("TaniumConnection", unseen),
        ("ClusterTaniumConnection", unseen_cluster),
    ] {
        let (status, message) = health(kind, &obj);
        assert_eq!(status, "Progressing");
        cases.push(Case {
            kind,
            name: "not-looked-at".into(),
            obj,
            status,
            message,
        });
    }

    env.start_controller();
    let phase_is = |p: &'static str| {
        move |o: &tanium_operator::crd::TaniumAction| common::phase(o).as_deref() == Some(p)
    };
    let mut seen = Vec::new();
    for (example, patch, phase, expected) in [
        ("tag-by-endpoint-id", json!({}), "Completed", "Healthy"),
        (
            "needs-preview-approval",
            json!({}),
            "AwaitingPreviewApproval",
            "Suspended",
        ),
        ("blocked-by-max-targets", json!({}), "Blocked", "Degraded"),
        ("recurring-until-end", json!({}), "Running", "Healthy"),
        (
            "tag-by-computer-name",
            json!({"spec": {"suspend": true}}),
            "Suspended",
            "Suspended",
        ),
    ] {
        let mut manifest = common::example(example);
        json_patch::merge(&mut manifest, &patch);
        let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
        env.create(&actions, manifest).await;
        let obj = env.wait_for(&actions, &name, phase, phase_is(phase)).await;
        let (status, message) = health("TaniumAction", &as_json(&obj));
        assert_eq!(status, expected, "{name} ({phase}): {message}");
        assert!(!message.is_empty(), "{name}: a message");
        seen.push(format!("TaniumAction {name} {phase}: {status}: {message}"));
        cases.push(Case {
            kind: "TaniumAction",
            name: name.clone(),
            obj: as_json(&obj),
            status,
            message,
        });
    }

    let tags: Api<TaniumTag> = Api::namespaced(env.client.clone(), "argo");
    for (name, suspend, expected) in [("in-sync", false, "Healthy"), ("paused", true, "Suspended")]
    {
        let tag: TaniumTag = serde_json::from_value(json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumTag", "metadata": {"name": name},
            "spec": {"tags": [name], "targets": {"endpoints": ["274177"]}, "interval": "2s", "suspend": suspend}
        }))
        .unwrap();
        tags.create(&PostParams::default(), &tag).await.unwrap();
        let want = if suspend {
            TagPhase::Suspended
        } else {
            TagPhase::InSync
        };
        let obj = env
            .wait_until(&tags, name, "its phase", |t| {
                t.status.as_ref().is_some_and(|s| s.phase == Some(want))
            })
            .await;
        let (status, message) = health("TaniumTag", &as_json(&obj));
        assert_eq!(status, expected, "{name}: {message}");
        seen.push(format!("TaniumTag {name}: {status}: {message}"));
        cases.push(Case {
            kind: "TaniumTag",
            name: name.to_owned(),
            obj: as_json(&obj),
            status,
            message,
        });
    }
    let blocked: TaniumTag = serde_json::from_value(json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumTag", "metadata": {"name": "too-many"},
        "spec": {"tags": ["x"], "targets": {"filter": {"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Windows"}},
                 "interval": "2s", "safety": {"maxTargets": 1}}
    }))
    .unwrap();
    tags.create(&PostParams::default(), &blocked).await.unwrap();
    let obj = env
        .wait_until(&tags, "too-many", "Blocked", |t| {
            t.status
                .as_ref()
                .is_some_and(|s| s.phase == Some(TagPhase::Blocked))
        })
        .await;
    let (status, message) = health("TaniumTag", &as_json(&obj));
    assert_eq!(status, "Degraded");
    cases.push(Case {
        kind: "TaniumTag",
        name: "too-many".into(),
        obj: as_json(&obj),
        status,
        message,
    });

    let inspections: Api<TaniumEndpointInspection> = Api::namespaced(env.client.clone(), "argo");
    for (name, spec, expected) in [
        (
            "reads",
            json!({"endpoint": {"id": "12323"}, "collect": {"performance": true}}),
            "Healthy",
        ),
        (
            "nobody",
            json!({"endpoint": {"id": "999999"}, "collect": {"performance": true}}),
            "Degraded",
        ),
        (
            "ends-notepad",
            json!({"endpoint": {"id": "12323"}, "collect": {"processes": {}}, "killProcess": {"pid": 7056, "name": "notepad.exe"}}),
            "Healthy",
        ),
        (
            "ends-nothing",
            json!({"endpoint": {"id": "21212"}, "killProcess": {"pid": 999999, "name": "ghost"}}),
            "Healthy",
        ),
    ] {
        let obj: TaniumEndpointInspection = serde_json::from_value(json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumEndpointInspection",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        inspections
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
        let obj = env
            .wait_until(&inspections, name, "read or refused", |o| {
                o.status.as_ref().is_some_and(|s| {
                    // Past "generation 1 is being reconciled": read, or refused.
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.reason != "Progressing")
                        && s.kill.as_ref().is_none_or(|k| {
                            k.state != tanium_operator::crd::inspection::KillState::Requested
                        })
                })
            })
            .await;
        let (status, message) = health("TaniumEndpointInspection", &as_json(&obj));
        assert_eq!(status, expected, "{name}: {message}");
        if name == "ends-nothing" {
            let kill = obj.status.as_ref().and_then(|s| s.kill.clone()).unwrap();
            assert_eq!(
                Some(message.clone()),
                kill.message,
                "a kill that found nothing says so"
            );
        }
        seen.push(format!(
            "TaniumEndpointInspection {name}: {status}: {message}"
        ));
        cases.push(Case {
            kind: "TaniumEndpointInspection",
            name: name.to_owned(),
            obj: as_json(&obj),
            status,
            message,
        });
    }
    // A kill whose outcome is unknown: Degraded whatever Ready says (the state comes from the same status shape).
    let mut unknown = as_json(&inspections.get("ends-notepad").await.unwrap());
    unknown["status"]["kill"]["state"] = json!("Unknown");
    unknown["status"]["kill"]["message"] = json!("may or may not have been ended");
    assert_eq!(
        health("TaniumEndpointInspection", &unknown),
        ("Degraded".into(), "may or may not have been ended".into())
    );
    // The connection objects, looked at: the one whose Gateway answers is Healthy; a missing Secret or a refused
    // token is Degraded, with the reason's message.
    let looked_at = |s: Option<&tanium_operator::crd::ConnectionStatus>| {
        s.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready"))
    };
    for (name, expected, reason) in [
        ("answers", "Healthy", "Connected"),
        ("no-secret", "Degraded", "TokenSecretUnreadable"),
        ("refused", "Degraded", "TokenRejected"),
    ] {
        let c = env
            .wait_until(&namespaced, name, "looked at", |c: &TaniumConnection| {
                looked_at(c.status.as_ref())
            })
            .await;
        let cc = env
            .wait_until(
                &cluster,
                &format!("argo-{name}"),
                "looked at",
                |c: &ClusterTaniumConnection| looked_at(c.status.as_ref()),
            )
            .await;
        for (kind, obj) in [
            ("TaniumConnection", as_json(&c)),
            ("ClusterTaniumConnection", as_json(&cc)),
        ] {
            assert_eq!(
                obj["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                    .map(|c| c["reason"].clone()),
                Some(json!(reason)),
                "{kind} {name}"
            );
            let (status, message) = health(kind, &obj);
            assert_eq!(status, expected, "{kind} {name}: {message}");
            assert!(!message.is_empty(), "{kind} {name}: a message");
            seen.push(format!("{kind} {name}: {status}: {message}"));
            cases.push(Case {
                kind,
                name: name.to_owned(),
                obj,
                status,
                message,
            });
        }
    }
    println!("{}", seen.join("\n"));
    keep_as_testdata(&cases);
    env.stop_controller();
}

/// Argo CD wants a script per kind; the two connection kinds' are one check, and stay one (their headers aside).
#[test]
fn both_connection_kinds_are_judged_alike() {
    let body = |kind: &str| -> String {
        let lua = HEALTH_CHECKS
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, lua)| *lua)
            .unwrap_or_default();
        lua.lines()
            .filter(|l| {
                !l.starts_with("-- Argo CD health check for") && !l.starts_with("-- (argocd-cm key")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(!body("TaniumConnection").is_empty());
    assert_eq!(body("TaniumConnection"), body("ClusterTaniumConnection"));
}

/// The operator's token trouble shows on every kind as Degraded, with its message.
#[test]
fn token_trouble_is_degraded_for_every_kind() {
    for (kind, _) in HEALTH_CHECKS {
        let obj = json!({
            "metadata": {"name": "x", "generation": 1},
            "status": {"phase": "Running", "observedGeneration": 1, "conditions": [
                {"type": "Ready", "status": "True", "reason": "Inspected", "message": "fine"},
                {"type": "GatewayToken", "status": "False", "reason": "TokenRotationLost", "message": "put a token in"}
            ]}
        });
        assert_eq!(
            health(kind, &obj),
            ("Degraded".into(), "put a token in".into()),
            "{kind}"
        );
    }
}

/// `kubectl tanium argocd-health` prints the scripts under the keys Argo CD reads.
#[test]
fn the_plugin_prints_the_argocd_cm_patch() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-tanium"))
        .arg("argocd-health")
        .env_remove("TANIUM_TOKEN")
        .output()
        .expect("kubectl-tanium runs");
    assert!(out.status.success());
    let patch: Value = serde_yaml_ng::from_slice(&out.stdout).expect("YAML");
    for (kind, lua) in HEALTH_CHECKS {
        assert_eq!(patch["data"][key(kind)], json!(lua), "{kind}");
    }
    assert_eq!(
        key("TaniumTag"),
        "resource.customizations.health.tanium-operator.dev_TaniumTag"
    );
}
