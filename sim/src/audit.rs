//! The record of every mutation call and injected fault, for tests to assert on.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    /// Simulated time.
    pub at: Timestamp,
    /// Wall-clock time, for latencies measured against the outside world (benchmarks).
    pub wall: Timestamp,
    pub user: String,
    /// The mutation field (e.g. `actionPerform`); for an injected HTTP-level fault, the request's
    /// first top-level field.
    pub operation: String,
    pub operation_name: Option<String>,
    /// The field's arguments as JSON (variables substituted); for HTTP-level faults, the variables.
    pub input: serde_json::Value,
    pub outcome: AuditOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Committed; `ids` are the objects created or changed.
    Ok { ids: Vec<String> },
    /// Refused or failed (validation, injected fault); nothing committed.
    Error { message: String },
    /// Committed, then the response was deliberately not delivered.
    Dropped { ids: Vec<String> },
}

/// One GraphQL request as it arrived (queries too), for tests and benchmarks that count round trips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub seq: u64,
    /// Wall-clock time.
    pub wall: Timestamp,
    pub user: String,
    pub operation_name: Option<String>,
    pub mutation: bool,
    /// Top-level fields and how often each was asked for (an aliased batch poll asks for `action` many times).
    pub fields: std::collections::BTreeMap<String, u32>,
}

impl AuditOutcome {
    pub fn is_committed(&self) -> bool {
        !matches!(self, AuditOutcome::Error { .. })
    }
}
