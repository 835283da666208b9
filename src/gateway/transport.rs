//! HTTP transport: one POST per GraphQL document, the `session` header, bounded concurrency, timeouts,
//! classification of failures and a retry loop that never repeats a mutation which may already have run.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Semaphore;

pub use super::answer::{RawResponse, read_answer};
use super::answer::{classify_send_error, error_chain, retry_same_request};
use super::error::GatewayError;

/// Where the Gateway's single GraphQL endpoint lives under its base URL.
pub const GRAPHQL_PATH: &str = "plugin/products/gateway/graphql";

/// Everything needed to talk to one Gateway. `Debug` is safe to log: the token is redacted.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Base URL of the Tanium server, e.g. `https://tanium.example.com`.
    pub url: String,
    pub token: SecretString,
    /// Extra trusted CA certificates (PEM, may hold several) for a Gateway behind a private CA.
    pub ca_bundle_pem: Option<Vec<u8>>,
    pub tls: TlsVerification,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    /// Upper bound on requests in flight from this client, shared by every caller.
    pub max_concurrent_requests: usize,
}

impl GatewayConfig {
    pub fn new(url: impl Into<String>, token: SecretString) -> Self {
        Self {
            url: url.into(),
            token,
            ca_bundle_pem: None,
            tls: TlsVerification::Verify,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            max_concurrent_requests: 16,
        }
    }
}

/// Whether the Gateway's certificate is checked. Off, anyone on the network path can read the token and answer
/// for the Gateway: for a lab only, never the default, and said on every object (see `controller`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVerification {
    #[default]
    Verify,
    /// Accept any certificate for any name.
    Insecure,
}

impl TlsVerification {
    /// What verification off risks, in the words every warning about it uses (start log, CLI, objects).
    pub const INSECURE_RISK: &str =
        "anyone on the network path could read the API token and answer for the Gateway";
}

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Total tries of one request, the first included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The pause before try `attempt + 1` (attempt counts from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let ceiling = exp.min(self.cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

/// May a document be sent again when we cannot tell whether the first send took effect?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Queries and mutations whose repetition is harmless (stop, approve, ping, close).
    Safe,
    /// Mutations that must happen at most once (actionPerform, process kills).
    AtMostOnce,
}

/// One GraphQL document ready to send.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    /// The `operationName`, also used in logs, errors and metrics.
    pub operation: &'static str,
    pub query: Cow<'a, str>,
    pub repeat: Repeat,
    /// Its variables or its answer hold an API token: errors about it are logged by reason only, and an error
    /// page's body is not quoted (a proxy may echo the request).
    pub carries_token: bool,
    /// A once-only mutation is not put on the wire after this instant (see [`SendBy`]).
    pub send_by: Option<SendBy>,
    /// How long the Gateway is asked to wait before it answers (a live question's `maxWaitTime`): added to the
    /// request timeout, so that a slow answer the client asked for is not taken for a hung Gateway.
    pub server_wait: Duration,
}

impl Document<'static> {
    pub const fn fixed(operation: &'static str, query: &'static str, repeat: Repeat) -> Self {
        Self {
            operation,
            query: Cow::Borrowed(query),
            repeat,
            carries_token: false,
            send_by: None,
            server_wait: Duration::ZERO,
        }
    }

    pub const fn carrying_a_token(mut self) -> Self {
        self.carries_token = true;
        self
    }
}

impl Document<'_> {
    pub fn waiting(mut self, server_wait: Duration) -> Self {
        self.server_wait = server_wait;
        self
    }

    pub fn sent_by(mut self, send_by: Option<SendBy>) -> Self {
        self.send_by = send_by;
        self
    }
}

/// The last instant, on this process's monotonic clock, at which a once-only mutation may still be written: its
/// recorded intent is then young enough that a look-up by name after the look-up grace is sure to see it. A
/// request that waited longer (for a concurrency permit, or in a paused process) is not sent at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendBy {
    pub deadline: Instant,
    /// What the deadline protects, for the error: e.g. "the intent recorded 12 s ago".
    pub what: &'static str,
}

