//! Tanium API token rotation (`tokenRotation.enabled`). The token lives in a Secret (key `token`), mounted into
//! the pod as a file; with rotation on, the leader also reads the Secret through the API, and before the token
//! expires (`lead` ahead) calls `apiTokenRotate` and writes the new token back.
//!
//! `apiTokenRotate` makes the old token useless at once, so the order is what keeps a valid token durable:
//! 1. the intent (`token-rotation-started-at`) is written on the version read, so that a restart knows a rotation
//!    may have happened;
//! 2. `apiTokenRotate`, at most once;
//! 3. at once, the new token under `token` and the old one under `token.previous`, conflicts redone on the fresh
//!    version (the new token exists nowhere else yet);
//! 4. a request with the new token confirms it; then `token.previous` and the intent go.
//!
//! A restart finding the intent resumes: with `token.previous` present it confirms (4); without it, it asks the
//! Gateway whether the token in the Secret still works: yes means the rotation never committed (the intent goes),
//! no means the operator stopped between 2 and 3 and the new token is lost. That is said everywhere a person
//! looks (objects' `GatewayToken` condition, an event on the Secret, the log), and nothing is rotated again until
//! a person puts a valid token into the Secret.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

pub mod state;

use state::Unsaved;
pub use state::{RotationState, TokenTrouble, fingerprint, say_trouble};

use crate::controller::Context;
use crate::controller::connection::Connection;
use crate::crd::{MANAGER, Reason};
use crate::gateway::GatewayError;

pub const EXPIRES_AT: &str = "tanium-operator.dev/token-expires-at";
pub const ROTATED_AT: &str = "tanium-operator.dev/token-rotated-at";
pub const ROTATION_STARTED_AT: &str = "tanium-operator.dev/token-rotation-started-at";
/// Which token `token-expires-at` belongs to: the start of its SHA-256, so that a token a person put in later is
/// not timed by its predecessor's expiry.
pub const TOKEN_FINGERPRINT: &str = "tanium-operator.dev/token-sha256-prefix";

/// Where the token is and when to rotate it.
#[derive(Debug, Clone)]
pub struct RotationConfig {
    pub namespace: String,
    pub secret: String,
    pub key: String,
    /// Rotate this long before the token expires.
    pub lead: Duration,
    /// Look at the Secret and the clock at least this often.
    pub check_every: Duration,
}

impl RotationConfig {
    fn previous_key(&self) -> String {
        format!("{}.previous", self.key)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("token Secret {0}: {1}")]
    Secret(String, String),
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// Only the reason: the request held the token, and its answer may hold the new one.
    #[error("apiTokenRotate failed ({0})")]
    Rotate(&'static str),
}

/// Keep the token valid until `shutdown`. Run by the leader only (with the controllers): two replicas rotating
/// the same token would lock each other out.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()>) {
    let Some(cfg) = ctx.config.token_rotation.clone() else {
        return;
    };
    let own = ctx.connections.own().clone();
    keep_valid(&ctx, &own, &cfg, shutdown).await;
}

