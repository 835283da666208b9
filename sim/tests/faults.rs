//! Each injected fault kind, seen by a real HTTP client, and its trace in the audit.

mod common;

use common::{Harness, PERFORM, config};
use serde_json::{Value, json};
use tanium_sim::{AuditOutcome, Faults};

fn tag_input(name: &str) -> Value {
    json!({"input": {
        "name": name,
        "package": {"name": "Custom Tagging - Add Tags", "params": ["F"]},
        "targets": {"endpoints": ["274177"]}
    }})
}

const FIND: &str =
    r#"query($n: String) { scheduledActions(filter: {path: "name", value: $n}) { totalRecords } }"#;

async fn found(h: &Harness, name: &str) -> i64 {
    h.data(FIND, json!({"n": name})).await["scheduledActions"]["totalRecords"]
        .as_i64()
        .unwrap()
}

fn body(query: &str, variables: Value) -> String {
    json!({"query": query, "variables": variables}).to_string()
}

#[tokio::test]
async fn http_500_then_recovery() {
    let h = Harness::start(config()).await;
    h.server.sim().set_faults(Faults {
        http_500_next: 1,
        ..Faults::default()
    });
    let resp = h
        .raw(common::TOKEN, &body(PERFORM, tag_input("five-hundred")))
        .await;
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.text().await.unwrap(), "Failed to initialize request");
    assert_eq!(found(&h, "five-hundred").await, 0);
    let audit = h.server.sim().audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].operation, "actionPerform");
    assert!(
        matches!(&audit[0].outcome, AuditOutcome::Error { message } if message.contains("500"))
    );
    assert_eq!(h.server.sim().faults().http_500_next, 0);
}

#[tokio::test]
async fn graphql_error_has_no_effect() {
    let h = Harness::start(config()).await;
    h.server.sim().set_faults(Faults {
        graphql_error_next: 1,
        ..Faults::default()
    });
    let v = h.call(PERFORM, tag_input("gql-error")).await;
    assert!(v["errors"][0]["message"].is_string(), "{v}");
    assert_eq!(v["data"], Value::Null);
    assert_eq!(found(&h, "gql-error").await, 0);
}

#[tokio::test]
async fn retryable_payload_error_commits_nothing() {
    let h = Harness::start(config()).await;
    h.server.sim().set_faults(Faults {
        retryable_error_next: 1,
        ..Faults::default()
    });
    // Queries are not eligible: the counter waits for a mutation.
    assert_eq!(found(&h, "retry").await, 0);
    let v = h.data(PERFORM, tag_input("retry")).await;
    let err = &v["actionPerform"]["error"];
    assert_eq!(err["retryable"], true, "{v}");
    assert_eq!(err["timedOut"], false);
    assert_eq!(v["actionPerform"]["scheduledActions"], Value::Null);
    assert_eq!(found(&h, "retry").await, 0);
    let v = h.data(PERFORM, tag_input("retry")).await;
    assert_eq!(v["actionPerform"]["error"], Value::Null);
    assert_eq!(found(&h, "retry").await, 1);
}

#[tokio::test]
async fn drop_after_commit_gives_the_client_an_error_but_the_action_exists() {
    let h = Harness::start(config()).await;
    h.server.sim().set_faults(Faults {
        drop_after_commit_next: 1,
        drop_operations: vec!["actionPerform".into()],
        ..Faults::default()
    });
    let sent = h
        .http
        .post(h.url())
        .header("session", common::TOKEN)
        .header("Content-Type", "application/json")
        .body(body(PERFORM, tag_input("dropped")))
        .send()
        .await;
    let usable = match sent {
        Err(_) => false,
        Ok(resp) => resp.bytes().await.is_ok(),
    };
    assert!(!usable, "the client must not get a response body");
    assert_eq!(found(&h, "dropped").await, 1);
    let audit = h.server.sim().audit();
    let entry = audit
        .iter()
        .find(|e| e.operation == "actionPerform")
        .unwrap();
    match &entry.outcome {
        AuditOutcome::Dropped { ids } => assert!(!ids.is_empty()),
        other => panic!("expected Dropped, got {other:?}"),
    }
    assert_eq!(entry.input["input"]["name"], "dropped");
    assert_eq!(entry.user, "admin");
}

#[tokio::test]
async fn latency_and_admin_api() {
    let h = Harness::start(config()).await;
    let admin = format!("{}/admin", h.server.url());
    let f: Faults = h
        .http
        .put(format!("{admin}/faults"))
        .json(&json!({"latency_ms": 150}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(f.latency_ms, 150);
    let t = std::time::Instant::now();
    h.data("{ now }", json!({})).await;
    assert!(t.elapsed() >= std::time::Duration::from_millis(150));
    let got: Faults = h
        .http
        .get(format!("{admin}/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got.latency_ms, 150);

    let before: Value = h
        .http
        .get(format!("{admin}/clock"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after: Value = h
        .http
        .post(format!("{admin}/clock/advance"))
        .json(&json!({"seconds": 90.0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: jiff::Timestamp = before["now"].as_str().unwrap().parse().unwrap();
    let a: jiff::Timestamp = after["now"].as_str().unwrap().parse().unwrap();
    assert_eq!(a.duration_since(b).as_secs(), 90);

    let added: Value = h
        .http
        .post(format!("{admin}/endpoints"))
        .json(&json!([{"name": "added-1", "platform": "Linux", "tags": ["T"]}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = added["ids"][0].as_str().unwrap().to_string();
    let resp = h
        .http
        .post(format!("{admin}/endpoints/{id}/online"))
        .json(&json!({"online": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ep: Value = h
        .http
        .get(format!("{admin}/endpoints/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ep["name"], "added-1");
    assert_eq!(ep["online"], false);
    let missing = h
        .http
        .get(format!("{admin}/endpoints/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    h.data(PERFORM, tag_input("audited")).await;
    let audit: Value = h
        .http
        .get(format!("{admin}/audit"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = audit.as_array().unwrap().last().unwrap();
    assert_eq!(last["operation"], "actionPerform");
    assert_eq!(last["outcome"]["kind"], "ok");
}
