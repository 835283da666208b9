//! Deploying at most once and closing what was deployed, on the shared [`Deployment`] record. Every kind that
//! deploys (TaniumAction, TaniumTag rounds) goes through here: record the intent, perform, look a lost answer up
//! by name, and close (schedules first, then open instances).

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::wire;
use crate::crd::{Deployment, ScheduledActionStatus};
use crate::gateway::actions::{PerformRequest, PerformedAction};
use crate::gateway::{
    ActionId, GatewayClient, GatewayError, Reserved, ScheduledActionId, ScheduledActionInfo, SendBy,
};

/// What a look-up by action name found.
#[derive(Debug, PartialEq, Eq)]
pub enum LookUp {
    /// The earlier attempt did create actions; they are now in the record (their scheduled action ids).
    Adopted(Vec<String>),
    /// Nothing yet, but the last attempt is recent: the Gateway may still be working on it. Ask again after this.
    TooEarly(Duration),
    /// Nothing, and the grace period is over: deploying again cannot duplicate anything.
    Nothing,
}

impl Deployment {
    /// Before `actionPerform`: the name it will carry and when it was tried. Must be durable before the call.
    pub fn record_intent(&mut self, name: String) {
        self.action_name = Some(name);
        self.deploy_attempted_at = Some(Time(jiff::Timestamp::now()));
    }

    /// Has anything been sent under this record?
    pub fn intended(&self) -> bool {
        self.action_name.is_some()
    }

    pub fn adopt_created(&mut self, created: &[PerformedAction]) {
        self.scheduled_actions = created
            .iter()
            .map(|c| ScheduledActionStatus {
                id: c.scheduled_action_id.0.clone(),
                platforms: c.platforms.iter().copied().map(wire::platform_of).collect(),
                last_action_id: c.action_id.as_ref().map(|a| a.0.clone()),
                status: None,
            })
            .collect();
        self.deployed_at = Some(Time(jiff::Timestamp::now()));
    }

    fn adopt_found(&mut self, found: &[ScheduledActionInfo]) {
        self.scheduled_actions = found
            .iter()
            .map(|f| ScheduledActionStatus {
                id: f.id.0.clone(),
                platforms: Vec::new(),
                last_action_id: f.last_action.as_ref().map(|a| a.id.0.clone()),
                status: None,
            })
            .collect();
        if self.deployed_at.is_none() {
            self.deployed_at = Some(Time(jiff::Timestamp::now()));
        }
    }

    /// From the recorded instance statuses, without asking the Gateway: could something still run? (A status
    /// this client does not know may; "UNKNOWN", recorded by older versions, meant gone.)
    pub fn maybe_open(&self) -> bool {
        self.scheduled_actions.iter().any(|sa| {
            matches!(
                sa.status.as_deref(),
                None | Some("OPEN" | "PENDING" | "ACTIVE" | "UNRECOGNIZED")
            )
        })
    }

    /// How long ago the last attempt was.
    fn since_attempt(&self) -> Duration {
        // An attempt "in the future" (its writer's clock ahead of ours) has only just happened.
        self.deploy_attempted_at
            .as_ref()
            .map_or(Duration::MAX, |t| {
                Duration::try_from(jiff::Timestamp::now().duration_since(t.0))
                    .unwrap_or(Duration::ZERO)
            })
    }
}

/// A request slot and the moment the intent was recorded: taken in that order, so that no wait for a slot stands
/// between the intent and the send.
pub struct Intent {
    slot: Reserved,
    recorded: Instant,
}

impl Intent {
    /// Before the intent goes into status: wait for a request slot, then start the intent's clock (monotonic).
    pub async fn reserve(gateway: &GatewayClient) -> Result<Self, GatewayError> {
        let slot = gateway.reserve().await?;
        Ok(Self {
            slot,
            recorded: Instant::now(),
        })
    }
}

