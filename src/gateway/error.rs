//! One error type for everything the Gateway can do wrong, classified so that callers can decide between
//! "retry", "tell a person" and "look it up before trying again".

use serde::Deserialize;

/// A GraphQL `errors[]` entry as the Gateway returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GraphQlError {
    pub message: String,
    #[serde(default)]
    pub path: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub extensions: Option<serde_json::Value>,
}

impl std::fmt::Display for GraphQlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        // `argumentErrors` is where the Gateway says which argument was wrong; worth showing a person.
        if let Some(args) = self
            .extensions
            .as_ref()
            .and_then(|e| e.get("argumentErrors"))
            .filter(|a| !a.is_null())
        {
            write!(f, " (argumentErrors: {args})")?;
        }
        Ok(())
    }
}

fn join(errors: &[GraphQlError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request never reached the Gateway (connect failure, DNS, TLS handshake).
    #[error("{operation}: cannot reach the Tanium Gateway: {message}")]
    Unreachable {
        operation: &'static str,
        message: String,
    },

    /// The request may have been sent but no usable answer came back (timeout, reset, truncated body).
    #[error("{operation}: no answer from the Tanium Gateway: {message}")]
    NoAnswer {
        operation: &'static str,
        message: String,
    },

    /// 401, a redirect to a login page, or an HTML page instead of JSON: the token is bad, expired, revoked or not
    /// trusted from this address. Retrying does not help; a person must act.
    #[error(
        "{operation}: the Tanium Gateway rejected the API token ({reason}); check that the token is valid, \
         not expired, and trusts this client's IP address"
    )]
    TokenRejected {
        operation: &'static str,
        reason: String,
        /// The HTTP status it came with (none for an HTML or non-JSON page on 200).
        status: Option<u16>,
    },

    /// HTTP 403: the token is good but its user lacks a permission this request needs (Tanium's role-based
    /// access). A person must grant it; a new token does not help.
    #[error(
        "{operation}: the Tanium Gateway refused this request (HTTP 403): the API token's user lacks a permission \
         it needs; grant the role in Tanium"
    )]
    Forbidden { operation: &'static str },

    /// Any other HTTP status. 5xx (e.g. 500 "Failed to initialize request" while a backing service is down) and 429
    /// are retryable.
    #[error("{operation}: the Tanium Gateway answered HTTP {status}: {body}")]
    Http {
        operation: &'static str,
        status: u16,
        body: String,
    },

    /// HTTP 200 with `errors[]`: the query was invalid or the Gateway refused it.
    #[error("{operation}: {}", join(.errors))]
    GraphQl {
        operation: &'static str,
        errors: Vec<GraphQlError>,
    },

    /// A mutation's payload `error { message retryable timedOut }`.
    #[error("{operation}: {message}{}", if *.retryable { " (retryable)" } else { "" })]
    Payload {
        operation: &'static str,
        message: String,
        retryable: bool,
        timed_out: bool,
    },

    /// A mutation that must not run twice may or may not have taken effect. Never retried here: the caller must
    /// look the result up (for `actionPerform`: by action name) before deciding to try again.
    #[error("{operation}: outcome unknown, the request may have taken effect: {source}")]
    OutcomeUnknown {
        operation: &'static str,
        #[source]
        source: Box<GatewayError>,
    },

    /// The answer was JSON but not the shape the schema promises.
    #[error("{operation}: unexpected response from the Tanium Gateway: {message}")]
    Decode {
        operation: &'static str,
        message: String,
    },

    /// A Direct Connect connection could not be made or is gone (endpoint unknown, offline, idle timeout).
    #[error("direct connection to endpoint {endpoint}: {status}")]
    ConnectionFailed { endpoint: String, status: String },

    /// The caller asked for something the Gateway cannot be asked (rejected before any request).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// Client construction failed (bad URL, unreadable CA bundle).
    #[error("gateway client configuration: {0}")]
    Config(String),

    /// A once-only mutation was not sent: this replica could not show that it may still act (it no longer holds
    /// its Lease with a margin, or the intent it recorded is too old to be covered by the look-up grace).
    #[error("{operation}: not sent: {reason}")]
    Fenced {
        operation: &'static str,
        reason: String,
    },
}

