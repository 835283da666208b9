//! The HTTP face: the Gateway endpoint (auth by `session` header, fault injection) and the admin
//! API. The admin API needs no token: it is reachable wherever the sim binds (loopback by
//! default), which is what a test fixture wants and why the binary binds loopback unless told.

use std::time::Duration;

use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::audit::{AuditOutcome, RequestRecord};
use crate::config::{AfterCommit, Faults};
use crate::faults::ReadFault;
use crate::fleet::EndpointSpec;
use crate::schema::{GatewaySchema, RequestInfo};
use crate::state::Sim;

pub const GRAPHQL_PATH: &str = "/plugin/products/gateway/graphql";

#[derive(Clone)]
struct App {
    sim: Sim,
    schema: GatewaySchema,
}

pub(crate) fn router(sim: Sim, schema: GatewaySchema) -> Router {
    Router::new()
        .route(GRAPHQL_PATH, post(graphql))
        .route("/admin/audit", get(admin_audit))
        .route("/admin/requests", get(admin_requests))
        .route("/admin/faults", get(admin_get_faults).put(admin_put_faults))
        .route("/admin/clock", get(admin_clock))
        .route("/admin/clock/advance", post(admin_advance))
        .route("/admin/endpoints", post(admin_add_endpoints))
        .route("/admin/endpoints/{id}", get(admin_endpoint))
        .route("/admin/endpoints/{id}/online", post(admin_online))
        .with_state(App { sim, schema })
}

fn unauthorized() -> Response {
    // The real Gateway answers a bad token with a page, not GraphQL; clients must cope with that.
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<html><body><h1>401 Unauthorized</h1></body></html>",
    )
        .into_response()
}

/// What the HTTP layer needs to know about a document before running it.
struct Shape {
    mutation: bool,
    fields: Vec<String>,
    /// Each top-level field's name and response key (its alias, or its name).
    keyed: Vec<(String, String)>,
    operation_name: Option<String>,
}

fn shape(query: &str, operation_name: Option<&str>) -> Shape {
    let mut s = Shape {
        mutation: false,
        fields: Vec::new(),
        keyed: Vec::new(),
        operation_name: operation_name.map(str::to_string),
    };
    let Ok(doc) = async_graphql::parser::parse_query(query) else {
        return s;
    };
    let op = match &doc.operations {
        DocumentOperations::Single(op) => Some(op),
        DocumentOperations::Multiple(map) => {
            let found = match operation_name {
                Some(n) => map.iter().find(|(k, _)| k.as_str() == n),
                None if map.len() == 1 => map.iter().next(),
                None => None,
            };
            found.map(|(k, op)| {
                s.operation_name = Some(k.to_string());
                op
            })
        }
    };
    if let Some(op) = op {
        s.mutation = op.node.ty == OperationType::Mutation;
        for item in &op.node.selection_set.node.items {
            if let Selection::Field(f) = &item.node {
                s.fields.push(f.node.name.node.to_string());
                s.keyed.push((
                    f.node.name.node.to_string(),
                    f.node.response_key().node.to_string(),
                ));
            }
        }
    }
    s
}

