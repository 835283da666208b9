//! Past one replica: shards by label selector and by namespace set, each with its own controllers, on a real
//! kube-apiserver + etcd and tanium-sim. Each shard deploys its own objects once, objects no shard names stay with
//! the main one, an object moved between shards deploys once, and a new token wakes what a rejected one held.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Env, TOKEN, fast_timing, phase, ready_reason};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tanium_operator::controller::shard::SHARD_LABEL;
use tanium_operator::controller::{Config, Context, Policy, Shard};
use tanium_operator::crd::{APPROVED_PREVIEW_ANNOTATION, TaniumAction};
use tanium_sim::TokenUser;

const BLUE_TOKEN: &str = "token-shard-blue-4c1d";

fn manifest(name: &str, shard: Option<&str>, spec: serde_json::Value) -> serde_json::Value {
    let labels = shard.map_or(json!({}), |s| json!({ SHARD_LABEL: s }));
    json!({"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
           "metadata": {"name": name, "labels": labels}, "spec": spec})
}

fn tag_one_machine() -> serde_json::Value {
    json!({"package": {"name": "Custom Tagging - Add Tags", "params": ["sharded"]},
           "targets": {"actionGroup": {"name": "All Computers"},
                       "filter": {"any": true, "filters": [
                           {"sensor": {"name": "Computer Name"}, "op": "EQ", "value": "testmachine999"}]}}})
}

fn completed(o: &TaniumAction) -> bool {
    phase(o).as_deref() == Some("Completed")
}

/// Controllers of one more shard, in-process beside the environment's own, stopped when dropped.
struct ShardController {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ShardController {
    fn start(env: &Env, token: &str, shard: Shard) -> Self {
        let ctx = Arc::new(Context::new(
            env.client.clone(),
            env.gateway(token),
            Config {
                timing: fast_timing(),
                shard,
                ..Config::default()
            },
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tanium_operator::runtime::run(ctx, async {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            task,
        }
    }
}

impl Drop for ShardController {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// Who deployed this object, by the Gateway user of its committed actionPerform(s).
fn deployed_by(env: &Env, obj: &TaniumAction) -> Vec<String> {
    let name = common::action_name_needle(obj);
    env.sim
        .sim()
        .audit()
        .into_iter()
        .filter(|e| e.operation == "actionPerform" && e.outcome.is_committed())
        .filter(|e| {
            e.input
                .pointer("/input/name")
                .and_then(|v| v.as_str())
                .is_some_and(|n| n == name)
        })
        .map(|e| e.user)
        .collect()
}

#[tokio::test]
async fn label_shards_split_the_objects_and_an_object_moved_between_them_deploys_once() {
    let Some(mut env) = Env::start(Policy::default(), |c| {
        c.tokens.push(TokenUser::new(BLUE_TOKEN, "shard-blue"));
    })
    .await
    else {
        return;
    };
    // The chart's layout: the main Deployment keeps what no listed shard selects.
    env.start_controller_with(env.client.clone(), TOKEN, |c| {
        c.shard.label_selector = Some(format!("{SHARD_LABEL} notin (blue)"));
    });
    let _blue = ShardController::start(
        &env,
        BLUE_TOKEN,
        Shard {
            label_selector: Some(format!("{SHARD_LABEL}=blue")),
            ..Shard::default()
        },
    );
    let api = env.namespace("sharded").await;

    let cases = [
        ("main-1", None, "operator"),
        ("main-2", None, "operator"),
        ("blue-1", Some("blue"), "shard-blue"),
        ("blue-2", Some("blue"), "shard-blue"),
        ("blue-3", Some("blue"), "shard-blue"),
        // A shard that does not exist: the main Deployment's.
        ("red-1", Some("red"), "operator"),
    ];
    for (name, shard, _) in cases {
        env.create(&api, manifest(name, shard, tag_one_machine()))
            .await;
    }
    for (name, _, user) in cases {
        let obj = env.wait_for(&api, name, "Completed", completed).await;
        assert_eq!(deployed_by(&env, &obj), vec![user.to_owned()], "{name}");
    }

    // Held by the main shard for an approval, then moved to blue and approved at once: blue deploys it, once.
    let mut held = tag_one_machine();
    held["safety"] = json!({"requirePreviewApproval": true});
    env.create(&api, manifest("moved", None, held)).await;
    let waiting = env
        .wait_for(&api, "moved", "AwaitingPreviewApproval", |o| {
            phase(o).as_deref() == Some("AwaitingPreviewApproval")
        })
        .await;
    let digest = waiting
        .status
        .and_then(|s| s.preview)
        .map(|p| p.digest)
        .expect("preview digest");
    api.patch(
        "moved",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {
            "labels": {SHARD_LABEL: "blue"},
            "annotations": {APPROVED_PREVIEW_ANNOTATION: digest},
        }})),
    )
    .await
    .expect("relabelled and approved");
    let moved = env.wait_for(&api, "moved", "Completed", completed).await;
    assert_eq!(deployed_by(&env, &moved), vec!["shard-blue".to_owned()]);
    env.assert_exactly_once();
}

#[tokio::test]
async fn a_namespace_set_reconciles_its_namespaces_and_nothing_else() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.start_controller_with(env.client.clone(), TOKEN, |c| {
        c.shard.namespaces = vec!["set-a".into(), "set-b".into()];
    });
    let mut apis = Vec::new();
    for ns in ["set-a", "set-b", "outside"] {
        let api = env.namespace(ns).await;
        env.create(&api, manifest("tag", None, tag_one_machine()))
            .await;
        apis.push(api);
    }
    for api in &apis[..2] {
        env.wait_for(api, "tag", "Completed", completed).await;
    }
    // Both in the set are done; give the one outside it the time they took, and more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outside = apis[2].get("tag").await.expect("get");
    assert!(
        // The schema's default status ("not observed") is all it has.
        outside.status.as_ref().is_none_or(|s| s
            == &tanium_operator::crd::TaniumActionStatus {
                observed_generation: Some(0),
                ..Default::default()
            })
            && outside.metadata.finalizers.is_none(),
        "an object outside the namespace set was touched: {outside:#?}"
    );
    assert!(deployed_by(&env, &outside).is_empty());
}

#[tokio::test]
async fn a_new_token_wakes_the_objects_a_rejected_one_held_at_once() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    // A person's problem is looked at again only after ten minutes: far longer than this test waits.
    let ctx = env.start_controller_with(env.client.clone(), "token-revoked", |c| {
        c.timing.permanent_error = Duration::from_secs(600);
    });
    let api = env.namespace("token-wake").await;
    env.create(&api, manifest("held", None, tag_one_machine()))
        .await;
    env.wait_for(&api, "held", "TokenRejected", |o| {
        ready_reason(o).as_deref() == Some("TokenRejected")
    })
    .await;