impl GatewayError {
    /// Worth trying again after a pause (by the client's own retry loop, or a controller's requeue).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::NoAnswer { .. } => true,
            Self::Http { status, .. } => *status >= 500 || *status == 429,
            Self::Payload { retryable, .. } => *retryable,
            Self::GraphQl { errors, .. } => errors.iter().any(is_stale_cursor),
            Self::TokenRejected { .. }
            | Self::Forbidden { .. }
            | Self::OutcomeUnknown { .. }
            | Self::Decode { .. }
            | Self::ConnectionFailed { .. }
            | Self::InvalidRequest(_)
            | Self::Config(_)
            | Self::Fenced { .. } => false,
        }
    }

    /// Needs a person (or a config change): requeue slowly, never in a tight loop.
    pub fn is_permanent(&self) -> bool {
        !self.is_retryable() && !matches!(self, Self::OutcomeUnknown { .. } | Self::Fenced { .. })
    }

    /// Whether an error whose [`Self::reason`] is `reason` certainly needs a person, from the reason alone (a
    /// status keeps only that): a rejected token, a missing permission, a bad configuration, a request this client
    /// refuses to send. Reasons shared by passing and lasting errors (an HTTP status, a refusal) are not.
    pub fn reason_needs_a_person(reason: &str) -> bool {
        [
            Self::TOKEN_REJECTED,
            "GatewayForbidden",
            "GatewayConfigError",
            "InvalidRequest",
        ]
        .contains(&reason)
    }

    /// The reason of a rejected token, which a new token clears (see `runtime::controllers`).
    pub const TOKEN_REJECTED: &'static str = "TokenRejected";

    /// A short CamelCase reason for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "GatewayUnreachable",
            Self::NoAnswer { .. } => "GatewayNoAnswer",
            Self::TokenRejected { .. } => Self::TOKEN_REJECTED,
            Self::Forbidden { .. } => "GatewayForbidden",
            Self::Http { .. } => "GatewayHttpError",
            Self::GraphQl { .. } => "GatewayQueryError",
            Self::Payload { .. } => "GatewayRefused",
            Self::OutcomeUnknown { .. } => "OutcomeUnknown",
            Self::Decode { .. } => "GatewayBadResponse",
            Self::ConnectionFailed { .. } => "DirectConnectFailed",
            Self::InvalidRequest(_) => "InvalidRequest",
            Self::Config(_) => "GatewayConfigError",
            Self::Fenced { .. } => "Fenced",
        }
    }

    /// Did the request certainly not take effect? Only then may a once-only mutation be sent again. Only what
    /// never reached the Gateway (no connection, a TLS failure before the request was written, nothing sent at all)
    /// or what it rejected before execution (401, a document refused by validation or parsing: errors without a
    /// `path`) counts. Tanium documents no error as "not applied": a payload error (retryable or not), an execution
    /// error (with a `path`), any other HTTP status, a reset or a time-out after the write may all follow a commit.
    pub fn certainly_not_applied(&self) -> bool {
        match self {
            Self::Unreachable { .. }
            | Self::Config(_)
            | Self::InvalidRequest(_)
            | Self::Fenced { .. } => true,
            Self::TokenRejected { status, .. } => *status == Some(401),
            Self::GraphQl { errors, .. } => {
                !errors.is_empty() && errors.iter().all(|e| e.path.is_none())
            }
            // An authorisation layer may sit after a proxy that already acted: only a 401 is taken as certain.
            Self::NoAnswer { .. }
            | Self::Forbidden { .. }
            | Self::Http { .. }
            | Self::Payload { .. }
            | Self::OutcomeUnknown { .. }
            | Self::Decode { .. }
            | Self::ConnectionFailed { .. } => false,
        }
    }

    /// What actually went wrong, under an unknown outcome.
    pub fn cause(&self) -> &GatewayError {
        match self {
            Self::OutcomeUnknown { source, .. } => source.cause(),
            other => other,
        }
    }

    /// The Gateway's own refusal of a once-only mutation, which the transport reports as an unknown outcome (a
    /// refusal may follow a commit): once a look-up shows that nothing was created, it is final.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            Self::OutcomeUnknown { source, .. } => source.refusal(),
            Self::Payload {
                retryable: false,
                timed_out: false,
                message,
                ..
            } => Some(message),
            _ => None,
        }
    }
}

