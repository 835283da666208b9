//! Tanium API Gateway client.
//!
//! Every GraphQL document lives beside the code that sends it (`endpoints`, `packages`, `actions`,
//! `direct_connect`) and is listed in [`documents`], which a test validates against the Gateway schema.
//! Values reach the Gateway only as variables.

pub mod actions;
mod answer;
pub mod deployment;
pub mod direct_connect;
pub mod endpoints;
pub mod error;
pub mod features;
pub mod filter;
pub mod introspect;
pub mod packages;
pub mod poll;
pub mod sensors;
pub mod tokens;
pub mod transport;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use actions::{
    ActionResults, ActionState, ActionStatus, PackageParam, PackageRef, PerformRequest,
    PerformedAction, Schedule, ScheduledActionInfo, Target, Targets,
};
pub use direct_connect::{
    Alert, DirectConnection, EndpointSnapshot, Family, Opening, Performance, Process, Reading,
    Signal,
};
pub use endpoints::{
    Endpoint, EndpointPage, EndpointQuery, EndpointSelector, Resolved, SensorColumn, SensorRequest,
};
pub use error::{GatewayError, GraphQlError};
pub use filter::{Filter, FilterOp, GroupRef, SensorParam, SensorRef};
pub use packages::PackageSpec;
pub use poll::Read;
pub use transport::{
    Fence, GatewayClient, GatewayConfig, Reserved, RetryPolicy, SendBy, TlsVerification,
};

/// A list the Gateway may answer `null` for, read as empty.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A connection's `pageInfo`: where the next page starts, if there is one.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WirePageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// The Gateway schema (cut to what we use) every document is validated against.
pub const SCHEMA: &str = include_str!("schema.graphql");

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

id_type!(
    /// An endpoint's Gateway id.
    EndpointId
);
id_type!(
    /// One action instance (`scheduledAction.lastAction.id`): what results are read from and what is stopped.
    ActionId
);
id_type!(
    /// A scheduled action (one per platform per `actionPerform`): what is approved and deleted.
    ScheduledActionId
);

/// Endpoint operating system families (`EndpointPlatform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Platform {
    Unknown,
    Windows,
    Linux,
    Mac,
    Solaris,
    #[serde(rename = "AIX")]
    Aix,
}

impl Platform {
    /// The name the Gateway uses (also the "OS Platform" sensor's value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::Windows => "Windows",
            Self::Linux => "Linux",
            Self::Mac => "Mac",
            Self::Solaris => "Solaris",
            Self::Aix => "AIX",
        }
    }
}

/// Every fixed document the client sends, as (operation name, document), for schema validation.
pub fn documents() -> Vec<(&'static str, &'static str)> {
    let mut all = Vec::new();
    all.extend(endpoints::DOCUMENTS);
    all.extend(packages::DOCUMENTS);
    all.extend(sensors::DOCUMENTS);
    all.extend(actions::DOCUMENTS);
    all.extend(direct_connect::DOCUMENTS);
    all.extend(tokens::DOCUMENTS);
    all.extend(introspect::DOCUMENTS);
    all
}

/// `data.<field>` of an answer that must have no GraphQL errors.
fn data_field<T: DeserializeOwned>(
    operation: &'static str,
    raw: transport::RawResponse,
    field: &str,
) -> Result<T, GatewayError> {
    if !raw.errors.is_empty() {
        return Err(GatewayError::GraphQl {
            operation,
            errors: raw.errors,
        });
    }
    let mut data = raw.data.ok_or_else(|| GatewayError::Decode {
        operation,
        message: "no data in the answer".into(),
    })?;
    let value = data.get_mut(field).map(Value::take).unwrap_or(Value::Null);
    decode(operation, value)
}

fn decode<T: DeserializeOwned>(operation: &'static str, value: Value) -> Result<T, GatewayError> {
    serde_json::from_value(value).map_err(|e| GatewayError::Decode {
        operation,
        message: e.to_string(),
    })
}

/// A mutation payload's `error: SystemError`, if it carries one.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SystemError {
    message: Option<String>,
    retryable: Option<bool>,
    timed_out: Option<bool>,
}

fn payload_error(operation: &'static str, error: Option<SystemError>) -> Result<(), GatewayError> {
    match error {
        Some(e)
            if e.message.as_deref().is_some_and(|m| !m.is_empty()) || e.retryable == Some(true) =>
        {
            Err(GatewayError::Payload {
                operation,
                message: e.message.unwrap_or_else(|| "unspecified error".into()),
                retryable: e.retryable.unwrap_or(false),
                timed_out: e.timed_out.unwrap_or(false),
            })
        }
        _ => Ok(()),
    }
}

/// Gateway `Time` values are RFC 3339; anything else is treated as absent rather than failing a whole poll.
fn parse_time(s: Option<&str>) -> Option<jiff::Timestamp> {
    s.and_then(|s| s.parse().ok())
}
