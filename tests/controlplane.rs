//! The test control plane is a real kube-apiserver: a CRD with a structural schema, CEL rules and a status
//! subresource is established, objects are created and their status patched, a watcher sees the change, and the
//! apiserver itself rejects objects that break the schema, the CEL rule or the immutability rule.
//!
//! Needs the binaries from `./scripts/k8s-test-bins.sh` (`./scripts/test` runs it); skipped loudly without them,
//! except in CI (`CI=true`), where that is a failure.

use std::io::Write as _;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{CustomResource, CustomResourceExt as _, KubeSchema};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tanium_testenv::Identity;
// kube-derive 5's KubeSchema names `schemars::Schema` without its `crates(schemars = ...)` path (a kube-derive
// slip); this import resolves it. The root package has no direct schemars dependency; tanium-testenv re-exports it.
use tanium_testenv::schemars;

const MANAGER: &str = "tanium-testenv-test";

/// A tiny test resource: `replicas` at most 10 (CEL), `owner` immutable once set (CEL transition rule).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "testenv.tanium.example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wdg",
    printcolumn = r#"{"name":"Owner","type":"string","jsonPath":".spec.owner"}"#,
    crates(schemars = "::tanium_testenv::schemars")
)]
#[x_kube(
    crates(schemars = "::tanium_testenv::schemars"),
    validation = Rule::new("self.replicas <= 10").message("replicas must be at most 10")
)]
#[schemars(crate = "::tanium_testenv::schemars")]
pub struct WidgetSpec {
    #[x_kube(validation = Rule::new("self == oldSelf").message("owner is immutable"))]
    pub owner: String,
    pub replicas: i32,
}

#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, tanium_testenv::schemars::JsonSchema,
)]
#[schemars(crate = "::tanium_testenv::schemars")]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    pub ready_replicas: i32,
}

/// Test output that the harness does not capture (so the apiserver version shows in `cargo test` output).
fn say(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "controlplane: {line}");
}

fn widget(name: &str, owner: &str, replicas: i32) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            owner: owner.into(),
            replicas,
        },
    )
}

