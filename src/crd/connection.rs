//! `TaniumConnection` (short name `tconn`) and `ClusterTaniumConnection` (`ctconn`): one Tanium server and the API
//! token that reaches it, as cert-manager has Issuer and ClusterIssuer. A namespaced object names the one it uses in
//! `spec.connectionRef`; without it, the operator's default connection (its flags and chart values) is used.

// kube's `printcolumn(type_ = ...)` repeats attribute keys by design; clippy reads them as duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The Tanium server and how to speak to it: what both kinds share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    /// Base URL of the Tanium server (the Gateway is at `<url>/plugin/products/gateway/graphql`).
    #[schemars(
        regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"),
        length(max = 2048)
    )]
    pub gateway_url: String,
    /// PEM bundle of extra CA certificates for the Gateway's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub ca_bundle: Option<String>,
    /// Do not check the Gateway's TLS certificate. A lab only: anyone on the network path could read the token
    /// and answer for the Gateway. Every object using this connection says so (condition GatewayTLSVerified).
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// Seconds one Gateway request may take.
    #[serde(default = "Server::default_request_timeout")]
    #[schemars(range(min = 1, max = 300))]
    pub request_timeout_seconds: u32,
    /// Seconds a Direct Connect connection to an endpoint stays open without a request.
    #[serde(default = "Server::default_direct_connect_idle_timeout")]
    #[schemars(range(min = 10, max = 3600))]
    pub direct_connect_idle_timeout_seconds: u32,
    /// Gateway requests in flight at once for the objects using this connection.
    #[serde(default = "Server::default_concurrency")]
    #[schemars(range(min = 1, max = 64))]
    pub concurrency: u16,
    /// Rotate the API token before it expires (`apiTokenRotate`), writing the new one into the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
}

impl Server {
    fn default_request_timeout() -> u32 {
        30
    }
    fn default_direct_connect_idle_timeout() -> u32 {
        120
    }
    fn default_concurrency() -> u16 {
        8
    }
}

/// When to rotate the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Rotate this many seconds before the token expires.
    #[schemars(range(min = 3600))]
    pub before_expiry_seconds: u64,
}

/// The Secret key that holds the API token, in the connection's own namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalTokenSecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key of the Secret's data that holds the token.
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The Secret key that holds the API token: in the operator's namespace unless `namespace` names another one the
/// operator may read Secrets in (chart value `connections.secretNamespaces`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenSecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key of the Secret's data that holds the token.
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// The Secret's namespace; the operator's own when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

impl TokenSecretRef {
    /// The Secret's namespace: the one named, else the operator's own (`operator_namespace`).
    pub fn namespace_or<'a>(&'a self, operator_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(operator_namespace)
    }
}

fn default_token_key() -> String {
    "token".into()
}

/// One Tanium server and a token for it, usable by the objects of this namespace (`spec.connectionRef`).
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tanium-operator.dev",
    version = "v1alpha1",
    kind = "TaniumConnection",
    plural = "taniumconnections",
    shortname = "tconn",
    category = "tanium",
    namespaced,
    status = "ConnectionStatus",
    doc = "One Tanium server and an API token for it, usable by the objects of this namespace.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Gateway", type_ = "string", json_path = ".spec.gatewayUrl"),
    printcolumn(
        name = "Token Expires",
        type_ = "date",
        json_path = ".status.tokenExpiresAt"
    ),
    printcolumn(
        name = "Last Request",
        type_ = "date",
        json_path = ".status.lastSuccessfulRequestAt"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TaniumConnectionSpec {
    #[serde(flatten)]
    pub server: Server,
    /// Where the API token is: a Secret key in this namespace, which the operator may read only where an admin lets
    /// it (chart value `connections.secretNamespaces`).
    pub token_secret_ref: LocalTokenSecretRef,
}

/// One Tanium server and a token for it, usable from the namespaces an admin lists.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tanium-operator.dev",
    version = "v1alpha1",
    kind = "ClusterTaniumConnection",
    plural = "clustertaniumconnections",
    shortname = "ctconn",
    category = "tanium",
    status = "ConnectionStatus",
    doc = "One Tanium server and an API token for it, usable from the namespaces an admin lists.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Gateway", type_ = "string", json_path = ".spec.gatewayUrl"),
    printcolumn(name = "Namespaces", type_ = "string", json_path = ".spec.namespaces"),
    printcolumn(
        name = "Token Expires",
        type_ = "date",
        json_path = ".status.tokenExpiresAt"
    ),
    printcolumn(
        name = "Last Request",
        type_ = "date",
        json_path = ".status.lastSuccessfulRequestAt"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTaniumConnectionSpec {
    #[serde(flatten)]
    pub server: Server,
    /// Where the API token is: a Secret key, in the operator's namespace unless `namespace` says otherwise.
    pub token_secret_ref: TokenSecretRef,
    /// The namespaces whose objects may use this connection; `*` for every namespace. Empty: none (an admin's
    /// second act is needed before any namespace reaches this server).
    #[serde(default)]
    #[schemars(length(max = 256), inner(length(min = 1, max = 63)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub namespaces: Vec<String>,
}

impl ClusterTaniumConnectionSpec {
    /// May an object in `namespace` use this connection?
    pub fn allows(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == "*" || n == namespace)
    }
}

/// What the operator found when it last spoke to the server with this connection's token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What the Gateway offers, as detected by introspection (see `tanium-operator.dev` docs/gateway.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_request_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Which connection an object uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRef {
    /// `TaniumConnection` (in the object's own namespace) or `ClusterTaniumConnection`.
    pub kind: ConnectionKind,
    /// The connection object's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConnectionKind {
    TaniumConnection,
    ClusterTaniumConnection,
}
