//! The chart's ClusterRoles for people: a viewer role that joins Kubernetes' `view`, and an author role that joins
//! nothing, so that editing a namespace never by itself lets anyone act on the fleet. Asked of the real apiserver's
//! authorizer. Aggregation (into `view`, and the built-in `edit`'s own rules) is the controller-manager's work,
//! which the test control plane does not run: the roles are bound directly, and which built-in role each joins is
//! read from its aggregation labels in the render.

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tanium_operator::controller::Policy;
use tanium_operator::crd::{APPROVED_PREVIEW_ANNOTATION, TaniumAction};
use tanium_testenv::Identity;

use super::{Check, wrong_answers};
use crate::common::{CHART_NAMESPACE, CHART_RELEASE, Env};

#[tokio::test]
async fn authors_are_bound_on_purpose_and_join_no_built_in_role() {
    let Some(env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let rendered = env.render_chart();
    let role = |suffix: &str| -> Value {
        rendered
            .split("\n---")
            .filter_map(|d| serde_yaml_ng::from_str::<Value>(d).ok())
            .find(|d| {
                d["kind"] == "ClusterRole"
                    && d["metadata"]["name"] == format!("{CHART_RELEASE}-{suffix}").as_str()
            })
            .unwrap_or_else(|| panic!("no {suffix} ClusterRole"))
    };
    let aggregates = |r: &Value| -> Vec<String> {
        r["metadata"]["labels"]
            .as_object()
            .map(|l| {
                l.keys()
                    .filter(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        aggregates(&role("viewer")),
        ["rbac.authorization.k8s.io/aggregate-to-view"]
    );
    for r in ["author", "approver"] {
        assert!(
            aggregates(&role(r)).is_empty(),
            "the {r} role joins no built-in role"
        );
    }

    env.apply_chart();
    env.kubectl(&["create", "namespace", "team"]);
    env.kubectl(&["create", "namespace", "elsewhere"]);
    for (binding, role, user) in [
        ("authors", format!("{CHART_RELEASE}-author"), "alice"),
        ("viewers", format!("{CHART_RELEASE}-viewer"), "victor"),
        ("approvers", format!("{CHART_RELEASE}-approver"), "bob"),
    ] {
        env.kubectl(&[
            "create",
            "rolebinding",
            binding,
            "-n",
            "team",
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
        ]);
    }
    const G: &str = "tanium-operator.dev";
    let team = Some("team");
    for (user, checks) in [
        (
            "alice",
            vec![
                Check::allow("create", G, "taniumactions", team),
                Check::allow("create", G, "taniumtags", team),
                Check::allow("create", G, "taniumendpointinspections", team),
                Check::allow("patch", G, "taniumactions", team),
                Check::deny("create", G, "taniumactions", Some("elsewhere")),
                Check::deny("patch", G, "taniumactions/status", team),
                Check::deny("approve", G, "taniumactions", team),
                Check::deny("approve", G, "taniumtags", team),
            ],
        ),
        (
            "bob",
            vec![
                Check::allow("approve", G, "taniumactions", team),
                Check::allow("approve", G, "taniumtags", team),
                Check::allow("patch", G, "taniumactions", team),
                Check::deny("create", G, "taniumactions", team),
                Check::deny("approve", G, "taniumactions", Some("elsewhere")),
            ],
        ),
        (
            "victor",
            vec![
                Check::allow("list", G, "taniumactions", team),
                Check::allow("watch", G, "taniumtags", team),
                Check::deny("create", G, "taniumactions", team),
                Check::deny("patch", G, "taniumactions", team),
                Check::deny("get", G, "taniumendpointinspections", team),
            ],
        ),
    ] {
        let client = env
            .cp
            .client_for(&Identity::user(user))
            .await
            .expect("a client for the user");
        let wrong = wrong_answers(&client, checks).await;
        assert!(wrong.is_empty(), "{user}:\n{}", wrong.join("\n"));
    }
}

/// The approval is a second person's act: an author cannot approve their own deployment (nor create it approved),
/// an approver can but may not change what an object asks for, and the operator's ServiceAccount cannot approve.
#[tokio::test]
async fn only_an_approver_sets_the_approval() {
    let Some(env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.apply_chart();
    env.kubectl(&["create", "namespace", "team"]);
    for (binding, role, user) in [
        ("authors", "author", "alice"),
        ("approvers", "approver", "bob"),
    ] {
        env.kubectl(&[
            "create",
            "rolebinding",
            binding,
            "-n",
            "team",
            &format!("--clusterrole={CHART_RELEASE}-{role}"),
            &format!("--user={user}"),
        ]);
    }
    let mut apis = Vec::new();
    for identity in [
        Identity::user("alice"),
        Identity::user("bob"),
        Identity::service_account(CHART_NAMESPACE, CHART_RELEASE),
    ] {
        let client = env.cp.client_for(&identity).await.expect("a client");
        apis.push(Api::<TaniumAction>::namespaced(client, "team"));
    }
    let [alice, bob, operator] = <[_; 3]>::try_from(apis).expect("three");
    let manifest = |name: &str, approved: bool| -> TaniumAction {
        let mut v = json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction", "metadata": {"name": name},
            "spec": {"package": {"name": "Custom Tagging - Add Tags", "params": ["x"]},
                     "targets": {"endpoints": ["274177"]}}
        });
        if approved {
            v["metadata"]["annotations"] = json!({APPROVED_PREVIEW_ANNOTATION: "sha256:abc"});
        }
        serde_json::from_value(v).expect("a TaniumAction")
    };
    let approve = |digest: &str| {
        Patch::Merge(json!({"metadata": {"annotations": {APPROVED_PREVIEW_ANNOTATION: digest}}}))
    };
    let refused = |result: Result<TaniumAction, kube::Error>, what: &str| match result {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{what}: {s:?}");
            assert!(
                s.message.contains("may not approve previews")
                    && s.message.contains("approver role"),
                "{what}: {}",
                s.message
            );
        }
        other => panic!("{what}: not refused: {other:?}"),
    };

    // Policies take effect once the apiserver has compiled them: wait for the first refusal.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    while alice
        .create(&dry, &manifest("approved", true))
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the approvers policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    refused(
        alice.create(&dry, &manifest("approved", true)).await,
        "an author creating an approved object",
    );
    alice
        .create(&PostParams::default(), &manifest("wide", false))
        .await
        .expect("an author creates");
    let p = PatchParams::default();
    refused(
        alice.patch("wide", &p, &approve("sha256:1")).await,
        "an author approving",
    );
    refused(
        operator.patch("wide", &p, &approve("sha256:1")).await,
        "the operator approving",
    );
    bob.patch("wide", &p, &approve("sha256:1"))
        .await
        .expect("an approver approves");
    // An approver may not change what it asks for (then approve the change alone).
    match bob
        .patch(
            "wide",
            &p,
            &Patch::Merge(json!({"spec": {"safety": {"maxTargets": 100000}}})),
        )
        .await
    {
        Err(kube::Error::Api(s)) => assert!(
            s.code == 403 && s.message.contains("approvers may only approve"),
            "{s:?}"
        ),
        other => panic!("an approver changed the spec: {other:?}"),
    }
    alice
        .patch(
            "wide",
            &p,
            &Patch::Merge(json!({"spec": {"safety": {"maxTargets": 100}}})),
        )
        .await
        .expect("an author changes the spec");
    // What the approver set, the author may leave alone (any other edit) or take back, not change.
    alice
        .patch(
            "wide",
            &p,
            &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
        )
        .await
        .expect("an unrelated edit of an approved object");
    refused(
        alice.patch("wide", &p, &approve("sha256:2")).await,
        "an author changing the approval",
    );
    alice
        .patch(
            "wide",
            &p,
            &Patch::Merge(
                json!({"metadata": {"annotations": {APPROVED_PREVIEW_ANNOTATION: null}}}),
            ),
        )
        .await
        .expect("an author withdraws an approval");
}
