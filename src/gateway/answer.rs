//! What an HTTP answer from the Gateway means, from its status, content type and body alone, and what a failed
//! send means: pure, so that it can be fuzzed (`crate::fuzzing`) and read without the transport around it.

use serde::Deserialize;
use serde_json::Value;

use super::error::{GatewayError, GraphQlError};

/// `data` and `errors` of one answer, before the caller decides what partial data means.
#[derive(Debug, Default, Deserialize)]
pub struct RawResponse {
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub errors: Vec<GraphQlError>,
}

/// What an HTTP answer means, from its status, content type and body alone: pure, so that it can be fuzzed.
/// Everything the network can send reaches the operator through here and a decoder (see `crate::fuzzing`).
/// `quote_body`: an error page's start goes into the error (not when the request carried a token: a proxy may
/// echo it).
pub fn read_answer(
    op: &'static str,
    status: u16,
    content_type: &str,
    bytes: &[u8],
    quote_body: bool,
) -> Result<RawResponse, GatewayError> {
    match status {
        401 => {
            return Err(GatewayError::TokenRejected {
                operation: op,
                reason: format!("HTTP {status}"),
                status: Some(status),
            });
        }
        // The token was accepted; its user lacks a permission (a new token would not help).
        403 => return Err(GatewayError::Forbidden { operation: op }),
        300..=399 => {
            return Err(GatewayError::TokenRejected {
                operation: op,
                reason: format!("HTTP {status} redirect to a login page"),
                status: Some(status),
            });
        }
        200..=299 => {}
        _ => {
            return Err(GatewayError::Http {
                operation: op,
                status,
                body: if quote_body {
                    snippet(bytes)
                } else {
                    "(not quoted: the request carried an API token)".into()
                },
            });
        }
    }
    match serde_json::from_slice::<RawResponse>(bytes) {
        Ok(raw) => Ok(raw),
        // The Gateway answers JSON; an HTML page on 200 is a login or error page in front of it.
        Err(_) if content_type.contains("html") || looks_like_html(bytes) => {
            Err(GatewayError::TokenRejected {
                operation: op,
                reason: "an HTML page instead of JSON".into(),
                status: None,
            })
        }
        Err(e) => Err(GatewayError::TokenRejected {
            operation: op,
            reason: format!("a non-JSON answer ({e})"),
            status: None,
        }),
    }
}

pub(super) fn classify_send_error(operation: &'static str, e: &reqwest::Error) -> GatewayError {
    let message = error_chain(e);
    if e.is_connect() {
        GatewayError::Unreachable { operation, message }
    } else if e.is_builder() {
        GatewayError::Config(message)
    } else {
        // Timeouts and resets after the request left: it may have been processed.
        GatewayError::NoAnswer { operation, message }
    }
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn looks_like_html(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).to_ascii_lowercase();
    head.trim_start().starts_with('<')
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Only failures where the same request may well succeed next time; GraphQL errors never do.
pub(super) fn retry_same_request(e: &GatewayError) -> bool {
    match e {
        GatewayError::GraphQl { .. } => false,
        other => other.is_retryable(),
    }
}