/// Keep `conn`'s token (in the Secret `cfg` names) valid until `shutdown`; then write a new token only this process
/// holds before going.
pub async fn keep_valid(
    ctx: &Context,
    conn: &Connection,
    cfg: &RotationConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tracing::info!(connection = %conn.name, secret = %format!("{}/{}", cfg.namespace, cfg.secret), lead = ?cfg.lead, "token rotation on");
    conn.rotation.active.store(true, Ordering::SeqCst);
    tokio::pin!(shutdown);
    loop {
        let wait = match step(ctx, conn, cfg).await {
            Ok(wait) => wait,
            Err(e) => {
                let failures = conn.rotation.failures.fetch_add(1, Ordering::SeqCst) + 1;
                tracing::warn!(connection = %conn.name, error = %e, failures, "token rotation: will try again");
                // One passing failure with days of lead left is not a person's problem; a run of them is.
                if failures >= FAILURES_BEFORE_TROUBLE && !conn.rotation.holds_unsaved() {
                    conn.rotation.set_trouble(Some(TokenTrouble {
                        reason: Reason::TokenRotationFailing,
                        message: format!(
                            "token rotation failed {failures} times in a row; the last time: {e}"
                        ),
                    }));
                }
                cfg.check_every.min(Duration::from_secs(60))
            }
        };
        // A new token only this process holds is written again every few seconds, not every check.
        let wait = if conn.rotation.holds_unsaved() {
            UNSAVED_RETRY
        } else {
            wait
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut shutdown => break,
        }
    }
    // Stopping (SIGTERM, or leadership lost): a new token only this process holds is written before it goes; the
    // write is conditional on the Secret's version, so it is safe whoever leads.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_FLUSH;
    while conn.rotation.holds_unsaved() && tokio::time::Instant::now() < deadline {
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &cfg.namespace);
        let Some(u) = conn.rotation.take_unsaved() else {
            break;
        };
        match write_new(conn, cfg, &api, &u).await {
            Ok(()) => tracing::info!("stopping: the new token was written to the Secret first"),
            Err(e) => {
                tracing::warn!(error = %e, "stopping: the new token is not in the Secret yet; trying again");
                conn.rotation.keep_unsaved(u);
                tokio::time::sleep(UNSAVED_RETRY).await;
            }
        }
    }
    // No stale figure from a replica that no longer looks.
    ctx.metrics.token_expiry_unknown(&conn.name);
    conn.rotation.active.store(false, Ordering::SeqCst);
}

const FAILURES_BEFORE_TROUBLE: u32 = 3;
const UNSAVED_RETRY: Duration = Duration::from_secs(2);
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(15);

/// One look; returns how long until the next.
async fn step(
    ctx: &Context,
    conn: &Connection,
    cfg: &RotationConfig,
) -> Result<Duration, RotationError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &cfg.namespace);
    if let Some(u) = conn.rotation.take_unsaved() {
        // The client keeps the new token meanwhile: the Secret's (old) one is not put back.
        if let Err(e) = write_new(conn, cfg, &api, &u).await {
            conn.rotation.keep_unsaved(u);
            return Err(e);
        }
        return confirm(ctx, conn, cfg, &api, u.rotated.expires_at).await;
    }
    let secret = api.get(&cfg.secret).await?;
    let current = token_in(&secret, cfg)?;
    // The Secret is the truth: the mounted file lags a write by up to a minute (kubelet sync).
    conn.gateway.set_token(current.clone());
    if annotation(&secret, ROTATION_STARTED_AT).is_some() {
        return resume(ctx, conn, cfg, &api, &secret).await;
    }
    let now = conn.gateway.now().await?;
    match known_expiry(&secret, &current) {
        Some(expires) => {
            let left = Duration::try_from(expires.duration_since(now)).unwrap_or_default();
            ctx.metrics.token_expiry(&conn.name, expires);
            if left > cfg.lead {
                conn.rotation.failures.store(0, Ordering::SeqCst);
                conn.rotation.set_trouble(None);
                return Ok((left - cfg.lead).min(cfg.check_every));
            }
            tracing::info!(connection = %conn.name, expires = %expires, "the Gateway token expires within the lead time: rotating");
        }
        None => tracing::info!(
            connection = %conn.name,
            "the Gateway token's expiry is not known (no {EXPIRES_AT} annotation for this token): rotating to learn it"
        ),
    }
    rotate(ctx, conn, cfg, &api, secret, current).await
}

