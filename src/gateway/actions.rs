//! Deploying packages and what became of them: `actionPerform`, `action`, `scheduledAction`, `actionStop`,
//! `scheduledActionDelete`, `scheduledActionApprove`, and finding scheduled actions by name. What a request is:
//! `deployment`; the batched results poll: `poll`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::GatewayError;
use super::transport::{Document, GatewayClient, RawResponse, Repeat, Reserved, SendBy};
use super::{
    ActionId, Platform, ScheduledActionId, SystemError, data_field, parse_time, payload_error,
};

pub use super::deployment::{
    MAX_TARGET_ENDPOINTS, PackageParam, PackageRef, PerformRequest, Schedule, Target, Targets,
};
const PERFORM: &str = r#"mutation actionPerform($input: ActionPerformInput!) {
  actionPerform(input: $input) {
    scheduledActions {
      platforms
      scheduledAction { id lastAction { id } }
    }
    error { message retryable timedOut }
  }
}"#;

/// The selection every action read uses, so that every poll decodes into the same `ActionState`.
macro_rules! action_fields {
    () => {
        r#"fragment ActionFields on Action {
  id
  status
  expirationTime
  stopped
  results {
    waiting downloading running waitingToRetry completed expired failed
    pendingVerification verified failedVerification
  }
}"#
    };
}

pub(super) const ACTION_FIELDS: &str = action_fields!();

const ACTION: &str = concat!(
    r#"query action($id: ID!) {
  action(ref: {id: $id}) { ...ActionFields }
}
"#,
    action_fields!()
);

const SCHEDULED_ACTION: &str = concat!(
    r#"query scheduledAction($id: ID!) {
  scheduledAction(ref: {id: $id}) { id name status approved lastAction { ...ActionFields } }
}
"#,
    action_fields!()
);

const FIND_BY_NAME: &str = concat!(
    r#"query scheduledActionsByName($name: String!, $first: Int, $after: Cursor) {
  scheduledActions(first: $first, after: $after, filter: {path: "name", op: EQ, value: $name, restrictOwner: false}) {
    pageInfo { hasNextPage endCursor }
    edges { node { id name status approved lastAction { ...ActionFields } } }
  }
}
"#,
    action_fields!()
);

const STOP: &str = r#"mutation actionStop($id: ID!) {
  actionStop(ref: {id: $id}) { id error { message retryable timedOut } }
}"#;

const DELETE_SCHEDULED: &str = r#"mutation scheduledActionDelete($id: ID!) {
  scheduledActionDelete(ref: {id: $id}) { id error { message retryable timedOut } }
}"#;

const APPROVE: &str = r#"mutation scheduledActionApprove($id: ID!) {
  scheduledActionApprove(ref: {id: $id}) { id approved error { message retryable timedOut } }
}"#;

/// The Gateway's clock: schedules and expiry times are the Gateway's, so they are compared with its `now`.
const NOW: &str = "query now { now }";

pub(crate) const DOCUMENTS: [(&str, &str); 8] = [
    ("now", NOW),
    ("actionPerform", PERFORM),
    ("action", ACTION),
    ("scheduledAction", SCHEDULED_ACTION),
    ("scheduledActionsByName", FIND_BY_NAME),
    ("actionStop", STOP),
    ("scheduledActionDelete", DELETE_SCHEDULED),
    ("scheduledActionApprove", APPROVE),
];

/// One scheduled action `actionPerform` created (there is one per platform).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerformedAction {
    pub platforms: Vec<Platform>,
    pub scheduled_action_id: ScheduledActionId,
    pub action_id: Option<ActionId>,
}

// --- what an action is doing --------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionStatus {
    Open,
    /// Waiting for approval.
    Pending,
    Active,
    Stopped,
    Expired,
    Closed,
    /// A status a newer Gateway added.
    #[serde(other)]
    Unknown,
}

impl ActionStatus {
    /// Still able to run on endpoints (and so worth polling and, eventually, stopping). A status this client does
    /// not know counts as open: it is followed until Tanium says more, or until the action expires.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Self::Open | Self::Pending | Self::Active | Self::Unknown
        )
    }
}