/// One of the client's request slots, taken ahead (see [`GatewayClient::reserve`]).
#[derive(Debug)]
pub struct Reserved {
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// Asked right before a once-only mutation is written to the wire: may this process still act? A leader that
/// cannot show, on its own clock, that it still holds its Lease says no (see `runtime::lease`). `Err` says why.
pub trait Fence: Send + Sync {
    fn may_act(&self) -> Result<(), String>;
}

/// Called after every request attempt with the operation, `ok` or the error's reason, and the latency.
pub type Observer = Arc<dyn Fn(&'static str, &'static str, Duration) + Send + Sync>;

struct Inner {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    token: RwLock<SecretString>,
    /// Bumped whenever the token changes, so that a request refused for the old token is sent again once, and
    /// objects held by a rejected token are looked at again at once (`token_changes`).
    token_generation: tokio::sync::watch::Sender<u64>,
    permits: Arc<Semaphore>,
    request_timeout: Duration,
    retry: RetryPolicy,
    observer: std::sync::OnceLock<Observer>,
    tls: TlsVerification,
    /// What the Gateway offers, once detected (`introspect`).
    features: RwLock<Option<super::features::Features>>,
    /// Consulted before every once-only mutation; none: this process acts alone (no leader election).
    fence: RwLock<Option<Arc<dyn Fence>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("token", &"[REDACTED]")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A cheap-to-clone handle on one Gateway.
#[derive(Debug, Clone)]
pub struct GatewayClient {
    inner: Arc<Inner>,
}

impl GatewayClient {
    pub fn new(config: GatewayConfig) -> Result<Self, GatewayError> {
        let base = reqwest::Url::parse(&config.url)
            .map_err(|e| GatewayError::Config(format!("Gateway URL {:?}: {e}", config.url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(GatewayError::Config(format!(
                "Gateway URL {:?} must be http or https",
                config.url
            )));
        }
        let endpoint = join_path(base, GRAPHQL_PATH)?;
        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            // A redirect means a login page: the token was not accepted. Never follow it with the token.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tanium-operator/", env!("CARGO_PKG_VERSION")));
        match (config.tls, &config.ca_bundle_pem) {
            (TlsVerification::Insecure, Some(_)) => {
                return Err(GatewayError::Config(
                    "a CA bundle and TLS verification off contradict each other: drop one".into(),
                ));
            }
            (TlsVerification::Insecure, None) => {
                builder = builder.danger_accept_invalid_certs(true);
            }
            (TlsVerification::Verify, _) => {}
        }
        if let Some(pem) = &config.ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| GatewayError::Config(format!("CA bundle: {e}")))?;
            if certs.is_empty() {
                return Err(GatewayError::Config(
                    "CA bundle holds no PEM certificate".into(),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| GatewayError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                endpoint,
                token: RwLock::new(config.token),
                token_generation: tokio::sync::watch::Sender::new(0),
                permits: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
                request_timeout: config.request_timeout,
                retry: config.retry,
                observer: std::sync::OnceLock::new(),
                tls: config.tls,
                features: RwLock::new(None),
                fence: RwLock::new(None),
            }),
        })
    }

    pub fn tls(&self) -> TlsVerification {
        self.inner.tls
    }

