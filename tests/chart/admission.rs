//! The admin policy refused at the door: the chart's ValidatingAdmissionPolicies make the real apiserver refuse a
//! disallowed object at once, with the reason, before the operator sees it; and the operator's own ServiceAccount
//! can change finalizers and status but never what an object asks for.

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tanium_operator::controller::Policy;
use tanium_operator::crd::{TaniumAction, TaniumTag};
use tanium_testenv::Identity;

use crate::common::{CHART_NAMESPACE, CHART_RELEASE, Env};

fn action(name: &str, package: &str, extra: Value) -> TaniumAction {
    let mut v = json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction", "metadata": {"name": name},
        "spec": {"package": {"name": package, "params": ["x"]}, "targets": {"endpoints": ["274177"]}}
    });
    json_patch::merge(&mut v, &extra);
    serde_json::from_value(v).expect("a TaniumAction")
}

/// The apiserver's answer to creating `obj` in `namespace` (dry run: nothing is stored).
async fn create(env: &Env, namespace: &str, obj: &TaniumAction) -> Result<(), String> {
    let api: Api<TaniumAction> = Api::namespaced(env.client.clone(), namespace);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    api.create(&dry, obj)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_disallowed_object_is_refused_by_the_apiserver_with_the_reason() {
    let Some(env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.kubectl(&["create", "namespace", CHART_NAMESPACE]);
    for ns in ["team-a", "team-b", "team-c"] {
        env.kubectl(&["create", "namespace", ns]);
    }
    let rendered = env.render_chart_with(&[
        "--set=policy.allowedNamespaces={team-a,team-c}",
        "--set=policy.allowedPackages={Custom Tagging - Add Tags,Custom Tagging - Remove Tags}",
        "--set=policy.maxTargetsCeiling=100",
        "--set=policy.tagBindings[0].prefix=team-a-*",
        "--set=policy.tagBindings[0].namespaces={team-a}",
    ]);
    env.apply_yaml(&rendered);

    let allowed = action("fine", "Custom Tagging - Add Tags", json!({}));
    // Policies take effect once the apiserver has compiled them: wait for the first refusal.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if create(&env, "team-b", &allowed).await.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the admission policies never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(create(&env, "team-a", &allowed).await, Ok(()));
    for (namespace, obj, says) in [
        (
            "team-b",
            allowed.clone(),
            "namespace team-b may not act on Tanium endpoints (the operator's admin policy allows: team-a, team-c)",
        ),
        (
            "team-a",
            action("kill", "Kill Process", json!({})),
            "package Kill Process is not allowed by the operator's admin policy",
        ),
        (
            "team-a",
            action(
                "wide",
                "Custom Tagging - Add Tags",
                json!({"spec": {"safety": {"maxTargets": 500}}}),
            ),
            "spec.safety.maxTargets is above the operator's ceiling of 100 endpoints",
        ),
    ] {
        let refused = create(&env, namespace, &obj).await.expect_err("refused");
        assert!(refused.contains(says), "{refused}");
        assert!(
            refused.contains("admin-policy"),
            "names the policy: {refused}"
        );
    }

    // A tag prefix bound to team-a: refused from team-c, before the operator could hold it.
    let tags: Api<TaniumTag> = Api::namespaced(env.client.clone(), "team-c");
    let tag = |tags: &[&str]| -> TaniumTag {
        serde_json::from_value(json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumTag", "metadata": {"name": "t"},
            "spec": {"tags": tags, "targets": {"endpoints": ["274177"]}}
        }))
        .expect("a TaniumTag")
    };
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let refused = tags
        .create(&dry, &tag(&["free", "team-a-pci"]))
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        refused.contains(
            "tag team-a-pci may be claimed only from the namespaces the operator's admin policy binds to its \
             prefix, not from team-c"
        ),
        "{refused}"
    );
    let own: Api<TaniumTag> = Api::namespaced(env.client.clone(), "team-a");
    own.create(&dry, &tag(&["free", "team-a-pci"]))
        .await
        .expect("team-a may claim its own prefix");

    // The operator's ServiceAccount: finalizers and status, never a spec.
    let api: Api<TaniumAction> = Api::namespaced(env.client.clone(), "team-a");
    api.create(&PostParams::default(), &allowed)
        .await
        .expect("created by a person");
    let sa = Identity::service_account(CHART_NAMESPACE, CHART_RELEASE);
    let as_operator: Api<TaniumAction> =
        Api::namespaced(env.cp.client_for(&sa).await.expect("a client"), "team-a");
    as_operator
        .patch(
            "fine",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["tanium-operator.dev/stop-action"]}})),
        )
        .await
        .expect("a finalizer is the operator's to add");
    let changed = as_operator
        .patch(
            "fine",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await;
    assert!(
        matches!(&changed, Err(kube::Error::Api(s)) if s.message.contains("never what an object asks for")),
        "{changed:?}"
    );
    let created = as_operator
        .create(
            &PostParams::default(),
            &action("mine", "Custom Tagging - Add Tags", json!({})),
        )
        .await;
    assert!(
        created.is_err(),
        "the operator never creates objects: {created:?}"
    );
}
