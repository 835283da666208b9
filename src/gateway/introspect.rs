//! Asking the Gateway what it offers ([`Features`]), once, by introspection.

use serde::Deserialize;
use serde_json::json;

use super::error::GatewayError;
use super::features::Features;
use super::transport::{Document, GatewayClient, RawResponse, Repeat};

const FEATURES: &str = r#"query gatewayFeatures {
  query: __type(name: "Query") { fields { name } }
  mutation: __type(name: "Mutation") { fields { name } }
  actionStatus: __type(name: "ActionStatus") { enumValues { name } }
}"#;

pub(crate) const DOCUMENTS: [(&str, &str); 1] = [("gatewayFeatures", FEATURES)];

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct WireType {
    #[serde(default)]
    fields: Option<Vec<Named>>,
    #[serde(default, rename = "enumValues")]
    enum_values: Option<Vec<Named>>,
}

pub(crate) fn decode_features(raw: RawResponse) -> Result<Features, GatewayError> {
    let op = "gatewayFeatures";
    let names =
        |raw: &RawResponse, alias: &str, enums: bool| -> Result<Vec<String>, GatewayError> {
            let value = raw
                .data
                .as_ref()
                .and_then(|d| d.get(alias))
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            let t: Option<WireType> = super::decode(op, value)?;
            let list = t.and_then(|t| if enums { t.enum_values } else { t.fields });
            Ok(list
                .unwrap_or_default()
                .into_iter()
                .map(|n| n.name)
                .collect())
        };
    if raw.data.is_none() {
        return Err(if raw.errors.is_empty() {
            GatewayError::Decode {
                operation: op,
                message: "no data in the answer".into(),
            }
        } else {
            GatewayError::GraphQl {
                operation: op,
                errors: raw.errors,
            }
        });
    }
    let query = names(&raw, "query", false)?;
    let mutation = names(&raw, "mutation", false)?;
    // A partial answer (introspection limited, errors beside data) tells nothing for sure: not detected, so
    // nothing is remembered and every call keeps trying the current family first.
    if !raw.errors.is_empty() || query.is_empty() || mutation.is_empty() {
        return Err(GatewayError::Decode {
            operation: op,
            message: "introspection answered only in part".into(),
        });
    }
    let statuses = names(&raw, "actionStatus", true)?;
    let has = |list: &[String], name: &str| list.iter().any(|n| n == name);
    Ok(Features {
        direct_connect: has(&mutation, "directConnectOpen"),
        direct_connect_legacy: has(&mutation, "openDirectConnection"),
        actions_query: has(&query, "actions"),
        closed_status: has(&statuses, "CLOSED"),
    })
}

impl GatewayClient {
    /// Ask the Gateway what it offers, and remember it: later calls choose by it (e.g. the Direct Connect family
    /// opened first). Until then, the client tries the current family and falls back to the older one.
    pub async fn detect_features(&self) -> Result<Features, GatewayError> {
        let doc = Document::fixed("gatewayFeatures", FEATURES, Repeat::Safe);
        let features = self.call(&doc, &json!({}), decode_features).await?;
        self.remember_features(features);
        Ok(features)
    }
}
