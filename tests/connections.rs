//! Several Tanium servers: TaniumConnection and ClusterTaniumConnection objects, and objects choosing one with
//! `spec.connectionRef`. Two sims (two fleets, two tokens) on a real kube-apiserver, the controllers in-process.

mod common;

use common::{Env, TOKEN, phase, ready_reason};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tanium_operator::controller::Policy;
use tanium_operator::controller::rotation::{EXPIRES_AT, ROTATION_STARTED_AT};
use tanium_operator::crd::{ClusterTaniumConnection, TaniumConnection};
use tanium_sim::{FleetSource, SimConfig, SimServer, TokenUser};

const LAB_TOKEN: &str = "token-lab-server-2b71";

async fn lab_sim() -> SimServer {
    lab_sim_with(TokenUser::new(LAB_TOKEN, "operator")).await
}

async fn lab_sim_with(token: TokenUser) -> SimServer {
    tanium_sim::start(SimConfig {
        fleet: FleetSource::Generated { size: 40, seed: 11 },
        tokens: vec![token],
        time_scale: 20.0,
        ..SimConfig::default()
    })
    .await
    .expect("the lab sim starts")
}

async fn secret(env: &Env, namespace: &str, name: &str, token: &str) {
    let api: Api<Secret> = Api::namespaced(env.client.clone(), namespace);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name}, "stringData": {"token": token}
    }))
    .expect("a Secret");
    api.patch(
        name,
        &PatchParams::apply("tests").force(),
        &Patch::Apply(&secret),
    )
    .await
    .expect("Secret applied");
}

fn ready<K>(
    status: impl Fn(&K) -> Option<&tanium_operator::crd::ConnectionStatus>,
) -> impl Fn(&K) -> bool {
    move |o| {
        status(o).is_some_and(|s| {
            tanium_operator::crd::condition(&s.conditions, "Ready")
                .is_some_and(|c| c.status == "True")
        })
    }
}

fn tag_action(name: &str, endpoint: &str, connection: Option<(&str, &str)>) -> serde_json::Value {
    let mut spec = json!({
        "package": {"name": "Custom Tagging - Add Tags", "params": [name]},
        "targets": {"endpoints": [endpoint]}
    });
    if let Some((kind, to)) = connection {
        spec["connectionRef"] = json!({"kind": kind, "name": to});
    }
    json!({"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction", "metadata": {"name": name}, "spec": spec})
}

fn performs(sim: &SimServer) -> usize {
    sim.sim()
        .audit()
        .iter()
        .filter(|e| e.operation == "actionPerform" && e.outcome.is_committed())
        .count()
}

