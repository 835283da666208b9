//! Metrics (prometheus-client) and the HTTP endpoints a platform team scrapes and probes: `/metrics`, `/healthz`,
//! `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: String,
    /// `ok`, or the error's reason.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabels {
    /// Which connection (`own`, `TaniumConnection/<namespace>/<name>`, `ClusterTaniumConnection/<name>`).
    pub connection: String,
    pub operation: String,
    /// `ok`, or the error's reason (TokenRejected, GatewayHttpError, …).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub connection: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    pub connection: String,
    pub feature: String,
}

/// What `tanium_operator_build_info` says about this build: `version` (the crate's), `rustc` (the compiler's
/// version, from build.rs), and `git_commit` when the build had `TANIUM_GIT_COMMIT` in its environment (the
/// Dockerfile's build argument of that name); a label not known is left out.
pub fn build_labels() -> Vec<(&'static str, String)> {
    let mut labels = vec![("version", env!("CARGO_PKG_VERSION").to_owned())];
    for (name, value) in [
        ("rustc", option_env!("TANIUM_RUSTC_VERSION")),
        ("git_commit", option_env!("TANIUM_GIT_COMMIT")),
    ] {
        if let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) {
            labels.push((name, v.to_owned()));
        }
    }
    labels
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub kind: String,
    pub phase: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 5 ms … ~40 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric the operator exports. Counter names get `_total` from the encoder.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_seconds: HistogramFamily<KindLabels>,
    pub gateway_requests: Family<GatewayLabels, Counter>,
    pub gateway_seconds: HistogramFamily<OperationLabels>,
    pub leader: Gauge,
    /// When each connection's Gateway token expires (Unix seconds), as last seen by its token rotation; no series
    /// until known.
    token_expiry: Family<ConnectionLabels, Gauge>,
    /// 1 for what the Gateway offers, 0 for what it lacks, once detected.
    pub gateway_features: Family<FeatureLabels, Gauge>,
    pub objects: Family<PhaseLabels, Gauge>,
    /// The phase last counted for each object (kind, uid), so that gauges move by transitions.
    phases: std::sync::Mutex<std::collections::HashMap<(String, String), String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tanium_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        let reconcile_seconds: HistogramFamily<KindLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by kind",
            reconcile_seconds.clone(),
        );
        let gateway_requests = Family::<GatewayLabels, Counter>::default();
        registry.register(
            "gateway_requests",
            "Tanium Gateway requests (each attempt) by operation and outcome",
            gateway_requests.clone(),
        );
        let gateway_seconds: HistogramFamily<OperationLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "gateway_request_duration_seconds",
            "Tanium Gateway request latency",
            gateway_seconds.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica reconciles (holds the lease)",
            leader.clone(),
        );
        let token_expiry = Family::<ConnectionLabels, Gauge>::default();
        registry.register(
            "gateway_token_expiry_timestamp_seconds",
            "When a connection's Gateway API token expires, in Unix seconds (with token rotation on, the leader \
             reports it; no sample until known)",
            token_expiry.clone(),
        );
        let build_info = Family::<Vec<(&'static str, String)>, Gauge>::default();
        build_info.get_or_create(&build_labels()).set(1);
        registry.register(
            "build_info",
            "1, labelled with this build's version, compiler and (when known) git commit",
            build_info,
        );
        let gateway_features = Family::<FeatureLabels, Gauge>::default();
        registry.register(
            "gateway_feature",
            "What the Gateway offers (1) or lacks (0), detected by introspection at start",
            gateway_features.clone(),
        );
        let objects = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "objects",
            "Objects by kind and phase, as this replica last saw them",
            objects.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_seconds,
            gateway_requests,
            gateway_seconds,
            leader,
            token_expiry,
            gateway_features,
            objects,
            phases: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl Metrics {
    /// What a connection's Gateway offers: each feature by name, and whether it is there.
    pub fn gateway_features(&self, connection: &str, features: &[(&str, bool)]) {
        for &(feature, present) in features {
            self.gateway_features
                .get_or_create(&FeatureLabels {
                    connection: connection.into(),
                    feature: feature.into(),
                })
                .set(i64::from(present));
        }
    }

    /// The connection's Gateway token expires at `at`.
    pub fn token_expiry(&self, connection: &str, at: jiff::Timestamp) {
        self.token_expiry
            .get_or_create(&ConnectionLabels {
                connection: connection.into(),
            })
            .set(at.as_second());
    }

    /// Not known here (rotation off, or another replica leads): no sample, so no alert and no stale figure.
    pub fn token_expiry_unknown(&self, connection: &str) {
        self.token_expiry.remove(&ConnectionLabels {
            connection: connection.into(),
        });
    }

    /// What [`Self::token_expiry`] last set for `connection`, in Unix seconds; `None` when unknown.
    pub fn token_expires_at(&self, connection: &str) -> Option<i64> {
        self.token_expiry
            .get(&ConnectionLabels {
                connection: connection.into(),
            })
            .map(|g| g.get())
    }

    pub fn reconciled(&self, kind: &str, result: &str, took: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
        self.reconcile_seconds
            .get_or_create(&KindLabels { kind: kind.into() })
            .observe(took.as_secs_f64());
    }

    /// One Gateway request attempt through `connection`.
    pub fn gateway_request(
        &self,
        connection: &str,
        operation: &str,
        outcome: &str,
        took: Duration,
    ) {
        self.gateway_requests
            .get_or_create(&GatewayLabels {
                connection: connection.into(),
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.gateway_seconds
            .get_or_create(&OperationLabels {
                connection: connection.into(),
                operation: operation.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// An object's phase after a reconcile (`None`: the object is gone).
    pub fn phase(&self, kind: &str, uid: &str, phase: Option<&str>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        let key = (kind.to_owned(), uid.to_owned());
        let old = match phase {
            Some(p) => phases.insert(key, p.to_owned()),
            None => phases.remove(&key),
        };
        if old.as_deref() == phase {
            return;
        }
        if let Some(old) = old {
            self.objects
                .get_or_create(&PhaseLabels {
                    kind: kind.into(),
                    phase: old,
                })
                .dec();
        }
        if let Some(new) = phase {
            self.objects
                .get_or_create(&PhaseLabels {
                    kind: kind.into(),
                    phase: new.into(),
                })
                .inc();
        }
    }

    /// Forget every object (this replica no longer reconciles; another one counts them).
    pub fn clear_phases(&self) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        for ((kind, _), phase) in phases.drain() {
            self.objects
                .get_or_create(&PhaseLabels { kind, phase })
                .dec();
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::warn!("cannot encode metrics");
        }
        out
    }
}

/// Readiness: set once the Kubernetes API and the Gateway have both answered.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    ready: Arc<Readiness>,
}

pub fn router(metrics: Arc<Metrics>, ready: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, ready })
}

async fn metrics_handler(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    if s.ready.get() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Serve the endpoints until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, router(metrics, ready))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_exposition() {
        let m = Metrics::default();
        m.reconciled("TaniumAction", "ok", Duration::from_millis(12));
        m.gateway_request("own", "actionPerform", "ok", Duration::from_millis(3));
        m.leader.set(1);
        m.phase("TaniumAction", "u1", Some("Running"));
        m.phase("TaniumAction", "u2", Some("Running"));
        m.phase("TaniumAction", "u1", Some("Completed"));
        m.phase("TaniumAction", "u2", None);
        let text = m.encode();
        assert!(
            text.contains(r#"tanium_operator_objects{kind="TaniumAction",phase="Running"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tanium_operator_objects{kind="TaniumAction",phase="Completed"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tanium_operator_reconciles_total{kind="TaniumAction",result="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"tanium_operator_gateway_requests_total{connection="own",operation="actionPerform",outcome="ok"} 1"#
        ));
        assert!(text.contains("tanium_operator_reconcile_duration_seconds_bucket"));
        assert!(text.contains("tanium_operator_leader 1"));
    }

    #[test]
    fn token_expiry_is_a_timestamp_and_absent_until_known() {
        let m = Metrics::default();
        let name = "tanium_operator_gateway_token_expiry_timestamp_seconds";
        let samples = |m: &Metrics| -> Vec<String> {
            let mut lines: Vec<String> = m
                .encode()
                .lines()
                .filter(|l| l.starts_with(name))
                .map(String::from)
                .collect();
            lines.sort();
            lines
        };
        assert!(samples(&m).is_empty(), "no sample until known");
        assert_eq!(m.token_expires_at("own"), None);
        let at: jiff::Timestamp = "2030-01-02T03:04:05Z".parse().unwrap();
        m.token_expiry("own", at);
        m.token_expiry("TaniumConnection/lab/main", at);
        assert_eq!(
            samples(&m),
            [
                format!("{name}{{connection=\"TaniumConnection/lab/main\"}} 1893553445"),
                format!("{name}{{connection=\"own\"}} 1893553445"),
            ]
        );
        assert_eq!(m.token_expires_at("own"), Some(1_893_553_445));
        m.token_expiry_unknown("own");
        assert_eq!(samples(&m).len(), 1, "{:?}", samples(&m));
    }

    #[test]
    fn build_info_is_one_with_the_version() {
        let text = Metrics::default().encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("tanium_operator_build_info{"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            line.starts_with(&format!(
                "tanium_operator_build_info{{version=\"{}\",rustc=\"1.",
                env!("CARGO_PKG_VERSION")
            )),
            "{line}"
        );
        assert!(line.ends_with("} 1"), "{line}");
    }
}
