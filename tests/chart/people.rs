//! The chart's ClusterRoles for people: a viewer role that joins Kubernetes' `view`, and an author role that joins
//! nothing, so that editing a namespace never by itself lets anyone act on the fleet. Asked of the real apiserver's
//! authorizer. Aggregation (into `view`, and the built-in `edit`'s own rules) is the controller-manager's work,
//! which the test control plane does not run: the roles are bound directly, and which built-in role each joins is
//! read from its aggregation labels in the render.

use serde_json::Value;
use tanium_operator::controller::Policy;
use tanium_testenv::Identity;

use super::{Check, wrong_answers};
use crate::common::{CHART_RELEASE, Env};

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
    assert!(
        aggregates(&role("author")).is_empty(),
        "the author role joins no built-in role"
    );

    env.apply_chart();
    env.kubectl(&["create", "namespace", "team"]);
    env.kubectl(&["create", "namespace", "elsewhere"]);
    for (binding, role, user) in [
        ("authors", format!("{CHART_RELEASE}-author"), "alice"),
        ("viewers", format!("{CHART_RELEASE}-viewer"), "victor"),
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
