//! Shared helpers for the HTTP-level tests.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use tanium_sim::{SimConfig, SimServer, TokenUser};

pub const TOKEN: &str = "token-sim";
pub const BOB: &str = "token-bob";

/// A frozen clock (time moves only by `advance`), two users.
pub fn config() -> SimConfig {
    SimConfig {
        time_scale: 0.0,
        tokens: vec![TokenUser::new(TOKEN, "admin"), TokenUser::new(BOB, "bob")],
        ..SimConfig::default()
    }
}

pub struct Harness {
    pub server: SimServer,
    pub http: reqwest::Client,
}

impl Harness {
    pub async fn start(config: SimConfig) -> Self {
        let server = tanium_sim::start(config).await.expect("sim starts");
        Self {
            server,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("{}/plugin/products/gateway/graphql", self.server.url())
    }

    pub fn advance(&self, secs: u64) {
        self.server.sim().advance(Duration::from_secs(secs));
    }

    pub async fn raw(&self, token: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.url())
            .header("Content-Type", "application/json")
            .header("session", token)
            .body(body.to_string())
            .send()
            .await
            .expect("request sent")
    }

    /// The full JSON body of a GraphQL call that must answer HTTP 200.
    pub async fn call_as(&self, token: &str, query: &str, variables: Value) -> Value {
        let body = json!({"query": query, "variables": variables}).to_string();
        let resp = self.raw(token, &body).await;
        assert_eq!(resp.status(), 200, "HTTP status");
        resp.json().await.expect("JSON body")
    }

    pub async fn call(&self, query: &str, variables: Value) -> Value {
        self.call_as(TOKEN, query, variables).await
    }

    /// `data` of a call that must not have errors.
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        self.data_as(TOKEN, query, variables).await
    }

    pub async fn data_as(&self, token: &str, query: &str, variables: Value) -> Value {
        let v = self.call_as(token, query, variables).await;
        assert!(v.get("errors").is_none(), "unexpected errors: {v}");
        v["data"].clone()
    }

    /// The first error message of a call that must fail.
    pub async fn error(&self, query: &str, variables: Value) -> String {
        let v = self.call(query, variables).await;
        v["errors"][0]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error, got {v}"))
            .to_string()
    }

    pub async fn perform(&self, input: Value) -> Value {
        self.data(PERFORM, json!({ "input": input })).await["actionPerform"].clone()
    }

    pub async fn action(&self, id: &str) -> Value {
        self.data(ACTION, json!({ "id": id })).await["action"].clone()
    }

    pub async fn endpoint_ids(&self, filter: Value) -> Vec<String> {
        let d = self
            .data(
                "query($f: EndpointFieldFilter) { endpoints(first: 5000, filter: $f) { edges { node { id } } } }",
                json!({ "f": filter }),
            )
            .await;
        d["endpoints"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_string())
            .collect()
    }
}

pub const PERFORM: &str = "mutation($input: ActionPerformInput!) {
  actionPerform(input: $input) {
    scheduledActions { platforms scheduledAction { id name approved lastAction { id } } }
    error { message retryable timedOut }
  }
}";

pub const ACTION: &str = "query($id: ID!) {
  action(ref: {id: $id}) {
    id status stopped expirationTime
    results { waiting downloading running waitingToRetry completed expired failed pendingVerification verified failedVerification }
  }
}";

/// Sum of every per-endpoint state count.
pub fn total(results: &Value) -> i64 {
    [
        "waiting",
        "downloading",
        "running",
        "waitingToRetry",
        "completed",
        "expired",
        "failed",
        "pendingVerification",
        "verified",
        "failedVerification",
    ]
    .iter()
    .map(|k| results[*k].as_i64().unwrap())
    .sum()
}

pub fn last_action_id(perform: &Value, i: usize) -> String {
    perform["scheduledActions"][i]["scheduledAction"]["lastAction"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn scheduled_id(perform: &Value, i: usize) -> String {
    perform["scheduledActions"][i]["scheduledAction"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}