async fn rotate(
    ctx: &Context,
    conn: &Connection,
    cfg: &RotationConfig,
    api: &Api<Secret>,
    secret: Secret,
    current: SecretString,
) -> Result<Duration, RotationError> {
    // 1. The intent, on the version read.
    let started = jiff::Timestamp::now().to_string();
    patch(
        api,
        cfg,
        json!({"metadata": {
            "resourceVersion": secret.metadata.resource_version,
            "annotations": {ROTATION_STARTED_AT: started},
        }}),
    )
    .await?;
    // 2. At most once. On any failure the intent stays: the next step asks the Gateway whether the token in the
    // Secret still works, which tells a rotation that did not happen from one whose answer was lost.
    let rotated = match conn.gateway.rotate_token(&current).await {
        Ok(rotated) => rotated,
        Err(e) => {
            // The request carried the token and the answer may carry a new one: only the reason is repeated.
            return Err(RotationError::Rotate(e.reason()));
        }
    };
    conn.gateway.set_token(rotated.token.clone());
    ctx.fail_point("hang_after_rotate", &ctx.fail_points.hang_after_rotate)
        .await;
    // 3. At once (the new token exists nowhere else); until it is written, every step tries again first.
    let u = Unsaved {
        rotated,
        old: current,
    };
    if let Err(e) = write_new(conn, cfg, api, &u).await {
        conn.rotation.keep_unsaved(u);
        return Err(e);
    }
    ctx.fail_point(
        "hang_after_token_write",
        &ctx.fail_points.hang_after_token_write,
    )
    .await;
    // 4. Confirmed, then the old one goes.
    confirm(ctx, conn, cfg, api, u.rotated.expires_at).await
}

/// The new token under the key and the old one beside it, on the Secret's current version: a conflict (someone
/// labelled the Secret meanwhile) or a passing error is redone on the fresh version, a few times, then left to
/// the next step.
async fn write_new(
    conn: &Connection,
    cfg: &RotationConfig,
    api: &Api<Secret>,
    u: &Unsaved,
) -> Result<(), RotationError> {
    let mut attempt = 0u32;
    loop {
        let written = match api.get(&cfg.secret).await {
            Ok(secret) => {
                let write = json!({
                    "metadata": {
                        "resourceVersion": secret.metadata.resource_version,
                        "annotations": {
                            EXPIRES_AT: u.rotated.expires_at.to_string(),
                            TOKEN_FINGERPRINT: fingerprint(&u.rotated.token),
                            ROTATED_AT: jiff::Timestamp::now().to_string(),
                        },
                    },
                    "data": {
                        cfg.key.as_str(): ByteString(u.rotated.token.expose_secret().as_bytes().to_vec()),
                        cfg.previous_key(): ByteString(u.old.expose_secret().as_bytes().to_vec()),
                    },
                });
                patch(api, cfg, write).await.map(|_| ())
            }
            Err(e) => Err(e.into()),
        };
        match written {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 10 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "writing the new token into the Secret; trying again");
                tokio::time::sleep(Duration::from_millis(100) * attempt).await;
            }
            Err(e) => {
                conn.rotation.set_trouble(Some(TokenTrouble {
                        reason: Reason::TokenNotSaved,
                        message: format!(
                            "the token was rotated but the new one is not yet in Secret {}/{} ({e}); the operator \
                             holds it and keeps trying: do not restart it",
                            cfg.namespace, cfg.secret
                        ),
                    }),
                );
                return Err(e);
            }
        }
    }
}

/// A request with the token now in the Secret; on success the old token and the intent go.
async fn confirm(
    ctx: &Context,
    conn: &Connection,
    cfg: &RotationConfig,
    api: &Api<Secret>,
    expires: jiff::Timestamp,
) -> Result<Duration, RotationError> {
    let now = conn.gateway.now().await?;
    let done = patch(
        api,
        cfg,
        json!({
            "metadata": {"annotations": {ROTATION_STARTED_AT: null}},
            "data": {cfg.previous_key(): null},
        }),
    )
    .await?;
    let left = Duration::try_from(expires.duration_since(now)).unwrap_or_default();
    ctx.metrics.token_expiry(&conn.name, expires);
    conn.rotation.failures.store(0, Ordering::SeqCst);
    conn.rotation.set_trouble(None);
    tracing::info!(connection = %conn.name, expires = %expires, "Gateway token rotated and confirmed");
    event(
        ctx,
        &done,
        false,
        Reason::TokenRotated,
        format!("rotated; the new token expires at {expires}"),
    )
    .await;
    Ok(left.saturating_sub(cfg.lead).min(cfg.check_every))
}

