//! The connection objects' own reconcile: read the token from the Secret named, build the connection (a Gateway
//! client under the operator's own fence, so that a once-only request through it asks the same leadership), ask the
//! Gateway once whether the token works and what it offers, and say so in status. Looked at again every minute to
//! re-read the Secret: a new token is taken without a rebuild (the poller keeps what it knows), so the operator needs
//! `get` on those Secrets, never `list` or `watch`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt as _};
use secrecy::SecretString;

use super::{Key, Rotate, TokenAt};
use crate::controller::connection::Connection;
use crate::controller::object::write_status;
use crate::controller::rotation::{self, RotationConfig};
use crate::controller::{Context, Error};
use crate::crd::connection::Server;
use crate::crd::{
    ClusterTaniumConnection, ConnectionStatus, Reason, TaniumConnection, condition, set_condition,
};

pub async fn reconcile_namespaced(
    obj: Arc<TaniumConnection>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = obj
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = obj.name_any();
    let key = Key::Namespaced {
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let token = TokenAt {
        namespace: namespace.clone(),
        name: obj.spec.token_secret_ref.name.clone(),
        key: obj.spec.token_secret_ref.key.clone(),
    };
    let api: Api<TaniumConnection> = Api::namespaced(ctx.client.clone(), &namespace);
    let (previous, generation) = (obj.status.as_ref(), obj.meta().generation);
    let status = connect(&ctx, key, &obj.spec.server, &token, previous, generation).await;
    report(&ctx, &api, obj.as_ref(), previous, status).await
}

pub async fn reconcile_cluster(
    obj: Arc<ClusterTaniumConnection>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let name = obj.name_any();
    let key = Key::Cluster { name: name.clone() };
    let r = &obj.spec.token_secret_ref;
    let token = TokenAt {
        namespace: r.namespace_or(&ctx.config.own_namespace).to_owned(),
        name: r.name.clone(),
        key: r.key.clone(),
    };
    let api: Api<ClusterTaniumConnection> = Api::all(ctx.client.clone());
    let (previous, generation) = (obj.status.as_ref(), obj.meta().generation);
    let status = connect(&ctx, key, &obj.spec.server, &token, previous, generation).await;
    report(&ctx, &api, obj.as_ref(), previous, status).await
}

/// Build or refresh the connection for `key` and ask the Gateway through it; the status that says how it went.
async fn connect(
    ctx: &Arc<Context>,
    key: Key,
    server: &Server,
    token: &TokenAt,
    previous: Option<&ConnectionStatus>,
    generation: Option<i64>,
) -> ConnectionStatus {
    ctx.connections.sweep();
    let recheck = ctx.config.timing.connection_recheck;
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    let outcome = async {
        let (secret, expires) = read_token(ctx, token).await?;
        status.token_expires_at = expires.map(Time);
        let conn = match ctx.connections.current(&key, generation) {
            Some(conn) => {
                // A rotation keeping this token hands the client its token itself (a new one is the client's
                // before it is the Secret's); otherwise only a token the Secret did not hold at the last look.
                if !conn.rotation.active() && conn.took_from_secret(&secret) {
                    conn.gateway.set_token(secret);
                }
                conn
            }
            None => {
                let conn = Arc::new(build(ctx, &key, server, secret.clone())?);
                conn.took_from_secret(&secret);
                let rotate = rotation_for(ctx, &key, server, token, &conn);
                if let Some(old) = ctx.connections.keep(
                    key.clone(),
                    generation,
                    conn.clone(),
                    ctx.config.timing.clone(),
                    rotate,
                ) {
                    tokio::spawn(async move { old.sessions.close_all(&old.gateway).await });
                }
                conn
            }
        };
        let now = conn
            .gateway
            .now()
            .await
            .map_err(|e| (e.reason().to_owned(), e.to_string()))?;
        // Asked once per client (it keeps the answer), not on every look.
        let features = match conn.gateway.features() {
            Some(known) => Some(known),
            None => conn.gateway.detect_features().await.ok(),
        };
        if let Some(features) = features {
            ctx.metrics.gateway_features(&conn.name, &features.named());
            status.features = features
                .named()
                .into_iter()
                .filter(|(_, present)| *present)
                .map(|(name, _)| name.to_owned())
                .collect();
        }
        Ok::<_, (String, String)>(now)
    }
    .await;
    match outcome {
        Ok(_) => {
            // Refreshed when it has grown old, not on every look: a look that learns nothing writes nothing.
            let stale = status.last_successful_request_at.as_ref().is_none_or(|t| {
                jiff::Timestamp::now().duration_since(t.0).unsigned_abs() > recheck * 10
            });
            if stale {
                status.last_successful_request_at = Some(Time(jiff::Timestamp::now()));
            }
            // Said where a person looks: a rotation asked for and not done would end in an expired token.
            let unrotated = match (&server.rotation, ctx.config.rotate_connection_tokens) {
                (Some(_), false) => {
                    "; spec.rotation is not acted on: the operator is not allowed to rotate connection tokens (chart \
                     value connections.tokenRotation)"
                }
                _ => "",
            };
            set_condition(
                &mut status.conditions,
                condition::READY,
                true,
                Reason::Connected.as_str(),
                format!(
                    "the Gateway at {} answers with this token{unrotated}",
                    server.gateway_url
                ),
                generation,
            );
        }
        Err((reason, message)) => {
            set_condition(
                &mut status.conditions,
                condition::READY,
                false,
                &reason,
                message,
                generation,
            );
        }
    }
    // Its token rotation's trouble, as the objects using it say it too (`object::mark_operator_conditions`).
    let trouble = ctx
        .connections
        .current(&key, generation)
        .and_then(|c| c.rotation.trouble());
    rotation::say_trouble(&mut status.conditions, trouble, generation);
    crate::controller::kstatus::derive(&mut status.conditions, generation);
    status
}

/// The rotation `conn` gets, if its object asks and the operator may: none when another rotation already keeps the
/// same token (another connection object's, or the operator's own), which `conn` then says (`TokenSecretShared`).
fn rotation_for(
    ctx: &Arc<Context>,
    key: &Key,
    server: &Server,
    token: &TokenAt,
    conn: &Connection,
) -> Option<Rotate> {
    let asked = server.rotation.as_ref()?;
    if !ctx.config.rotate_connection_tokens {
        return None;
    }
    let own = ctx
        .config
        .token_rotation
        .as_ref()
        .is_some_and(|own| TokenAt::of(own) == *token);
    if own || ctx.connections.rotated_elsewhere(key, token) {
        conn.rotation.set_trouble(Some(rotation::TokenTrouble {
            reason: Reason::TokenSecretShared,
            message: format!(
                "spec.rotation is not acted on: the token in Secret {}/{} (key {}) is already rotated by {}; two \
                 rotations of one token would lock each other out. Give this connection its own token, or ask for \
                 rotation in one place",
                token.namespace,
                token.name,
                token.key,
                if own {
                    "the operator (its own token)"
                } else {
                    "another connection"
                }
            ),
        }));
        return None;
    }
    Some(Rotate {
        ctx: ctx.clone(),
        config: RotationConfig {
            namespace: token.namespace.clone(),
            secret: token.name.clone(),
            key: token.key.clone(),
            lead: Duration::from_secs(asked.before_expiry_seconds),
            check_every: ctx.config.timing.connection_recheck,
        },
    })
}

/// The token, from the Secret key named, and when it expires if the Secret says (`rotation::known_expiry`); never
/// logged or said (only where it was looked for).
async fn read_token(
    ctx: &Context,
    at: &TokenAt,
) -> Result<(SecretString, Option<jiff::Timestamp>), (String, String)> {
    let unreadable = |why: String| {
        (
            Reason::TokenSecretUnreadable.as_str().to_owned(),
            format!(
                "the token Secret {}/{} (key {}) {why}",
                at.namespace, at.name, at.key
            ),
        )
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &at.namespace);
    let secret = match secrets.get_opt(&at.name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(unreadable("does not exist".into())),
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Err(unreadable(format!(
                "cannot be read: the operator may not get Secrets in {} (chart value connections.secretNamespaces)",
                at.namespace
            )));
        }
        Err(e) => return Err(unreadable(format!("cannot be read: {e}"))),
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&at.key))
        .ok_or_else(|| unreadable("has no such key".into()))?;
    let text = std::str::from_utf8(&value.0)
        .map_err(|_| unreadable("holds a token that is not text".into()))?
        .trim();
    if text.is_empty() {
        return Err(unreadable("holds an empty token".into()));
    }
    let token = SecretString::from(text.to_owned());
    let expires = rotation::known_expiry(&secret, &token);
    Ok((token, expires))
}

