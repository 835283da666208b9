//! Safe by default: the operator binary run with no policy flag at all (and the chart's defaults, which say the same)
//! lets a namespace user's TaniumAction or TaniumTag round reach at most `DEFAULT_APPROVAL_THRESHOLD` endpoints
//! without a second act: above it, nothing is deployed until a person approves the preview.

mod common;

use std::time::Duration;

use common::{BINARY_DEFAULTS, Env, OperatorProcess};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tanium_operator::controller::{DEFAULT_APPROVAL_THRESHOLD, Policy};
use tanium_operator::crd::tag::TagPhase;
use tanium_operator::crd::{APPROVED_PREVIEW_ANNOTATION, TaniumTag};

const LINUX: &str = r#"{"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Linux"}"#;

#[tokio::test]
async fn above_the_default_threshold_nothing_deploys_until_approved() {
    let Some(env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    // The chart's default is the binary's.
    let rendered = env.render_chart();
    let threshold = rendered
        .split("\n---")
        .filter_map(|doc| serde_yaml_ng::from_str::<Value>(doc).ok())
        .filter(|d| d["kind"] == "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|e| e["name"] == "TANIUM_APPROVAL_THRESHOLD")
        .and_then(|e| e["value"].as_str().map(str::to_owned));
    assert_eq!(
        threshold,
        Some(DEFAULT_APPROVAL_THRESHOLD.to_string()),
        "the chart's default"
    );

    let dir = tempfile::tempdir().expect("a directory");
    let _operator = OperatorProcess::spawn(
        &env,
        env.cp.kubeconfig_path(),
        dir.path(),
        "operator",
        &[BINARY_DEFAULTS],
    );
    let api = env.namespace("team").await;
    let linux: Value = serde_json::from_str(LINUX).expect("a filter");
    let action = |name: &str, targets: Value| {
        json!({"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction", "metadata": {"name": name},
               "spec": {"package": {"name": "Custom Tagging - Add Tags", "params": [name]}, "targets": targets}})
    };
    env.create(&api, action("one-box", json!({"endpoints": ["274177"]})))
        .await;
    env.create(&api, action("every-linux-box", json!({"filter": linux})))
        .await;

    // At or below the threshold: no second act needed.
    let one = env
        .wait_for(&api, "one-box", "Completed", common::phase_is("Completed"))
        .await;
    assert_eq!(env.performs_for(&one), 1);
    // Above it: held, nothing sent, and the message says how to approve.
    let held = env
        .wait_for(
            &api,
            "every-linux-box",
            "AwaitingPreviewApproval",
            common::phase_is("AwaitingPreviewApproval"),
        )
        .await;
    let message = common::ready_message(&held).unwrap_or_default();
    assert!(
        message.contains(&format!(
            "approval threshold ({DEFAULT_APPROVAL_THRESHOLD})"
        )) && message.contains("kubectl annotate taniumaction every-linux-box"),
        "{message}"
    );
    let count = held
        .status
        .as_ref()
        .and_then(|s| s.preview.as_ref())
        .map(|p| p.count)
        .unwrap_or_default();
    assert!(count > DEFAULT_APPROVAL_THRESHOLD, "{count}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.performs_for(&held), 0, "deployed without approval");

    // The easy path: kubectl tanium approve.
    let approve = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-tanium"))
        .args(["approve", "-n", "team", "every-linux-box", "--yes"])
        .env("KUBECONFIG", env.cp.kubeconfig_path())
        .output()
        .expect("kubectl-tanium runs");
    assert!(
        approve.status.success(),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    let done = env
        .wait_for(
            &api,
            "every-linux-box",
            "Completed",
            common::phase_is("Completed"),
        )
        .await;
    assert_eq!(env.performs_for(&done), 1);

    // A TaniumTag round counts too: held with the digest to approve, then tagged once approved.
    let tags: Api<TaniumTag> = Api::namespaced(env.client.clone(), "team");
    let tag: TaniumTag = serde_json::from_value(json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumTag", "metadata": {"name": "linux"},
        "spec": {"tags": ["Linux-Fleet"], "targets": {"filter": linux}, "interval": "2s"}
    }))
    .expect("a TaniumTag");
    tags.create(&PostParams::default(), &tag)
        .await
        .expect("created");
    let waiting = env
        .wait_until(&tags, "linux", "AwaitingPreviewApproval", |t| {
            t.status
                .as_ref()
                .is_some_and(|s| s.phase == Some(TagPhase::AwaitingPreviewApproval))
        })
        .await;
    let status = waiting.status.expect("a status");
    assert_eq!(status.rounds, 0, "no round was sent");
    let digest = status.round_digest.expect("the round's digest");
    tags.patch(
        "linux",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {APPROVED_PREVIEW_ANNOTATION: digest}}})),
    )
    .await
    .expect("approved");
    env.wait_until(&tags, "linux", "a round", |t| {
        t.status.as_ref().is_some_and(|s| s.rounds >= 1)
    })
    .await;
    env.assert_exactly_once();
}
