//! The operator binary as a process: health and readiness, metrics that move, a token rotated in its file and
//! picked up without a restart, no token in its logs, and a clean exit on SIGTERM.

mod common;

use std::time::Duration;

use common::{Env, OperatorProcess, TOKEN, phase, ready_reason};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, PostParams};
use tanium_operator::controller::Policy;
use tanium_operator::crd::{self, TaniumAction, TaniumTag};

const OLD_TOKEN: &str = "token-expired-5e1f0c";

#[tokio::test]
async fn operator_process_metrics_health_and_token_rotation() {
    let Some(env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, OLD_TOKEN).unwrap();
    let mut operator = OperatorProcess::spawn(
        &env,
        env.cp.kubeconfig_path(),
        dir.path(),
        "operator",
        &[
            ("TANIUM_TOKEN_RELOAD_SECONDS", "1"),
            ("TANIUM_RETRY_HELD_SECONDS", "2"),
            (
                "RUST_LOG",
                "debug,kube=info,hyper=info,tower=info,reqwest=info",
            ),
        ],
    );
    let (port, log_path) = (operator.port, operator.log.clone());
    let child = &mut operator.child;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let http = http.clone();
        let url = format!("http://127.0.0.1:{port}{path}");
        async move { http.get(url).send().await }
    };

    // Alive at once; not ready while the Gateway rejects its token.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while get("/healthz")
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
        != 200
    {
        assert!(tokio::time::Instant::now() < deadline, "no /healthz");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.namespace("proc").await;
    let api: Api<TaniumAction> = Api::namespaced(env.client.clone(), "proc");
    env.create(&api, common::example("tag-by-endpoint-id"))
        .await;
    env.wait_for(&api, "tag-by-endpoint-id", "TokenRejected", |o| {
        ready_reason(o).as_deref() == Some("TokenRejected")
    })
    .await;
    assert_eq!(get("/readyz").await.unwrap().status().as_u16(), 503);

    // The Secret is rotated: the file changes, the operator picks it up, and the held object proceeds.
    std::fs::write(&token_file, TOKEN).unwrap();
    let done = env
        .wait_for(&api, "tag-by-endpoint-id", "Completed", |o| {
            phase(o).as_deref() == Some("Completed")
        })
        .await;
    assert_eq!(env.performs_for(&done), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while get("/readyz").await.unwrap().status().as_u16() != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready; log:\n{}",
            std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("ready")
                    || l.contains("synced")
                    || l.contains("ERROR")
                    || l.contains("WARN"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Metrics that moved.
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    let value = |needle: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in\n{metrics}"))
    };
    assert_eq!(
        value(
            r#"tanium_operator_gateway_requests_total{connection="own",operation="actionPerform",outcome="ok"}"#
        ),
        1.0
    );
    assert!(
        value(
            r#"tanium_operator_gateway_requests_total{connection="own",operation="packageSpecs",outcome="TokenRejected"}"#
        ) >= 1.0
    );
    assert!(value(r#"tanium_operator_reconciles_total{kind="TaniumAction",result="ok"}"#) >= 2.0);
    assert_eq!(
        value(r#"tanium_operator_objects{kind="TaniumAction",phase="Completed"}"#),
        1.0
    );
    assert_eq!(
        value("tanium_operator_leader "),
        1.0,
        "without leader election it always reconciles"
    );
    assert!(metrics.contains("tanium_operator_reconcile_duration_seconds_bucket"));
    assert!(metrics.contains("tanium_operator_gateway_request_duration_seconds_bucket"));

    // SIGTERM: a clean, prompt exit.
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit within 15 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status}");

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("API token reloaded"), "{log}");
    // What a reconcile logs carries the object and the reconcile's id (the text format colours its fields).
    let plain: String = {
        let mut out = String::new();
        let mut escape = false;
        for c in log.chars() {
            match (escape, c) {
                (false, '\u{1b}') => escape = true,
                (true, 'm') => escape = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    };
    assert!(
        plain.lines().any(
            |l| l.contains("reconcile{kind=TaniumAction namespace=proc name=")
                && l.contains(" reconcile_id=")
                && l.contains("Deployed")
        ),
        "no reconcile span on the deployment's line:\n{plain}"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains(OLD_TOKEN),
        "a token appeared in the logs"
    );
    let objects = env.kubectl(&["get", "taniumactions,events", "-A", "-o", "json"]);
    assert!(
        !objects.contains(TOKEN) && !objects.contains(OLD_TOKEN),
        "a token appeared in status or events"
    );
}

/// TLS verification off is a deliberate act that stays visible: the start log says so, and every object carries
/// `GatewayTLSVerified=False` for as long as it is off; started again with verification on, the condition goes.
#[tokio::test]
async fn tls_verification_off_is_warned_at_start_and_on_every_object() {
    let Some(env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    env.namespace("tls").await;
    let mut insecure = OperatorProcess::spawn(
        &env,
        env.cp.kubeconfig_path(),
        dir.path(),
        "insecure",
        &[("TANIUM_INSECURE_SKIP_TLS_VERIFY", "true")],
    );
    let tags: Api<TaniumTag> = Api::namespaced(env.client.clone(), "tls");
    let tag: TaniumTag = serde_json::from_value(serde_json::json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumTag", "metadata": {"name": "pinned"},
        "spec": {"tags": ["pinned"], "targets": {"endpoints": ["274177"]}, "interval": "2s"}
    }))
    .unwrap();
    tags.create(&PostParams::default(), &tag).await.unwrap();
    let actions: Api<TaniumAction> = Api::namespaced(env.client.clone(), "tls");
    env.create(&actions, common::example("tag-by-endpoint-id"))
        .await;
    let unverified = |conditions: &[Condition]| {
        crd::condition(conditions, crd::condition::GATEWAY_TLS_VERIFIED)
            .is_some_and(|c| c.status == "False" && c.reason == "VerificationDisabled")
    };
    env.wait_for(
        &actions,
        "tag-by-endpoint-id",
        "GatewayTLSVerified=False",
        |o| o.status.as_ref().is_some_and(|s| unverified(&s.conditions)),
    )
    .await;
    env.wait_until(&tags, "pinned", "GatewayTLSVerified=False", |t| {
        t.status.as_ref().is_some_and(|s| unverified(&s.conditions))
    })
    .await;
    insecure.kill();
    let log = std::fs::read_to_string(&insecure.log).unwrap();
    assert!(
        log.contains("TLS verification of the Gateway is OFF"),
        "{log}"
    );
    // What the Gateway offers, said once at start.
    assert!(
        log.contains("Gateway features detected")
            && log.contains("Direct Connect: current and older families"),
        "{log}"
    );

    let _verifying =
        OperatorProcess::spawn(&env, env.cp.kubeconfig_path(), dir.path(), "verifying", &[]);
    env.wait_until(&tags, "pinned", "no GatewayTLSVerified", |t| {
        t.status.as_ref().is_some_and(|s| {
            crd::condition(&s.conditions, crd::condition::GATEWAY_TLS_VERIFIED).is_none()
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == crd::condition::READY)
        })
    })
    .await;
}