/// Per-endpoint state counts of one action instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionResults {
    #[serde(default)]
    pub waiting: u32,
    #[serde(default)]
    pub downloading: u32,
    #[serde(default)]
    pub running: u32,
    #[serde(default)]
    pub waiting_to_retry: u32,
    #[serde(default)]
    pub completed: u32,
    #[serde(default)]
    pub expired: u32,
    #[serde(default)]
    pub failed: u32,
    #[serde(default)]
    pub pending_verification: u32,
    #[serde(default)]
    pub verified: u32,
    #[serde(default)]
    pub failed_verification: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionState {
    pub id: ActionId,
    pub status: ActionStatus,
    pub expiration_time: Option<jiff::Timestamp>,
    pub stopped: bool,
    pub results: ActionResults,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledActionInfo {
    pub id: ScheduledActionId,
    pub name: String,
    /// ENABLED, DISABLED or DELETED.
    pub status: Option<String>,
    pub approved: bool,
    pub last_action: Option<ActionState>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireAction {
    id: ActionId,
    status: Option<ActionStatus>,
    expiration_time: Option<String>,
    #[serde(default)]
    stopped: bool,
    results: Option<ActionResults>,
}

impl From<WireAction> for ActionState {
    fn from(w: WireAction) -> Self {
        Self {
            id: w.id,
            status: w.status.unwrap_or(ActionStatus::Unknown),
            expiration_time: parse_time(w.expiration_time.as_deref()),
            stopped: w.stopped,
            results: w.results.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireScheduledAction {
    id: ScheduledActionId,
    #[serde(default)]
    name: String,
    status: Option<String>,
    #[serde(default)]
    approved: bool,
    last_action: Option<WireAction>,
}

impl From<WireScheduledAction> for ScheduledActionInfo {
    fn from(w: WireScheduledAction) -> Self {
        Self {
            id: w.id,
            name: w.name,
            status: w.status,
            approved: w.approved,
            last_action: w.last_action.map(Into::into),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireLastAction {
    pub(super) last_action: Option<WireAction>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePerformPayload {
    scheduled_actions: Option<Vec<WirePerformPlatform>>,
    error: Option<SystemError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePerformPlatform {
    #[serde(default)]
    platforms: Option<Vec<Platform>>,
    scheduled_action: WirePerformScheduled,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePerformScheduled {
    id: ScheduledActionId,
    last_action: Option<WireId<ActionId>>,
}

#[derive(Deserialize)]
struct WireId<T> {
    id: T,
}

#[derive(Deserialize)]
struct WireIdPayload {
    error: Option<SystemError>,
}

#[derive(Deserialize)]
struct WireApprovePayload {
    approved: Option<bool>,
    error: Option<SystemError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireScheduledConnection {
    page_info: super::WirePageInfo,
    edges: Vec<WireScheduledEdge>,
}

#[derive(Deserialize)]
struct WireScheduledEdge {
    node: WireScheduledAction,
}

// One decoder per operation, pure (an answer in, a value or an error out), so that `crate::fuzzing` can feed
// them arbitrary answers.

pub(crate) fn decode_perform(raw: RawResponse) -> Result<Vec<PerformedAction>, GatewayError> {
    let payload: WirePerformPayload = data_field("actionPerform", raw, "actionPerform")?;
    payload_error("actionPerform", payload.error)?;
    let created = payload.scheduled_actions.unwrap_or_default();
    if created.is_empty() {
        return Err(GatewayError::Decode {
            operation: "actionPerform",
            message: "no scheduled action and no error in the answer".into(),
        });
    }
    Ok(created
        .into_iter()
        .map(|p| PerformedAction {
            platforms: p.platforms.unwrap_or_default(),
            scheduled_action_id: p.scheduled_action.id,
            action_id: p.scheduled_action.last_action.map(|a| a.id),
        })
        .collect())
}

pub(crate) fn decode_now(raw: RawResponse) -> Result<jiff::Timestamp, GatewayError> {
    let now: String = data_field("now", raw, "now")?;
    parse_time(Some(&now)).ok_or_else(|| GatewayError::Decode {
        operation: "now",
        message: format!("not an RFC 3339 time: {now:?}"),
    })
}

pub(crate) fn decode_action(raw: RawResponse) -> Result<Option<ActionState>, GatewayError> {
    let state: Option<WireAction> = data_field("action", raw, "action")?;
    Ok(state.map(Into::into))
}

pub(crate) fn decode_scheduled_action(
    raw: RawResponse,
) -> Result<Option<ScheduledActionInfo>, GatewayError> {
    let sa: Option<WireScheduledAction> = data_field("scheduledAction", raw, "scheduledAction")?;
    Ok(sa.map(Into::into))
}

/// One page of scheduled actions and the cursor of the next, if there is one.
pub(crate) fn decode_scheduled_actions_page(
    raw: RawResponse,
) -> Result<(Vec<ScheduledActionInfo>, Option<String>), GatewayError> {
    let conn: WireScheduledConnection =
        data_field("scheduledActionsByName", raw, "scheduledActions")?;
    let page = conn
        .edges
        .into_iter()
        .map(|e| ScheduledActionInfo::from(e.node))
        .collect();
    let next = conn
        .page_info
        .end_cursor
        .filter(|_| conn.page_info.has_next_page);
    Ok((page, next))
}

pub(crate) fn decode_stop(raw: RawResponse) -> Result<(), GatewayError> {
    let p: WireIdPayload = data_field("actionStop", raw, "actionStop")?;
    payload_error("actionStop", p.error)
}

pub(crate) fn decode_delete(raw: RawResponse) -> Result<(), GatewayError> {
    let p: WireIdPayload = data_field("scheduledActionDelete", raw, "scheduledActionDelete")?;
    payload_error("scheduledActionDelete", p.error)
}

pub(crate) fn decode_approve(raw: RawResponse) -> Result<bool, GatewayError> {
    let p: WireApprovePayload =
        data_field("scheduledActionApprove", raw, "scheduledActionApprove")?;
    payload_error("scheduledActionApprove", p.error)?;
    Ok(p.approved.unwrap_or(false))
}

impl GatewayClient {
    /// Deploy. Never retried once it may have reached the Gateway: on `OutcomeUnknown`, look the action up with
    /// [`GatewayClient::find_scheduled_actions`] by `request.name` before ever performing again.
    pub async fn perform(
        &self,
        request: &PerformRequest,
    ) -> Result<Vec<PerformedAction>, GatewayError> {
        self.perform_by(request, None, None).await
    }

    /// [`GatewayClient::perform`], written to the wire only before `send_by` (else `GatewayError::Fenced`), in
    /// the request slot `reserved` if one was taken beforehand.
    pub async fn perform_by(
        &self,
        request: &PerformRequest,
        send_by: Option<SendBy>,
        reserved: Option<Reserved>,
    ) -> Result<Vec<PerformedAction>, GatewayError> {
        request.validate()?;
        let doc = Document::fixed("actionPerform", PERFORM, Repeat::AtMostOnce).sent_by(send_by);
        let variables = json!({ "input": request.to_input() });
        self.call_reserved(&doc, &variables, decode_perform, reserved)
            .await
    }

    /// The Gateway's current time.
    pub async fn now(&self) -> Result<jiff::Timestamp, GatewayError> {
        let doc = Document::fixed("now", NOW, Repeat::Safe);
        self.call(&doc, &json!({}), decode_now).await
    }

    /// One action instance's status and results; `None` when the Gateway does not know the id.
    pub async fn action(&self, id: &ActionId) -> Result<Option<ActionState>, GatewayError> {
        let doc = Document::fixed("action", ACTION, Repeat::Safe);
        self.call(&doc, &json!({ "id": id }), decode_action).await
    }

    /// A scheduled action with its newest action instance (recurring actions get a new one at each reissue).
    pub async fn scheduled_action(
        &self,
        id: &ScheduledActionId,
    ) -> Result<Option<ScheduledActionInfo>, GatewayError> {
        let doc = Document::fixed("scheduledAction", SCHEDULED_ACTION, Repeat::Safe);
        self.call(&doc, &json!({ "id": id }), decode_scheduled_action)
            .await
    }

    /// Every scheduled action named exactly `name` (Tanium does not make names unique; we make ours so).
    pub async fn find_scheduled_actions(
        &self,
        name: &str,
    ) -> Result<Vec<ScheduledActionInfo>, GatewayError> {
        let doc = Document::fixed("scheduledActionsByName", FIND_BY_NAME, Repeat::Safe);
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let variables = json!({ "name": name, "first": 100, "after": after });
            let (page, next) = self
                .call(&doc, &variables, decode_scheduled_actions_page)
                .await?;
            found.extend(page.into_iter().filter(|sa| sa.name == name));
            match next {
                Some(c) => after = Some(c),
                None => return Ok(found),
            }
        }
    }

    /// Stop an action instance. Stopping one that already ended is not an error.
    pub async fn stop_action(&self, id: &ActionId) -> Result<(), GatewayError> {
        let doc = Document::fixed("actionStop", STOP, Repeat::Safe);
        self.call(&doc, &json!({ "id": id }), decode_stop).await
    }

    /// Delete a scheduled action so that a recurring action is not reissued.
    pub async fn delete_scheduled_action(
        &self,
        id: &ScheduledActionId,
    ) -> Result<(), GatewayError> {
        let doc = Document::fixed("scheduledActionDelete", DELETE_SCHEDULED, Repeat::Safe);
        self.call(&doc, &json!({ "id": id }), decode_delete).await
    }

    /// Approve a scheduled action. Tanium requires a different user than the one who created it; the operator
    /// never approves its own actions, this is for people and their tools.
    pub async fn approve_scheduled_action(
        &self,
        id: &ScheduledActionId,
    ) -> Result<bool, GatewayError> {
        let doc = Document::fixed("scheduledActionApprove", APPROVE, Repeat::Safe);
        self.call(&doc, &json!({ "id": id }), decode_approve).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::EndpointId;
    use crate::gateway::filter::{Filter, FilterOp, GroupRef};

    fn request(target: Target) -> PerformRequest {
        PerformRequest {
            name: "tanium-operator/ns/x/0f3c".into(),
            comment: "c".into(),
            package: PackageRef {
                name: Some("Custom Tagging - Add Tags".into()),
                params: vec!["TheBestEndpoint".into()],
                ..PackageRef::default()
            },
            targets: Targets {
                action_group: GroupRef {
                    name: Some("All Computers".into()),
                    id: None,
                },
                target,
                platforms: vec![],
            },
            schedule: Schedule::default(),
        }
    }

    #[test]
    fn perform_input_matches_the_seed() {
        let r = request(Target::Filter(Filter::any(vec![Filter::sensor(
            "Computer Name",
            FilterOp::Eq,
            "testmachine999",
        )])));
        r.validate().unwrap();
        assert_eq!(
            r.to_input()["targets"],
            json!({"actionGroup": {"name": "All Computers"}, "targetGroup": {"filter": {"any": true,
                "filters": [{"sensor": {"name": "Computer Name"}, "op": "EQ", "value": "testmachine999"}]}}})
        );
        assert_eq!(
            r.to_input()["package"],
            json!({"name": "Custom Tagging - Add Tags", "params": ["TheBestEndpoint"]})
        );
        assert!(r.to_input().get("schedule").is_none());
        let ids = request(Target::Endpoints(vec!["274177".into()]));
        assert_eq!(
            ids.to_input()["targets"],
            json!({"actionGroup": {"name": "All Computers"}, "endpoints": ["274177"]})
        );
    }

    #[test]
    fn perform_validation() {
        let too_many = request(Target::Endpoints(
            (0..26).map(|i| EndpointId(i.to_string())).collect(),
        ));
        assert!(
            too_many
                .validate()
                .unwrap_err()
                .to_string()
                .contains("at most 25")
        );
        assert!(request(Target::Endpoints(vec![])).validate().is_err());
        let mut unnamed = request(Target::Endpoints(vec!["1".into()]));
        unnamed.name = " ".into();
        assert!(unnamed.validate().is_err());
    }

    #[test]
    fn schedule_times_are_rfc3339() {
        let s = Schedule {
            reissue_seconds: Some(3600),
            end_time: Some("2026-12-01T00:00:00Z".parse().unwrap()),
            ..Schedule::default()
        };
        assert_eq!(
            json!(s),
            json!({"reissueSeconds": 3600, "endTime": "2026-12-01T00:00:00Z"})
        );
    }

    #[test]
    fn an_unknown_status_is_followed_as_open() {
        assert!(ActionStatus::Pending.is_open());
        assert!(!ActionStatus::Expired.is_open());
        let s: ActionStatus = serde_json::from_value(json!("SOMETHING_NEW")).unwrap();
        assert_eq!(s, ActionStatus::Unknown);
    }
}
