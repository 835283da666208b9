//! The binary's contract (first stdout line, token from the environment) and config details.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;
use tanium_sim::{EndpointSpec, FleetSource, Platform, SimConfig, TokenUser};

#[tokio::test]
async fn binary_prints_its_url_and_serves_with_env_tokens() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tanium-sim"))
        .args(["--port", "0", "--fleet", "1000", "--seed", "7"])
        .env("TANIUM_SIM_TOKENS", "token-env-a,token-env-b:bob")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("tanium-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{url}/plugin/products/gateway/graphql"))
        .header("session", "token-env-b")
        .json(&json!({"query": "{ endpoints(first: 1) { totalRecords } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["data"]["endpoints"]["totalRecords"], 1000);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("token-env"),
        "a token reached the logs: {stderr}"
    );
}

#[test]
fn token_debug_is_redacted() {
    let cfg = SimConfig {
        tokens: vec![TokenUser::new("token-secret-123", "admin")],
        ..SimConfig::default()
    };
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("token-secret-123"), "{dbg}");
    assert!(dbg.contains("admin"));
}

#[tokio::test]
async fn fleet_file_replaces_the_generated_fleet() {
    let mut a = EndpointSpec::new("from-file-a", Platform::Linux);
    a.id = "500".into();
    a.tags = vec!["FromFile".into()];
    let mut b = EndpointSpec::new("from-file-b", Platform::Windows);
    b.online = false;
    let path = std::env::temp_dir().join(format!("tanium-sim-fleet-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_string(&vec![a, b]).unwrap()).unwrap();
    let h = common::Harness::start(SimConfig {
        fleet: FleetSource::File(path.clone()),
        ..common::config()
    })
    .await;
    std::fs::remove_file(&path).ok();
    assert_eq!(h.server.sim().endpoint_count(), 2);
    let tagged = h
        .endpoint_ids(json!({"sensor": {"name": "Custom Tags"}, "value": "FromFile"}))
        .await;
    assert_eq!(tagged, vec!["500"]);
    let all = h.endpoint_ids(serde_json::Value::Null).await;
    assert_eq!(all.len(), 2);
    assert!(!h.server.sim().endpoint(&all[1]).unwrap().online);

    let bad = std::env::temp_dir().join(format!("tanium-sim-bad-{}.json", std::process::id()));
    std::fs::write(&bad, "not json").unwrap();
    let err = tanium_sim::start(SimConfig {
        fleet: FleetSource::File(bad.clone()),
        ..SimConfig::default()
    })
    .await
    .unwrap_err();
    std::fs::remove_file(&bad).ok();
    assert!(err.to_string().contains("fleet"), "{err}");
}