/// Two namespaces on two servers; a namespace refused a connection it may not use; one connection's token
/// rejected while the other works, and the held objects going on once it is fixed.
#[tokio::test]
async fn objects_reach_the_server_their_connection_names_and_no_other() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let lab = lab_sim().await;
    let ctx = env.start_controller();
    let lab_ns = env.namespace("lab").await;
    let prod_ns = env.namespace("prod").await;
    let other_ns = env.namespace("other").await;

    // The lab's own connection, with its token in its namespace.
    secret(&env, "lab", "lab-token", LAB_TOKEN).await;
    let conns: Api<TaniumConnection> = Api::namespaced(env.client.clone(), "lab");
    common::create_connection(
        &conns,
        "lab",
        json!({"gatewayUrl": lab.url(), "tokenSecretRef": {"name": "lab-token"}}),
    )
    .await;
    let connected = env
        .wait_until(
            &conns,
            "lab",
            "Ready",
            ready(|c: &TaniumConnection| c.status.as_ref()),
        )
        .await;
    let status = connected.status.clone().expect("status");
    assert!(status.last_successful_request_at.is_some());
    assert!(!status.features.is_empty(), "{status:?}");
    let text = serde_json::to_string(&status).unwrap_or_default();
    assert!(!text.contains(LAB_TOKEN), "the token is never in status");
    // Looked at again every recheck (2 s here), written only when something changed.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let later = conns.get("lab").await.expect("get");
    assert_eq!(
        later.metadata.resource_version, connected.metadata.resource_version,
        "a connection that works is not rewritten on every look"
    );

    // A cluster-wide connection to the main server, for `prod` only; its token in the operator's namespace.
    secret(&env, "default", "main-token", TOKEN).await;
    let cluster: Api<ClusterTaniumConnection> = Api::all(env.client.clone());
    let main: ClusterTaniumConnection = serde_json::from_value(json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "ClusterTaniumConnection", "metadata": {"name": "main"},
        "spec": {"gatewayUrl": env.sim.url(), "tokenSecretRef": {"name": "main-token"}, "namespaces": ["prod"]}
    }))
    .expect("a ClusterTaniumConnection");
    cluster
        .create(&PostParams::default(), &main)
        .await
        .expect("created");
    env.wait_until(
        &cluster,
        "main",
        "Ready",
        ready(|c: &ClusterTaniumConnection| c.status.as_ref()),
    )
    .await;

    // The lab's action lands on the lab server, and only there.
    let lab_endpoint = lab
        .sim()
        .online_endpoint_ids()
        .into_iter()
        .next()
        .expect("a lab endpoint");
    let (main_before, lab_before) = (performs(&env.sim), performs(&lab));
    env.create(
        &lab_ns,
        tag_action("on-lab", &lab_endpoint, Some(("TaniumConnection", "lab"))),
    )
    .await;
    env.wait_for(
        &lab_ns,
        "on-lab",
        "Completed",
        common::phase_is("Completed"),
    )
    .await;
    assert_eq!(performs(&lab), lab_before + 1);
    assert_eq!(performs(&env.sim), main_before);
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(
            r#"tanium_operator_gateway_requests_total{connection="TaniumConnection/lab/lab",operation="actionPerform",outcome="ok"} 1"#
        ),
        "the lab's requests are counted under its name: {metrics}"
    );
    assert!(
        !metrics.contains(
            r#"tanium_operator_gateway_requests_total{connection="own",operation="actionPerform""#
        ),
        "{metrics}"
    );
    assert!(
        lab.sim()
            .endpoint(&lab_endpoint)
            .is_some_and(|e| e.tags.iter().any(|t| t == "on-lab")),
        "tagged on the lab fleet"
    );

    // `prod` through the cluster connection, to the main server.
    env.create(
        &prod_ns,
        tag_action(
            "on-main",
            "274177",
            Some(("ClusterTaniumConnection", "main")),
        ),
    )
    .await;
    env.wait_for(
        &prod_ns,
        "on-main",
        "Completed",
        common::phase_is("Completed"),
    )
    .await;
    assert_eq!(performs(&env.sim), main_before + 1);

    // `other` may use neither: another namespace's TaniumConnection is not its own, and `main` does not list it.
    env.create(
        &other_ns,
        tag_action("borrowed", &lab_endpoint, Some(("TaniumConnection", "lab"))),
    )
    .await;
    env.create(
        &other_ns,
        tag_action(
            "unlisted",
            "274177",
            Some(("ClusterTaniumConnection", "main")),
        ),
    )
    .await;
    let borrowed = env
        .wait_for(&other_ns, "borrowed", "held", |o| ready_reason(o).is_some())
        .await;
    assert_eq!(
        ready_reason(&borrowed).as_deref(),
        Some("ConnectionNotFound")
    );
    let unlisted = env
        .wait_for(&other_ns, "unlisted", "held", |o| ready_reason(o).is_some())
        .await;
    assert_eq!(
        ready_reason(&unlisted).as_deref(),
        Some("ConnectionNotAllowed")
    );
    assert!(
        common::ready_message(&unlisted)
            .is_some_and(|m| m.contains("ClusterTaniumConnection main")),
        "{unlisted:?}"
    );

    // The lab's token rejected: the lab connection and its new object hold; prod goes on.
    secret(&env, "lab", "lab-token", "not-the-lab-token").await;
    env.wait_until(&conns, "lab", "not Ready", |c: &TaniumConnection| {
        !ready(|c: &TaniumConnection| c.status.as_ref())(c)
    })
    .await;
    env.create(
        &lab_ns,
        tag_action(
            "while-broken",
            &lab_endpoint,
            Some(("TaniumConnection", "lab")),
        ),
    )
    .await;
    env.create(
        &prod_ns,
        tag_action(
            "meanwhile",
            "274177",
            Some(("ClusterTaniumConnection", "main")),
        ),
    )
    .await;
    env.wait_for(
        &prod_ns,
        "meanwhile",
        "Completed",
        common::phase_is("Completed"),
    )
    .await;
    let held = env
        .wait_for(&lab_ns, "while-broken", "held", |o| {
            ready_reason(o).is_some()
        })
        .await;
    assert_eq!(ready_reason(&held).as_deref(), Some("ConnectionNotReady"));
    assert_eq!(
        performs(&lab),
        lab_before + 1,
        "nothing more reached the lab"
    );

    // Fixed: the held object goes on by itself.
    secret(&env, "lab", "lab-token", LAB_TOKEN).await;
    let done = env
        .wait_for(
            &lab_ns,
            "while-broken",
            "Completed",
            common::phase_is("Completed"),
        )
        .await;
    assert_eq!(phase(&done).as_deref(), Some("Completed"));
    assert_eq!(performs(&lab), lab_before + 2);
    for api in [&lab_ns, &prod_ns, &other_ns] {
        let objects = api.list(&Default::default()).await.expect("list");
        for o in objects {
            common::assert_no_token(&o);
            let text = serde_json::to_string(&o).unwrap_or_default();
            assert!(!text.contains(LAB_TOKEN));
        }
    }
    env.assert_exactly_once();

    // Deleted, the lab connection goes from the operator too (its poller and any rotation with it).
    assert_eq!(ctx.connections.all().len(), 3, "own, lab and main");
    conns
        .delete("lab", &Default::default())
        .await
        .expect("deleted");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while ctx.connections.all().len() != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted connection is still built"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn rotations(sim: &SimServer) -> usize {
    sim.sim()
        .audit()
        .iter()
        .filter(|e| e.operation == "apiTokenRotate")
        .count()
}