    // As a re-read Secret file (or another shard's rotation) puts a valid token in.
    ctx.connections
        .own()
        .gateway
        .set_token(secrecy::SecretString::from(TOKEN.to_owned()));
    let done = env.wait_for(&api, "held", "Completed", completed).await;
    assert_eq!(deployed_by(&env, &done), vec!["operator".to_owned()]);
}

#[tokio::test]
async fn a_label_selector_the_apiserver_cannot_parse_is_refused_at_start() {
    let Some(env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let bad = Shard {
        label_selector: Some(format!("{SHARD_LABEL} in ((blue")),
        ..Shard::default()
    };
    let refused = bad.check(&env.client).await.expect_err("refused");
    assert!(refused.contains("is not valid"), "{refused}");
    let good = Shard {
        label_selector: Some(format!("{SHARD_LABEL} notin (blue,green)")),
        namespaces: vec!["a".into()],
    };
    good.check(&env.client)
        .await
        .expect("a valid selector passes");
}

#[tokio::test]
async fn an_object_that_leaves_the_shard_and_comes_back_unchanged_is_followed_again() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.start_controller_with(env.client.clone(), TOKEN, |c| {
        c.shard.label_selector = Some(format!("{SHARD_LABEL} notin (blue)"));
    });
    let api = env.namespace("round-trip").await;
    // Open for a while (distributed over 200 sim seconds, 10 s here).
    let mut spec = tag_one_machine();
    spec["schedule"] = json!({"distributeSeconds": 200});
    env.create(&api, manifest("traveller", None, spec)).await;
    env.wait_for(&api, "traveller", "Running", |o| {
        phase(o).as_deref() == Some("Running")
    })
    .await;
    // Out to a shard with no replica, and back: its generation and annotations are what they were.
    for labels in [json!({ SHARD_LABEL: "blue" }), json!({ SHARD_LABEL: null })] {
        api.patch(
            "traveller",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await
        .expect("relabelled");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let done = env
        .wait_for(&api, "traveller", "Completed", completed)
        .await;
    assert_eq!(deployed_by(&env, &done), vec!["operator".to_owned()]);
}
