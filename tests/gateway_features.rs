//! Older and newer Gateways by capability: the sim plays the reference Gateway or an older one, the operator
//! detects which by introspection, says so (log line, metric), and uses what is there: against the older one an
//! inspection and a process kill go through the older Direct Connect family, never trying the newer one.

mod common;

use std::time::Duration;

use common::{Env, TOKEN};
use kube::api::{Api, PostParams};
use secrecy::SecretString;
use tanium_operator::controller::Policy;
use tanium_operator::crd::TaniumEndpointInspection;
use tanium_operator::crd::inspection::KillState;
use tanium_operator::gateway::features::Features;
use tanium_operator::gateway::{GatewayClient, GatewayConfig};
use tanium_sim::{Generation, SimConfig, TokenUser};

async fn features_of(generation: Generation) -> (Features, Vec<String>) {
    let sim = tanium_sim::start(SimConfig {
        tokens: vec![TokenUser::new(TOKEN, "operator")],
        generation,
        ..SimConfig::default()
    })
    .await
    .expect("sim starts");
    let client =
        GatewayClient::new(GatewayConfig::new(sim.url(), SecretString::from(TOKEN))).unwrap();
    assert_eq!(client.features(), None);
    let features = client.detect_features().await.unwrap();
    assert_eq!(client.features(), Some(features));
    let asked = sim
        .sim()
        .requests()
        .into_iter()
        .filter_map(|r| r.operation_name)
        .collect();
    (features, asked)
}

#[tokio::test]
async fn the_reference_gateway_and_an_older_one_are_told_apart() {
    let (current, asked) = features_of(Generation::Current).await;
    assert_eq!(
        current,
        Features {
            direct_connect: true,
            direct_connect_legacy: true,
            actions_query: false,
            closed_status: true,
        }
    );
    assert_eq!(asked, ["gatewayFeatures"], "one request");
    let (older, _) = features_of(Generation::Legacy).await;
    assert_eq!(
        older,
        Features {
            direct_connect: false,
            direct_connect_legacy: true,
            actions_query: false,
            closed_status: false,
        }
    );
    assert_eq!(
        older.to_string(),
        "Direct Connect: older family only (openDirectConnection …); actions query: no; CLOSED status: no"
    );
}

#[tokio::test]
async fn against_an_older_gateway_inspection_and_kill_use_the_older_family() {
    let Some(mut env) = Env::start(Policy::default(), |c| c.generation = Generation::Legacy).await
    else {
        return;
    };
    let ctx = env.start_controller();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ctx.connections.own().gateway.features().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "features never detected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(
            "tanium_operator_gateway_feature{connection=\"own\",feature=\"directConnect\"} 0"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "tanium_operator_gateway_feature{connection=\"own\",feature=\"directConnectLegacy\"} 1"
        ),
        "{metrics}"
    );

    env.kubectl(&["create", "namespace", "older"]);
    let api: Api<TaniumEndpointInspection> = Api::namespaced(env.client.clone(), "older");
    let example: TaniumEndpointInspection =
        serde_json::from_value(common::example("end-notepad")).unwrap();
    api.create(&PostParams::default(), &example).await.unwrap();
    let obj = env
        .wait_until(
            &api,
            "end-notepad",
            "kill done and endpoint read again",
            |o| {
                o.status.as_ref().is_some_and(|s| {
                    s.kill
                        .as_ref()
                        .is_some_and(|k| k.state != KillState::Requested)
                        && s.processes.is_some()
                })
            },
        )
        .await;
    let status = obj.status.unwrap();
    assert_eq!(status.kill.unwrap().state, KillState::Ended);
    let asked: Vec<String> = env
        .sim
        .sim()
        .requests()
        .into_iter()
        .filter_map(|r| r.operation_name)
        .collect();
    for older in [
        "openDirectConnection",
        "directEndpoint",
        "killProcess",
        "closeDirectConnection",
    ] {
        assert!(
            asked.iter().any(|o| o == older),
            "{older} not used: {asked:?}"
        );
    }
    for newer in [
        "directConnectOpen",
        "directConnectEndpoint",
        "directConnectProcessTerminate",
    ] {
        assert!(
            !asked.iter().any(|o| o == newer),
            "{newer} tried against an older Gateway: {asked:?}"
        );
    }
    let kills = env
        .sim
        .sim()
        .audit()
        .iter()
        .filter(|e| e.operation == "killProcess")
        .count();
    assert_eq!(kills, 1);
    env.stop_controller();
}
