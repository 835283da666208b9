//! The Helm chart: lint clean, renders, every rendered object is accepted by a real kube-apiserver, and its RBAC
//! is exactly enough: the operator, running as the chart's ServiceAccount, does all its work and is refused what
//! it does not need.

mod common;

use std::process::Command;

use common::{Env, TOKEN};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tanium_operator::controller::Policy;
use tanium_operator::crd::tag::TagPhase;
use tanium_operator::crd::{TaniumAction, TaniumTag};
use tanium_testenv::Identity;

use common::{CHART, CHART_NAMESPACE as NAMESPACE, CHART_RELEASE as RELEASE};

#[tokio::test]
async fn chart_renders_applies_and_its_rbac_is_just_enough() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let gateway = format!("--set=gateway.url={}", env.sim.url());
    let lint = env.helm(&["lint", CHART, "--strict", &gateway]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let rendered = env.render_chart();
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(
            rendered.contains(&format!("kind: {kind}\n")),
            "chart renders a {kind}"
        );
    }
    assert!(
        rendered.contains("readOnlyRootFilesystem: true")
            && rendered.contains("runAsNonRoot: true")
    );
    assert!(
        !rendered.contains("kind: ServiceMonitor"),
        "ServiceMonitor only when enabled"
    );
    let kube_version = format!("--kube-version={}", tanium_testenv::K8S_VERSION);
    let with_monitor = env.helm(&[
        "template",
        RELEASE,
        CHART,
        &kube_version,
        &gateway,
        "--set=metrics.serviceMonitor.enabled=true",
    ]);
    assert!(with_monitor.contains("kind: ServiceMonitor"));
    // Watching one namespace grants nothing cluster-wide: a Role there instead of a ClusterRole.
    let scoped = env.helm(&[
        "template",
        RELEASE,
        CHART,
        &kube_version,
        &gateway,
        "--set=watchNamespace=team",
    ]);
    assert!(!scoped.contains("kind: ClusterRole"), "{scoped}");
    assert!(
        scoped.contains("kind: Role\nmetadata:\n  name: tanium-operator\n  namespace: team"),
        "{scoped}"
    );
    // Without a Gateway URL the chart refuses to render.
    let helm_bin = env.cp.binaries().helm().unwrap();
    let refused = Command::new(&helm_bin)
        .args(["template", RELEASE, CHART, &kube_version])
        .output()
        .unwrap();
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("gateway.url is required")
    );

    // Several replicas without leader election would all reconcile: refused too.
    let no_election = Command::new(&helm_bin)
        .args([
            "template",
            RELEASE,
            CHART,
            &kube_version,
            &gateway,
            "--set=leaderElection.enabled=false",
        ])
        .output()
        .unwrap();
    assert!(
        !no_election.status.success()
            && String::from_utf8_lossy(&no_election.stderr).contains("needs leaderElection")
    );

    // Every rendered object is accepted by the apiserver.
    let applied = env.apply_chart();
    println!("{applied}");
    assert!(
        applied.contains("deployment.apps/tanium-operator serverside-applied"),
        "{applied}"
    );

    // The operator, as the chart's ServiceAccount, does its work: a TaniumAction, a TaniumTag and a
    // TaniumEndpointInspection, end to end.
    let sa = Identity::service_account(NAMESPACE, "tanium-operator");
    let as_operator = env.cp.client_for(&sa).await.unwrap();
    env.start_controller_as(as_operator.clone(), TOKEN);
    env.namespace("team").await;
    let actions: Api<TaniumAction> = Api::namespaced(env.client.clone(), "team");
    env.create(&actions, common::example("tag-by-endpoint-id"))
        .await;
    let tags: Api<TaniumTag> = Api::namespaced(env.client.clone(), "team");
    let tag: TaniumTag = serde_json::from_value(json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumTag", "metadata": {"name": "pinned"},
        "spec": {"tags": ["pinned"], "targets": {"endpoints": ["274177"]}, "interval": "2s"}
    }))
    .unwrap();
    tags.create(&PostParams::default(), &tag).await.unwrap();
    let inspections: Api<tanium_operator::crd::TaniumEndpointInspection> =
        Api::namespaced(env.client.clone(), "team");
    let inspection: tanium_operator::crd::TaniumEndpointInspection =
        serde_json::from_value(common::example("inspect-tanium-server")).unwrap();
    inspections
        .create(&PostParams::default(), &inspection)
        .await
        .unwrap();
    env.wait_for(&actions, "tag-by-endpoint-id", "Completed", |o| {
        common::phase(o).as_deref() == Some("Completed")
    })
    .await;
    env.wait_until(&tags, "pinned", "in sync", |t| {
        t.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(TagPhase::InSync))
    })
    .await;
    env.wait_until(&inspections, "inspect-tanium-server", "inspected", |i| {
        i.status
            .as_ref()
            .is_some_and(|s| tanium_operator::crd::ready_reason_is(&s.conditions, "Inspected"))
    })
    .await;
    // Published as the ServiceAccount.
    env.wait_for_event("team", "tag-by-endpoint-id", |r, _| r == "Deployed")
        .await;

    // … and is refused what it does not need.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(as_operator.clone(), NAMESPACE);
    assert!(
        forbidden(secrets.list(&ListParams::default()).await),
        "no Secrets"
    );
    let create: Api<TaniumAction> = Api::namespaced(as_operator.clone(), "team");
    let obj: TaniumAction =
        serde_json::from_value(common::example("tag-by-computer-name")).unwrap();
    assert!(
        forbidden(create.create(&PostParams::default(), &obj).await),
        "it never creates TaniumActions"
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(as_operator, "team");
    assert!(
        forbidden(pods.list(&ListParams::default()).await),
        "no Pods"
    );
    env.assert_exactly_once();
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(ref s)) if s.code == 403)
}
