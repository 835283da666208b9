//! The Gateway the cluster's operator talks to, read the way the operator reads it: its Deployment's environment,
//! the token file mounted from a Secret, the CA bundle mounted from a ConfigMap.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret};
use kube::Api;
use secrecy::SecretString;

use crate::cli::CliError;
use crate::crd::connection::{ConnectionKind, ConnectionRef};
use crate::crd::{ClusterTaniumConnection, TaniumConnection};
use crate::gateway::{GatewayClient, GatewayConfig, TlsVerification};

#[derive(clap::Args, Debug, Clone)]
pub struct OperatorRef {
    /// Namespace of the operator's Deployment (with --from-cluster).
    #[arg(long, default_value = "tanium-system")]
    pub operator_namespace: String,
    /// Name of the operator's Deployment (with --from-cluster).
    #[arg(long, default_value = "tanium-operator")]
    pub operator_name: String,
}

/// Where a file the operator reads comes from.
#[derive(Debug, PartialEq, Eq)]
enum Mounted {
    Secret { name: String, key: String },
    ConfigMap { name: String, key: String },
}

pub async fn gateway(client: &kube::Client, op: &OperatorRef) -> Result<GatewayClient, CliError> {
    let at = format!("deployment {}/{}", op.operator_namespace, op.operator_name);
    let deployment = Api::<Deployment>::namespaced(client.clone(), &op.operator_namespace)
        .get(&op.operator_name)
        .await
        .map_err(|e| CliError::Config(format!("{at}: {e}")))?;
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .ok_or_else(|| CliError::Config(format!("{at} has no pod template")))?;
    let container = pod
        .containers
        .iter()
        .find(|c| env(c, "TANIUM_GATEWAY_URL").is_some())
        .ok_or_else(|| CliError::Config(format!("{at} sets no TANIUM_GATEWAY_URL")))?;
    let url = env(container, "TANIUM_GATEWAY_URL").unwrap_or_default();
    let token_path = env(container, "TANIUM_TOKEN_FILE")
        .ok_or_else(|| CliError::Config(format!("{at} sets no TANIUM_TOKEN_FILE")))?;
    let token = read(
        client,
        &op.operator_namespace,
        &mounted(&pod, container, &token_path, &at)?,
    )
    .await?;
    let token = String::from_utf8_lossy(&token).trim().to_owned();
    let mut config = GatewayConfig::new(url, SecretString::from(token));
    if let Some(ca_path) = env(container, "TANIUM_CA_FILE") {
        let source = mounted(&pod, container, &ca_path, &at)?;
        config.ca_bundle_pem = Some(read(client, &op.operator_namespace, &source).await?);
    }
    if env(container, "TANIUM_INSECURE_SKIP_TLS_VERIFY")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        config.tls = TlsVerification::Insecure;
        eprintln!(
            "WARNING: the operator does not check the Gateway's TLS certificate (TANIUM_INSECURE_SKIP_TLS_VERIFY), \
             and neither does this preview"
        );
    }
    if let Some(seconds) =
        env(container, "TANIUM_REQUEST_TIMEOUT_SECONDS").and_then(|s| s.parse().ok())
    {
        config.request_timeout = Duration::from_secs(u64::max(seconds, 1));
    }
    Ok(GatewayClient::new(config)?)
}

/// The Gateway of the connection object `wanted`, as an object in `namespace` naming it would reach it: its own
/// namespace's TaniumConnection, or a ClusterTaniumConnection that lists the namespace; the token from its Secret.
pub async fn connection_gateway(
    client: &kube::Client,
    op: &OperatorRef,
    namespace: &str,
    wanted: &ConnectionRef,
) -> Result<GatewayClient, CliError> {
    let name = &wanted.name;
    let (server, token_at) = match wanted.kind {
        ConnectionKind::TaniumConnection => {
            let conn = Api::<TaniumConnection>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| {
                    CliError::Config(format!("TaniumConnection {namespace}/{name}: {e}"))
                })?;
            let r = conn.spec.token_secret_ref;
            (conn.spec.server, (namespace.to_owned(), r.name, r.key))
        }
        ConnectionKind::ClusterTaniumConnection => {
            let conn = Api::<ClusterTaniumConnection>::all(client.clone())
                .get(name)
                .await
                .map_err(|e| CliError::Config(format!("ClusterTaniumConnection {name}: {e}")))?;
            if !conn.spec.allows(namespace) {
                return Err(CliError::Config(format!(
                    "ClusterTaniumConnection {name} does not list namespace {namespace}: the operator would not \
                     use it for this object"
                )));
            }
            let r = conn.spec.token_secret_ref;
            let ns = r.namespace_or(&op.operator_namespace).to_owned();
            (conn.spec.server, (ns, r.name, r.key))
        }
    };
    let (ns, secret, key) = token_at;
    let token = read(client, &ns, &Mounted::Secret { name: secret, key }).await?;
    let token = String::from_utf8_lossy(&token).trim().to_owned();
    if server.insecure_skip_tls_verify {
        eprintln!(
            "WARNING: connection {name} does not check the Gateway's TLS certificate (insecureSkipTLSVerify), and \
             neither does this preview"
        );
    }
    Ok(GatewayClient::new(
        crate::controller::wire::gateway_config(&server, SecretString::from(token)),
    )?)
}

fn env(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

/// The volume behind `path` in `container`: the mount whose path holds it, and the key is the rest.
fn mounted(
    pod: &PodSpec,
    container: &Container,
    path: &str,
    at: &str,
) -> Result<Mounted, CliError> {
    let unknown = || {
        CliError::Config(format!(
            "{at}: {path} is not mounted from a Secret or ConfigMap"
        ))
    };
    let (mount, key) = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let rest = path
                .strip_prefix(m.mount_path.trim_end_matches('/'))?
                .strip_prefix('/')?;
            Some((m, rest))
        })
        .max_by_key(|(m, _)| m.mount_path.len())
        .ok_or_else(unknown)?;
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .ok_or_else(unknown)?;
    let key = mount.sub_path.clone().unwrap_or_else(|| key.to_owned());
    if let Some(secret) = &volume.secret {
        return Ok(Mounted::Secret {
            name: secret.secret_name.clone().ok_or_else(unknown)?,
            key,
        });
    }
    if let Some(cm) = &volume.config_map {
        return Ok(Mounted::ConfigMap {
            name: cm.name.clone(),
            key,
        });
    }
    Err(unknown())
}

async fn read(client: &kube::Client, ns: &str, source: &Mounted) -> Result<Vec<u8>, CliError> {
    match source {
        Mounted::Secret { name, key } => {
            let secret = Api::<Secret>::namespaced(client.clone(), ns)
                .get(name)
                .await
                .map_err(|e| CliError::Config(format!("secret {ns}/{name}: {e}")))?;
            secret
                .data
                .and_then(|mut d| d.remove(key))
                .map(|b| b.0)
                .ok_or_else(|| CliError::Config(format!("secret {ns}/{name} has no key {key}")))
        }
        Mounted::ConfigMap { name, key } => {
            let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get(name)
                .await
                .map_err(|e| CliError::Config(format!("configmap {ns}/{name}: {e}")))?;
            cm.data
                .and_then(|mut d| d.remove(key))
                .map(String::into_bytes)
                .ok_or_else(|| CliError::Config(format!("configmap {ns}/{name} has no key {key}")))
        }
    }
}