/// Gateways report an expired or unknown pagination cursor as a GraphQL error; the walk must restart.
pub(crate) fn is_stale_cursor(e: &GraphQlError) -> bool {
    let m = e.message.to_ascii_lowercase();
    m.contains("cursor")
        && (m.contains("expired") || m.contains("invalid") || m.contains("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gql(message: &str) -> GraphQlError {
        GraphQlError {
            message: message.into(),
            path: None,
            extensions: None,
        }
    }

    #[test]
    fn classification() {
        let http = |status| GatewayError::Http {
            operation: "x",
            status,
            body: String::new(),
        };
        assert!(http(500).is_retryable());
        assert!(http(503).is_retryable());
        assert!(http(429).is_retryable());
        assert!(!http(400).is_retryable());
        assert!(http(400).is_permanent());
        let rejected = GatewayError::TokenRejected {
            operation: "x",
            reason: "HTTP 401".into(),
            status: Some(401),
        };
        assert!(!rejected.is_retryable() && rejected.is_permanent());
        assert_eq!(rejected.reason(), "TokenRejected");
        let unknown = GatewayError::OutcomeUnknown {
            operation: "actionPerform",
            source: Box::new(GatewayError::NoAnswer {
                operation: "actionPerform",
                message: "reset".into(),
            }),
        };
        assert!(!unknown.is_retryable() && !unknown.is_permanent());
        let stale = GatewayError::GraphQl {
            operation: "endpoints",
            errors: vec![gql("cursor expired")],
        };
        assert!(stale.is_retryable());
        let bad = GatewayError::GraphQl {
            operation: "endpoints",
            errors: vec![gql("Unknown field \"nope\"")],
        };
        assert!(!bad.is_retryable());
    }

    #[test]
    fn what_certainly_did_not_apply() {
        let payload = |retryable, timed_out| GatewayError::Payload {
            operation: "actionPerform",
            message: "m".into(),
            retryable,
            timed_out,
        };
        // Tanium does not say that a refusal means "not applied": every payload error may follow a commit.
        for (retryable, timed_out) in [(false, false), (true, false), (true, true), (false, true)] {
            assert!(!payload(retryable, timed_out).certainly_not_applied());
        }
        assert_eq!(payload(false, false).refusal(), Some("m"));
        assert_eq!(payload(true, false).refusal(), None);
        let no_answer = GatewayError::NoAnswer {
            operation: "actionPerform",
            message: "timed out".into(),
        };
        assert!(!no_answer.certainly_not_applied());
        for status in [429, 500, 502, 503, 504] {
            let http = GatewayError::Http {
                operation: "actionPerform",
                status,
                body: String::new(),
            };
            assert!(
                !http.certainly_not_applied(),
                "HTTP {status} may come after the work was done"
            );
        }
        let token = |status| GatewayError::TokenRejected {
            operation: "actionPerform",
            reason: "r".into(),
            status,
        };
        assert!(token(Some(401)).certainly_not_applied());
        assert!(!token(None).certainly_not_applied());
        let forbidden = GatewayError::Forbidden {
            operation: "actionPerform",
        };
        assert!(!forbidden.certainly_not_applied() && forbidden.is_permanent());
        assert_eq!(forbidden.reason(), "GatewayForbidden");
        let graphql = |path: Option<Vec<serde_json::Value>>| GatewayError::GraphQl {
            operation: "actionPerform",
            errors: vec![GraphQlError {
                message: "m".into(),
                path,
                extensions: None,
            }],
        };
        assert!(
            graphql(None).certainly_not_applied(),
            "validation: rejected before execution"
        );
        assert!(
            !graphql(Some(vec![serde_json::json!("actionPerform")])).certainly_not_applied(),
            "an execution error"
        );
        assert!(
            GatewayError::Unreachable {
                operation: "x",
                message: "refused".into()
            }
            .certainly_not_applied()
        );
        let fenced = GatewayError::Fenced {
            operation: "x",
            reason: "r".into(),
        };
        assert!(fenced.certainly_not_applied() && !fenced.is_permanent() && !fenced.is_retryable());
    }

    #[test]
    fn display_shows_argument_errors() {
        let e = GraphQlError {
            message: "bad filter".into(),
            path: None,
            extensions: Some(serde_json::json!({"argumentErrors": [{"path": "filter.op"}]})),
        };
        assert!(e.to_string().contains("argumentErrors"), "{e}");
    }
}
