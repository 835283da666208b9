//! `apiTokenRotate`: a new token for the one in use, which the Gateway refuses from then on.

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::error::GatewayError;
use super::transport::{Document, GatewayClient, RawResponse, Repeat};
use super::{data_field, parse_time, payload_error};

const ROTATE: &str = r#"mutation apiTokenRotate($tokenString: String!) {
  apiTokenRotate(input: {tokenString: $tokenString}) {
    token { tokenString expiration }
    error { message retryable timedOut }
  }
}"#;

pub(crate) const DOCUMENTS: [(&str, &str); 1] = [("apiTokenRotate", ROTATE)];

/// The token `apiTokenRotate` made. `Debug` shows the expiry only.
#[derive(Clone)]
pub struct RotatedToken {
    pub token: SecretString,
    pub expires_at: jiff::Timestamp,
}

impl std::fmt::Debug for RotatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedToken")
            .field("token", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Deserialize)]
struct WirePayload {
    token: Option<WireToken>,
    error: Option<super::SystemError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireToken {
    token_string: Option<String>,
    expiration: Option<String>,
}

pub(crate) fn decode_rotate(raw: RawResponse) -> Result<RotatedToken, GatewayError> {
    let op = "apiTokenRotate";
    // A new token in the answer is the only copy there will ever be: taken even beside GraphQL errors.
    let mut raw = raw;
    if raw
        .data
        .as_ref()
        .and_then(|d| d.pointer("/apiTokenRotate/token/tokenString"))
        .is_some_and(serde_json::Value::is_string)
    {
        raw.errors.clear();
    }
    let p: WirePayload = data_field(op, raw, op)?;
    payload_error(op, p.error)?;
    let missing = |what: &str| GatewayError::Decode {
        operation: op,
        message: format!("no {what} in the answer"),
    };
    let token = p.token.ok_or_else(|| missing("token"))?;
    let token_string = token
        .token_string
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| missing("tokenString"))?;
    let expires_at =
        parse_time(token.expiration.as_deref()).ok_or_else(|| missing("expiration"))?;
    Ok(RotatedToken {
        token: SecretString::from(token_string),
        expires_at,
    })
}

impl GatewayClient {
    /// Rotate `current`. At most once: the old token is refused once this commits, so an unknown outcome is
    /// reported, never retried.
    pub async fn rotate_token(&self, current: &SecretString) -> Result<RotatedToken, GatewayError> {
        let doc = Document::fixed("apiTokenRotate", ROTATE, Repeat::AtMostOnce).carrying_a_token();
        let variables = json!({ "tokenString": current.expose_secret() });
        self.call(&doc, &variables, decode_rotate).await
    }
}