    /// What the Gateway offers, if it was detected.
    pub fn features(&self) -> Option<super::features::Features> {
        match self.inner.features.read() {
            Ok(f) => *f,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    pub(crate) fn remember_features(&self, features: super::features::Features) {
        match self.inner.features.write() {
            Ok(mut f) => *f = Some(features),
            Err(poisoned) => *poisoned.into_inner() = Some(features),
        }
    }

    /// The GraphQL URL this client posts to.
    pub fn endpoint(&self) -> &str {
        self.inner.endpoint.as_str()
    }

    /// Report every request attempt (metrics). Set once; later calls are ignored.
    pub fn observe_with(&self, observer: Observer) {
        let _ = self.inner.observer.set(observer);
    }

    /// Every once-only mutation from now on is sent only if `fence` allows it at that moment.
    pub fn fence_with(&self, fence: Arc<dyn Fence>) {
        match self.inner.fence.write() {
            Ok(mut f) => *f = Some(fence),
            Err(poisoned) => *poisoned.into_inner() = Some(fence),
        }
    }

    /// A client for another server, under this one's fence: a once-only mutation sent through it asks the same
    /// fence (the same leadership) as one sent through this one. Its observer is its own (`observe_with`), so that
    /// its requests are counted under its own name.
    pub fn sibling(&self, config: GatewayConfig) -> Result<Self, GatewayError> {
        let other = Self::new(config)?;
        let fence = match self.inner.fence.read() {
            Ok(f) => f.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(fence) = fence {
            other.fence_with(fence);
        }
        Ok(other)
    }

    /// Why a once-only mutation may not be written now, if it may not.
    fn fenced(&self, doc: &Document<'_>) -> Option<GatewayError> {
        if doc.repeat != Repeat::AtMostOnce {
            return None;
        }
        let refused = |reason: String| GatewayError::Fenced {
            operation: doc.operation,
            reason,
        };
        if let Some(by) = doc.send_by {
            let now = Instant::now();
            if now > by.deadline {
                return Some(refused(format!(
                    "{} is {:?} past the time it could still be sent safely; it will be looked up by name first",
                    by.what,
                    now - by.deadline
                )));
            }
        }
        let fence = match self.inner.fence.read() {
            Ok(f) => f.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        fence.and_then(|f| f.may_act().err()).map(refused)
    }

    /// Swap the token (rotation, a re-read Secret file) without rebuilding the client.
    pub fn set_token(&self, token: SecretString) {
        let mut guard = match self.inner.token.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.expose_secret() != token.expose_secret() {
            *guard = token;
            self.inner.token_generation.send_modify(|g| *g += 1);
        }
    }

    /// Yields each time the token changes from now on (a re-read Secret file, a rotation, also another shard's).
    pub fn token_changes(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        let changes = self.inner.token_generation.subscribe();
        futures::stream::unfold(changes, |mut changes| async move {
            changes.changed().await.ok().map(|()| ((), changes))
        })
    }

    fn session_header(&self) -> Result<HeaderValue, GatewayError> {
        let guard = match self.inner.token.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut value = HeaderValue::from_str(guard.expose_secret()).map_err(|_| {
            GatewayError::Config("the API token contains characters not allowed in a header".into())
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Send a document and decode its answer with `decode`, retrying what is safe to retry.
    ///
    /// `decode` sees the raw answer and turns GraphQL and payload errors into `GatewayError`s, so that a retryable
    /// payload error is retried here like a 503.
    pub async fn call<T>(
        &self,
        doc: &Document<'_>,
        variables: &Value,
        decode: impl Fn(RawResponse) -> Result<T, GatewayError>,
    ) -> Result<T, GatewayError> {
        self.call_reserved(doc, variables, decode, None).await
    }

    /// Take a request slot now, for a request to send soon: a once-only mutation's wait for a slot then comes
    /// before its intent is recorded, not between the intent and the send (where it would count against
    /// [`SendBy`]).
    pub async fn reserve(&self) -> Result<Reserved, GatewayError> {
        self.inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map(|slot| Reserved { _slot: slot })
            .map_err(|_| GatewayError::Config("client is shut down".into()))
    }

    /// [`GatewayClient::call`], its first attempt in a slot taken beforehand.
    pub async fn call_reserved<T>(
        &self,
        doc: &Document<'_>,
        variables: &Value,
        decode: impl Fn(RawResponse) -> Result<T, GatewayError>,
        mut reserved: Option<Reserved>,
    ) -> Result<T, GatewayError> {
        let policy = self.inner.retry;
        let mut attempt = 1;
        let mut retried_with_new_token = false;
        loop {
            let token_generation = *self.inner.token_generation.borrow();
            let outcome = match self.send_once(doc, variables, reserved.take()).await {
                Ok(raw) => decode(raw),
                Err(e) => Err(e),
            };
            let err = match outcome {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            // Sent just before a rotated token was put in: once more with the new one (refused, it took no effect;
            // a once-only mutation only when the refusal shows that for certain).
            if matches!(err, GatewayError::TokenRejected { .. })
                && (doc.repeat == Repeat::Safe || err.certainly_not_applied())
                && !retried_with_new_token
                && *self.inner.token_generation.borrow() != token_generation
            {
                retried_with_new_token = true;
                continue;
            }
            let shown = if doc.carries_token {
                err.reason().to_owned()
            } else {
                err.to_string()
            };
            if matches!(err, GatewayError::Fenced { .. }) {
                tracing::warn!(operation = doc.operation, error = %shown, "once-only mutation not sent");
                return Err(err);
            }
            if doc.repeat == Repeat::AtMostOnce && !err.certainly_not_applied() {
                tracing::warn!(operation = doc.operation, error = %shown, "outcome of a once-only mutation is unknown; not retrying");
                return Err(GatewayError::OutcomeUnknown {
                    operation: doc.operation,
                    source: Box::new(err),
                });
            }
            if !retry_same_request(&err) || attempt >= policy.max_attempts.max(1) {
                return Err(err);
            }
            let pause = policy.delay(attempt);
            tracing::debug!(operation = doc.operation, attempt, ?pause, error = %shown, "retrying Gateway request");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    async fn send_once(
        &self,
        doc: &Document<'_>,
        variables: &Value,
        reserved: Option<Reserved>,
    ) -> Result<RawResponse, GatewayError> {
        let started = Instant::now();
        let result = self.send_unobserved(doc, variables, reserved).await;
        if let Some(observe) = self.inner.observer.get() {
            let outcome = result.as_ref().map_or_else(GatewayError::reason, |_| "ok");
            observe(doc.operation, outcome, started.elapsed());
        }
        result
    }

    async fn send_unobserved(
        &self,
        doc: &Document<'_>,
        variables: &Value,
        reserved: Option<Reserved>,
    ) -> Result<RawResponse, GatewayError> {
        let op = doc.operation;
        let body = serde_json::json!({
            "query": doc.query,
            "variables": variables,
            "operationName": op,
        });
        let session = self.session_header()?;
        let _permit = match reserved {
            Some(slot) => slot,
            None => self.reserve().await?,
        };
        // After the wait for a permit, right before the write: the last moment this process can still decline.
        if let Some(refusal) = self.fenced(doc) {
            return Err(refusal);
        }
        let started = Instant::now();
        let mut request = self
            .inner
            .http
            .post(self.inner.endpoint.clone())
            .header("session", session)
            .header(CONTENT_TYPE, "application/json")
            .json(&body);
        if !doc.server_wait.is_zero() {
            request = request.timeout(self.inner.request_timeout + doc.server_wait);
        }
        let sent = request.send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Err(classify_send_error(op, &e)),
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let bytes = response.bytes().await.map_err(|e| GatewayError::NoAnswer {
            operation: op,
            message: format!("reading the response body: {}", error_chain(&e)),
        })?;
        tracing::debug!(
            operation = op,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Gateway request"
        );

        read_answer(
            op,
            status.as_u16(),
            &content_type,
            &bytes,
            !doc.carries_token,
        )
    }
}

fn join_path(mut base: reqwest::Url, path: &str) -> Result<reqwest::Url, GatewayError> {
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    base.join(path)
        .map_err(|e| GatewayError::Config(format!("Gateway URL: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for attempt in 1..20 {
            assert!(p.delay(attempt) <= Duration::from_secs(1));
        }
        assert!(p.delay(1) <= Duration::from_millis(100));
        // Full jitter: over many draws the delays differ.
        let draws: std::collections::BTreeSet<_> = (0..50).map(|_| p.delay(5)).collect();
        assert!(draws.len() > 1);
    }

    #[test]
    fn endpoint_is_under_the_base_path() {
        let c = GatewayClient::new(GatewayConfig::new(
            "https://tanium.example.com/base",
            SecretString::from("token-x"),
        ))
        .unwrap();
        assert_eq!(
            c.endpoint(),
            "https://tanium.example.com/base/plugin/products/gateway/graphql"
        );
        assert!(
            GatewayClient::new(GatewayConfig::new("ftp://x", SecretString::from("t"))).is_err()
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        let cfg = GatewayConfig::new("https://t", SecretString::from("token-supersecret"));
        let client = GatewayClient::new(cfg.clone()).unwrap();
        assert!(!format!("{cfg:?}").contains("supersecret"));
        assert!(!format!("{client:?}").contains("supersecret"));
    }

    /// A connection object's client sends a once-only mutation only when the operator's own leadership allows.
    #[test]
    fn a_sibling_asks_the_same_fence() {
        struct NotLeading;
        impl Fence for NotLeading {
            fn may_act(&self) -> Result<(), String> {
                Err("not leading".into())
            }
        }
        let client = |url: &str| {
            GatewayClient::new(GatewayConfig::new(url, SecretString::from("t")))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let own = client("https://own");
        own.fence_with(Arc::new(NotLeading));
        let lab = own
            .sibling(GatewayConfig::new("https://lab", SecretString::from("t2")))
            .unwrap_or_else(|e| panic!("{e}"));
        let perform = Document::fixed("actionPerform", "mutation { x }", Repeat::AtMostOnce);
        assert!(matches!(
            lab.fenced(&perform),
            Some(GatewayError::Fenced { .. })
        ));
        let read = Document::fixed("now", "{ now }", Repeat::Safe);
        assert!(lab.fenced(&read).is_none(), "reads are not fenced");
        assert!(
            client("https://lab").fenced(&perform).is_none(),
            "a client built on its own acts alone"
        );
    }

    #[test]
    fn bad_ca_bundle_is_a_config_error() {
        let mut cfg = GatewayConfig::new("https://t", SecretString::from("t"));
        cfg.ca_bundle_pem = Some(b"not a pem".to_vec());
        assert!(matches!(
            GatewayClient::new(cfg),
            Err(GatewayError::Config(_))
        ));
    }
}