/// `actionPerform` under the recorded intent; on success the record holds what it created. The request is not
/// written later than `max_age` after the intent was recorded (see [`SendBy`]): a stalled reconcile or a paused
/// process sends nothing, and recovery looks the name up instead.
pub async fn perform(
    gateway: &GatewayClient,
    record: &mut Deployment,
    request: &PerformRequest,
    intent: Intent,
    max_age: Duration,
) -> Result<(), GatewayError> {
    let send_by = SendBy {
        deadline: intent.recorded + max_age,
        what: "the intent recorded in status",
    };
    let created = gateway
        .perform_by(request, Some(send_by), Some(intent.slot))
        .await?;
    record.adopt_created(&created);
    Ok(())
}

/// Before the first `actionPerform` of an object: does Tanium already have an action of this name (the same
/// manifest, deployed by an object that was deleted and created again)? If so the record adopts it and the
/// scheduled action ids come back.
pub async fn adopt_existing(
    gateway: &GatewayClient,
    record: &mut Deployment,
    name: &str,
) -> Result<Option<Vec<String>>, GatewayError> {
    let found = gateway.find_scheduled_actions(name).await?;
    if found.is_empty() {
        return Ok(None);
    }
    record.action_name = Some(name.to_owned());
    record.adopt_found(&found);
    Ok(Some(found.iter().map(|f| f.id.0.clone()).collect()))
}

/// An intent without ids: find what the earlier attempt created, by its name. An empty answer is trusted only
/// `grace` after the attempt (a request whose answer was lost may still be in progress).
pub async fn look_up(
    gateway: &GatewayClient,
    record: &mut Deployment,
    grace: Duration,
) -> Result<LookUp, GatewayError> {
    let Some(name) = record.action_name.clone() else {
        return Ok(LookUp::Nothing);
    };
    if let Some(ids) = adopt_existing(gateway, record, &name).await? {
        return Ok(LookUp::Adopted(ids));
    }
    let since = record.since_attempt();
    if since < grace {
        return Ok(LookUp::TooEarly(grace - since));
    }
    Ok(LookUp::Nothing)
}

/// Close a deployment: delete schedules where asked (a recurring action, or one not issued yet, would otherwise
/// run later) before stopping the open instances, and mark what was stopped. Returns the stopped instance ids.
pub async fn close(
    gateway: &GatewayClient,
    record: &mut Deployment,
    delete_schedules: bool,
    stop: &[ActionId],
) -> Result<Vec<String>, GatewayError> {
    for sa in &record.scheduled_actions {
        if delete_schedules || sa.last_action_id.is_none() {
            delete_schedule(gateway, &sa.id).await?;
        }
    }
    for id in stop {
        gateway.stop_action(id).await?;
    }
    for sa in &mut record.scheduled_actions {
        if sa
            .last_action_id
            .as_ref()
            .is_some_and(|id| stop.iter().any(|s| &s.0 == id))
        {
            sa.status = Some("STOPPED".into());
        }
    }
    Ok(stop.iter().map(ToString::to_string).collect())
}

/// Every instance the record knows of: what a deletion stops.
pub fn instances(record: &Deployment) -> Vec<ActionId> {
    record
        .scheduled_actions
        .iter()
        .filter_map(|sa| sa.last_action_id.clone().map(ActionId))
        .collect()
}

/// Delete a scheduled action (no reissue). One that is already gone is fine, once the Gateway confirms it: a
/// refusal is not assumed to mean "already deleted", and neither is one `null` read (Tanium does not say when a read
/// is null): the scheduled action must read DELETED, or `null` three times in a row.
async fn delete_schedule(gateway: &GatewayClient, id: &str) -> Result<(), GatewayError> {
    let sa = ScheduledActionId(id.to_owned());
    let refused = match gateway.delete_scheduled_action(&sa).await {
        Err(
            refused @ GatewayError::Payload {
                retryable: false, ..
            },
        ) => refused,
        other => return other,
    };
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        match gateway.scheduled_action(&sa).await? {
            None => continue,
            Some(found)
                if found
                    .status
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("DELETED")) =>
            {
                return Ok(());
            }
            Some(_) => return Err(refused),
        }
    }
    tracing::debug!(scheduled_action = id, "scheduled action already gone");
    Ok(())
}