/// Expects a 422 Invalid from the apiserver whose message contains every one of `needles`.
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, kube::Error>, needles: &[&str]) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                status.code, 422,
                "expected 422 Unprocessable Entity, got {status:?}"
            );
            assert_eq!(status.reason, "Invalid", "{status:?}");
            for needle in needles {
                assert!(
                    status.message.contains(needle),
                    "the apiserver's message lacks {needle:?}: {}",
                    status.message
                );
            }
            say(format!("rejected as expected (422): {}", status.message));
        }
        other => panic!("expected the apiserver to reject this with 422 Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn real_apiserver_validates_crds_status_and_watches() {
    let cp = tanium_testenv::require_control_plane!();
    let info = cp.version_info();
    say(format!(
        "kube-apiserver {} ({}, {}) at {}",
        info.git_version,
        info.platform,
        info.go_version,
        cp.server_url()
    ));
    assert!(
        cp.version().starts_with("v1."),
        "odd apiserver version {}",
        cp.version()
    );
    let client = cp.client();

    // The CRD, applied server-side, becomes Established.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Widget::crd();
    let crd_name = crd.metadata.name.clone().expect("crd name");
    crds.patch(
        &crd_name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the Widget CRD");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds.clone(), &crd_name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established within 30s")
    .expect("watching the CRD");
    say(format!("CRD {crd_name} established"));

    let widgets: Api<Widget> = Api::default_namespaced(client.clone());

    // A watcher on Widgets, started before anything exists.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let watch = tokio::spawn({
        let widgets = widgets.clone();
        async move {
            let mut stream = watcher(widgets, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(w) = stream.try_next().await.transpose() {
                if seen_tx.send(w.map_err(|e| e.to_string())).is_err() {
                    break;
                }
            }
        }
    });

    // Create (the new resource's endpoint can take a moment to appear after Established).
    let mut created = None;
    for _ in 0..100 {
        match widgets
            .create(&PostParams::default(), &widget("w1", "alice", 3))
            .await
        {
            Ok(w) => {
                created = Some(w);
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("creating a valid Widget: {e}"),
        }
    }
    let created = created.expect("the Widget endpoint did not appear within 10s");
    assert_eq!(created.spec.replicas, 3);
    assert!(created.status.is_none());

    // Status through the status subresource.
    let patched = widgets
        .patch_status(
            "w1",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "testenv.tanium.example.com/v1",
                "kind": "Widget",
                "status": { "readyReplicas": 3 },
            })),
        )
        .await
        .expect("patch the status subresource");
    assert_eq!(patched.status, Some(WidgetStatus { ready_replicas: 3 }));
    // The status subresource ignores spec changes, and the main resource ignores status changes.
    let ignored = widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "readyReplicas": 7 } })),
        )
        .await
        .expect("merge-patch the main resource");
    assert_eq!(ignored.status, Some(WidgetStatus { ready_replicas: 3 }));

    // The watcher sees the status change.
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = seen_rx.recv().await {
            let w = event.expect("watch stream error");
            if w.status.as_ref().map(|s| s.ready_replicas) == Some(3) {
                return w;
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("the watcher saw the status change within 20s");
    say(format!(
        "watcher saw {} with status {:?}",
        seen.metadata.name.as_deref().unwrap_or("?"),
        seen.status
    ));
    watch.abort();

    // Schema: a string where an integer belongs, through an untyped client (the typed one cannot express it).
    let untyped: Api<DynamicObject> =
        Api::default_namespaced_with(client.clone(), &ApiResource::erase::<Widget>(&()));
    let mut wrong_type = DynamicObject::new("wrong-type", &ApiResource::erase::<Widget>(&()));
    wrong_type.data = json!({ "spec": { "owner": "bob", "replicas": "three" } });
    assert_invalid(
        untyped.create(&PostParams::default(), &wrong_type).await,
        &["spec.replicas", "must be of type integer"],
    );
    // A missing required field.
    let mut missing = DynamicObject::new("missing-owner", &ApiResource::erase::<Widget>(&()));
    missing.data = json!({ "spec": { "replicas": 1 } });
    assert_invalid(
        untyped.create(&PostParams::default(), &missing).await,
        &["spec.owner", "Required value"],
    );
    // The CEL rule.
    assert_invalid(
        widgets
            .create(&PostParams::default(), &widget("too-many", "carol", 11))
            .await,
        &["replicas must be at most 10"],
    );
    // The transition rule: owner is immutable.
    assert_invalid(
        widgets
            .patch(
                "w1",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "owner": "mallory" } })),
            )
            .await,
        &["spec.owner", "owner is immutable"],
    );
    // ... while other fields may change.
    let scaled = widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 5 } })),
        )
        .await
        .expect("replicas are mutable");
    assert_eq!(
        scaled.spec,
        WidgetSpec {
            owner: "alice".into(),
            replicas: 5
        }
    );

    // RBAC is on: a ServiceAccount with no bindings may not read Widgets.
    let nobody = cp
        .client_for(&Identity::service_account("default", "nobody"))
        .await
        .expect("impersonating client");
    match Api::<Widget>::default_namespaced(nobody)
        .list(&Default::default())
        .await
    {
        Err(kube::Error::Api(s)) if s.is_forbidden() => {
            say(format!("RBAC denied as expected: {}", s.message))
        }
        other => panic!("expected 403 for an unbound ServiceAccount, got {other:?}"),
    }

    // The kubeconfig works for other processes (the pinned kubectl beside the apiserver, when there).
    if let Some(kubectl) = cp.binaries().kubectl() {
        let out = tokio::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(cp.kubeconfig_path())
            .args(["get", "widgets", "-o", "name"])
            .output()
            .await
            .expect("run kubectl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kubectl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.trim(), "widget.testenv.tanium.example.com/w1");
        say(format!("kubectl get widgets: {}", stdout.trim()));
    }
}