fn dropped() -> Response {
    // The status line may already be out when the body fails; either way the client gets no
    // usable response, as when a connection dies after the Gateway committed the work.
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "injected fault: response dropped after commit",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn graphql(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let user = headers
        .get("session")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| app.sim.peek().user_for(t.trim()));
    let Some(user) = user else {
        tracing::warn!("request with a missing or unknown session token refused");
        return unauthorized();
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let body =
                serde_json::json!({"errors": [{"message": format!("invalid request body: {e}")}]});
            return json_response(StatusCode::BAD_REQUEST, body.to_string().into_bytes());
        }
    };
    let shape = shape(&request.query, request.operation_name.as_deref());
    let plan = {
        let mut st = app.sim.lock();
        let seq = st.requests.len() as u64 + 1;
        let mut fields = std::collections::BTreeMap::new();
        for f in &shape.fields {
            *fields.entry(f.clone()).or_insert(0) += 1;
        }
        if !st.documents.contains(&request.query) {
            st.documents.insert(request.query.clone());
        }
        st.requests.push(RequestRecord {
            seq,
            wall: jiff::Timestamp::now(),
            user: user.clone(),
            operation_name: shape.operation_name.clone(),
            mutation: shape.mutation,
            fields,
        });
        let mutation_fields: &[String] = if shape.mutation { &shape.fields } else { &[] };
        let mut plan = st.faults.decide(mutation_fields);
        let reads = st.faults.decide_reads(&shape.keyed);
        plan.reads = reads.reads;
        plan.too_big = reads.too_big;
        plan.forbidden = reads.forbidden;
        plan
    };
    if let Some(field) = &plan.forbidden {
        // An authorised token whose user lacks a permission: refused before anything runs.
        tracing::info!(%field, "refusing a field the user may not use (injected 403)");
        let body = serde_json::json!({"errors": [{"message": format!("forbidden: the user may not use {field}")}]});
        return json_response(StatusCode::FORBIDDEN, body.to_string().into_bytes());
    }
    if plan.too_big {
        // A complexity or size limit: the whole document is refused before execution (no `path`).
        let body = serde_json::json!({"data": null, "errors": [{
            "message": format!("query complexity exceeds the limit: {} top-level fields", shape.fields.len()),
            "extensions": {"code": "QUERY_TOO_COMPLEX"}
        }]});
        return json_response(StatusCode::OK, body.to_string().into_bytes());
    }
    if plan.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(plan.latency_ms)).await;
    }
    if plan.http_500 || plan.graphql_error {
        let message = if plan.http_500 {
            "injected fault: HTTP 500"
        } else {
            "injected fault: GraphQL error"
        };
        {
            let mut st = app.sim.lock();
            let variables = serde_json::to_value(&request.variables).unwrap_or_default();
            st.record(
                &user,
                shape.fields.first().map(String::as_str).unwrap_or(""),
                shape.operation_name.clone(),
                variables,
                AuditOutcome::Error {
                    message: message.to_string(),
                },
            );
        }
        if plan.http_500 {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "Failed to initialize request",
            )
                .into_response();
        }
        let body = serde_json::json!({
            "data": null,
            "errors": [{"message": "internal system error (injected fault)"}]
        });
        return json_response(StatusCode::OK, body.to_string().into_bytes());
    }
    // Only the transport's shapes are played here; the in-band ones were played by the resolver.
    let after_commit = shape
        .fields
        .iter()
        .find_map(|f| plan.after_commit_of(f))
        .filter(|_| shape.mutation);
    let info = RequestInfo {
        user,
        operation_name: shape.operation_name,
        plan,
    };
    let unknown_status: Vec<String> = info
        .plan
        .reads
        .iter()
        .filter(|(_, f)| **f == ReadFault::UnknownStatus)
        .map(|(k, _)| k.clone())
        .collect();
    let response = app.schema.execute(request.data(info)).await;
    match after_commit {
        Some(AfterCommit::Drop) => {
            tracing::info!("dropping the response after commit (injected fault)");
            return dropped();
        }
        Some(shape @ (AfterCommit::Http502 | AfterCommit::Http504)) => {
            let (status, text) = if shape == AfterCommit::Http502 {
                (StatusCode::BAD_GATEWAY, "502 Bad Gateway")
            } else {
                (StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out")
            };
            tracing::info!(%status, "answering a committed mutation with a proxy error (injected fault)");
            return (
                status,
                [(header::CONTENT_TYPE, "text/html")],
                format!("<html><body><h1>{text}</h1></body></html>"),
            )
                .into_response();
        }
        _ => {}
    }
    let answer = match serde_json::to_value(&response) {
        Ok(mut answer) => {
            // A status this client's schema does not know, as a newer Gateway might report.
            for key in &unknown_status {
                if let Some(status) = answer.pointer_mut(&format!("/data/{key}/status")) {
                    *status = serde_json::Value::String("QUEUED".into());
                }
            }
            serde_json::to_vec(&answer)
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise a GraphQL response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn admin_audit(State(app): State<App>) -> Response {
    axum::Json(app.sim.audit()).into_response()
}

async fn admin_requests(State(app): State<App>) -> Response {
    axum::Json(app.sim.requests()).into_response()
}

async fn admin_get_faults(State(app): State<App>) -> Response {
    axum::Json(app.sim.faults()).into_response()
}

async fn admin_put_faults(State(app): State<App>, axum::Json(f): axum::Json<Faults>) -> Response {
    app.sim.set_faults(f.clone());
    axum::Json(f).into_response()
}

fn clock_body(sim: &Sim) -> Response {
    axum::Json(serde_json::json!({"now": sim.now().to_string()})).into_response()
}

async fn admin_clock(State(app): State<App>) -> Response {
    clock_body(&app.sim)
}

#[derive(Deserialize)]
struct Advance {
    seconds: f64,
}

async fn admin_advance(State(app): State<App>, axum::Json(a): axum::Json<Advance>) -> Response {
    match Duration::try_from_secs_f64(a.seconds) {
        Ok(d) => {
            app.sim.advance(d);
            clock_body(&app.sim)
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid seconds: {e}")).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<EndpointSpec>),
    One(Box<EndpointSpec>),
}

async fn admin_add_endpoints(
    State(app): State<App>,
    axum::Json(body): axum::Json<OneOrMany>,
) -> Response {
    let specs = match body {
        OneOrMany::Many(v) => v,
        OneOrMany::One(e) => vec![*e],
    };
    let ids = app.sim.add_endpoints(specs);
    axum::Json(serde_json::json!({ "ids": ids })).into_response()
}

async fn admin_endpoint(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.sim.endpoint(&id) {
        Some(e) => axum::Json(e).into_response(),
        None => (StatusCode::NOT_FOUND, format!("endpoint {id} not found")).into_response(),
    }
}

#[derive(Deserialize)]
struct Online {
    online: bool,
}

async fn admin_online(
    State(app): State<App>,
    Path(id): Path<String>,
    axum::Json(o): axum::Json<Online>,
) -> Response {
    if app.sim.set_online(&id, o.online) {
        axum::Json(serde_json::json!({"id": id, "online": o.online})).into_response()
    } else {
        (StatusCode::NOT_FOUND, format!("endpoint {id} not found")).into_response()
    }
}