/// A rotation was started and did not finish.
async fn resume(
    ctx: &Context,
    conn: &Connection,
    cfg: &RotationConfig,
    api: &Api<Secret>,
    secret: &Secret,
) -> Result<Duration, RotationError> {
    let has_previous = secret
        .data
        .as_ref()
        .is_some_and(|d| d.contains_key(&cfg.previous_key()));
    if has_previous && let Some(expires) = expiry(secret) {
        tracing::info!("resuming a token rotation: the new token was written; confirming it");
        return confirm(ctx, conn, cfg, api, expires).await;
    }
    match conn.gateway.now().await {
        Ok(_) => {
            tracing::info!(
                "a token rotation had started but not committed: the token in the Secret still works"
            );
            patch(
                api,
                cfg,
                json!({"metadata": {"annotations": {ROTATION_STARTED_AT: null}}}),
            )
            .await?;
            Ok(Duration::ZERO)
        }
        Err(GatewayError::TokenRejected { .. }) => {
            let message = format!(
                "the Gateway refuses the token in Secret {}/{} and the rotation started at {} did not finish: the \
                 operator stopped after apiTokenRotate and before writing the new token, which is lost. Create a \
                 new API token in Tanium and put it into the Secret (key {}); rotation resumes by itself",
                cfg.namespace,
                cfg.secret,
                annotation(secret, ROTATION_STARTED_AT).map_or("?", String::as_str),
                cfg.key
            );
            let fresh =
                conn.rotation.trouble().map(|t| t.reason) != Some(Reason::TokenRotationLost);
            if fresh {
                tracing::error!("{message}");
                event(
                    ctx,
                    secret,
                    true,
                    Reason::TokenRotationLost,
                    message.clone(),
                )
                .await;
            }
            conn.rotation.set_trouble(Some(TokenTrouble {
                reason: Reason::TokenRotationLost,
                message,
            }));
            Ok(cfg.check_every.min(Duration::from_secs(30)))
        }
        Err(e) => Err(e.into()),
    }
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a String> {
    secret.metadata.annotations.as_ref()?.get(key)
}

/// When the token the annotation names expires, as written by the last rotation (or a person).
fn expiry(secret: &Secret) -> Option<jiff::Timestamp> {
    annotation(secret, EXPIRES_AT)?.parse().ok()
}

/// When `token`, read from `secret`, expires: the expiry is the token's only if the fingerprint beside it is this
/// token's (or a person set the expiry alone).
pub fn known_expiry(secret: &Secret, token: &SecretString) -> Option<jiff::Timestamp> {
    let same_token = annotation(secret, TOKEN_FINGERPRINT).is_none_or(|f| *f == fingerprint(token));
    expiry(secret).filter(|_| same_token)
}

fn token_in(secret: &Secret, cfg: &RotationConfig) -> Result<SecretString, RotationError> {
    let key = &cfg.key;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| RotationError::Secret(cfg.secret.clone(), format!("no key {key:?}")))?;
    let token = String::from_utf8_lossy(&bytes.0).trim().to_owned();
    if token.is_empty() {
        return Err(RotationError::Secret(
            cfg.secret.clone(),
            format!("key {key:?} is empty"),
        ));
    }
    Ok(SecretString::from(token))
}

/// A merge patch; with `metadata.resourceVersion` in it, the write happens only on that version.
async fn patch(
    api: &Api<Secret>,
    cfg: &RotationConfig,
    body: serde_json::Value,
) -> Result<Secret, RotationError> {
    Ok(api
        .patch(
            &cfg.secret,
            &PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&body),
        )
        .await?)
}

async fn event(ctx: &Context, secret: &Secret, warning: bool, reason: Reason, note: String) {
    let events = crate::controller::events::Events::default();
    events.raise(warning, reason.as_str(), note);
    events
        .publish(&ctx.client, &ctx.reporter, &secret.object_ref(&()))
        .await;
}