/// A Gateway client for `server`, under the operator's fence and metrics.
fn build(
    ctx: &Context,
    key: &Key,
    server: &Server,
    token: SecretString,
) -> Result<Connection, (String, String)> {
    let config = crate::controller::wire::gateway_config(server, token);
    let gateway = ctx
        .connections
        .own()
        .gateway
        .sibling(config)
        .map_err(|e| (e.reason().to_owned(), e.to_string()))?;
    Ok(Connection::new(
        key.label(),
        gateway,
        &ctx.metrics,
        ctx.config.poll_batch,
        Duration::from_secs(u64::from(server.direct_connect_idle_timeout_seconds)),
    ))
}

/// Write `status` when it changed (through the one status write, conditional on the version read); look again
/// later (the Secret may change), sooner while broken.
async fn report<K>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    previous: Option<&ConnectionStatus>,
    status: ConnectionStatus,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let is_ready = |s: &ConnectionStatus| {
        crate::crd::condition(&s.conditions, condition::READY).is_some_and(|c| c.status == "True")
    };
    let ready = is_ready(&status);
    if ctx.config.connections_read_only {
        // Another process writes it (a shard reads what the main Deployment's leader wrote): the objects it held
        // look again whenever it reads Ready.
        if previous.is_some_and(is_ready) {
            ctx.connections.became_ready();
        }
    } else if previous != Some(&status) {
        let mut version = obj.meta().resource_version.clone();
        write_status(api, &obj.name_any(), &mut version, &status).await?;
        let news = !previous.is_some_and(is_ready)
            || previous.and_then(|p| p.observed_generation) != status.observed_generation;
        if ready && news {
            // The objects it held look again now: once written, so that they read it Ready.
            ctx.connections.became_ready();
        }
    }
    let again = ctx.config.timing.connection_recheck;
    Ok(Action::requeue(if ready { again } else { again / 3 }))
}