/// A connection whose `spec.rotation` asks rotates its own token, in its own Secret, through its own server, and
/// goes on with the new one; the operator's own token and the other server are not touched.
#[tokio::test]
async fn each_connection_rotates_its_own_token() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    // The sim's clock runs 20x: two sim-hours to expiry, rotated with 119 sim-minutes left, a few real seconds in.
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    let lab = lab_sim_with(TokenUser::new(LAB_TOKEN, "operator").expiring_at(expires)).await;
    // Allowed, as the chart value connections.tokenRotation allows it.
    let client = env.client.clone();
    let ctx = env.start_controller_with(client, TOKEN, |c| c.rotate_connection_tokens = true);
    let lab_ns = env.namespace("lab").await;
    secret(&env, "lab", "lab-token", LAB_TOKEN).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "lab");
    secrets
        .patch(
            "lab-token",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {EXPIRES_AT: expires.to_string()}}})),
        )
        .await
        .expect("expiry annotated");
    let conns: Api<TaniumConnection> = Api::namespaced(env.client.clone(), "lab");
    let rotating = || {
        json!({"gatewayUrl": lab.url(), "tokenSecretRef": {"name": "lab-token"},
               "rotation": {"beforeExpirySeconds": 119 * 60}})
    };
    common::create_connection(&conns, "lab", rotating()).await;

    // Rotated, written back, confirmed: the new token in the Secret, nothing of the old one or the intent left.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let rotated = loop {
        let s = secrets.get("lab-token").await.expect("get");
        let token = s
            .data
            .as_ref()
            .and_then(|d| d.get("token"))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned());
        let annotations = s.metadata.annotations.clone().unwrap_or_default();
        let settled = token.as_deref().is_some_and(|t| t != LAB_TOKEN)
            && !s
                .data
                .as_ref()
                .is_some_and(|d| d.contains_key("token.previous"))
            && !annotations.contains_key(ROTATION_STARTED_AT);
        if settled {
            break (token.unwrap_or_default(), annotations);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lab token was never rotated: {annotations:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let (new, annotations) = rotated;
    assert_eq!(rotations(&lab), 1);
    assert_eq!(
        rotations(&env.sim),
        0,
        "the main server's token is not this connection's"
    );
    assert!(
        !lab.sim().accepts_token(LAB_TOKEN),
        "the old lab token is refused"
    );
    assert!(
        env.sim.sim().accepts_token(TOKEN),
        "the operator's own token still works"
    );
    let new_expiry: jiff::Timestamp = annotations
        .get(EXPIRES_AT)
        .and_then(|a| a.parse().ok())
        .expect("the new expiry");
    assert_eq!(Some(new_expiry), lab.sim().token_expiry(&new));

    // Status says when the token expires; metrics under the connection's name; the new token is in use.
    let with_expiry = env
        .wait_until(&conns, "lab", "the new expiry", |c: &TaniumConnection| {
            c.status
                .as_ref()
                .and_then(|s| s.token_expires_at.as_ref())
                .is_some_and(|t| t.0.as_second() == new_expiry.as_second())
        })
        .await;
    assert!(ready(|c: &TaniumConnection| c.status.as_ref())(
        &with_expiry
    ));
    assert_eq!(
        ctx.metrics.token_expires_at("TaniumConnection/lab/lab"),
        Some(new_expiry.as_second())
    );
    assert_eq!(ctx.metrics.token_expires_at("own"), None);
    let endpoint = lab
        .sim()
        .online_endpoint_ids()
        .into_iter()
        .next()
        .expect("a lab endpoint");
    env.create(
        &lab_ns,
        tag_action(
            "after-rotation",
            &endpoint,
            Some(("TaniumConnection", "lab")),
        ),
    )
    .await;
    env.wait_for(
        &lab_ns,
        "after-rotation",
        "Completed",
        common::phase_is("Completed"),
    )
    .await;
    assert_eq!(performs(&lab), 1);
    // A second connection asking to rotate the same token is refused that, and says so: two rotations of one token
    // would lock each other out.
    common::create_connection(&conns, "twin", rotating()).await;
    let refused = env
        .wait_until(
            &conns,
            "twin",
            "told it may not rotate",
            |c: &TaniumConnection| {
                c.status.as_ref().is_some_and(|s| {
                    tanium_operator::crd::condition(&s.conditions, "GatewayToken")
                        .is_some_and(|t| t.status == "False" && t.reason == "TokenSecretShared")
                })
            },
        )
        .await;
    assert!(
        ready(|c: &TaniumConnection| c.status.as_ref())(&refused),
        "it works, unrotated"
    );
    assert_eq!(rotations(&lab), 1);

    let text = serde_json::to_string(&conns.get("lab").await.expect("get")).unwrap_or_default();
    assert!(
        !text.contains(&new) && !text.contains(LAB_TOKEN),
        "no token in the connection object"
    );
    env.assert_exactly_once();
}
