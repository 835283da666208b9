//! The TaniumAction reconciler. In order: validate → preview → safety gates → record the intent → deploy once →
//! track results → complete → stop what is still open. Status is the durable record: a terminal object costs no
//! Gateway request, and an intent without ids is looked up by name before anything is deployed again.

mod decide;
mod deletion;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt as _;
use kube::runtime::controller::Action;

use super::deploy;
use super::object::{Kind, Object, status_fields};
use super::{Context, Error, gates, preview, tracking, wire};
use crate::crd::ResultCounts;
use crate::crd::action::{PackageStatus, Phase};
use crate::crd::{
    APPROVED_PREVIEW_ANNOTATION, Reason, TaniumAction, TaniumActionStatus, condition,
};
use crate::gateway::actions::PerformRequest;
use crate::gateway::{ActionId, GatewayError};

pub const FINALIZER: &str = "tanium-operator.dev/stop-action";

pub async fn reconcile(obj: Arc<TaniumAction>, ctx: Arc<Context>) -> Result<Action, Error> {
    super::object::reconcile(obj, ctx).await
}

/// What one reconcile of a TaniumAction carries besides its status.
#[derive(Default)]
pub struct Scratch {
    /// A look-up by action name found nothing in this reconcile.
    looked_up: bool,
    /// The intent this reconcile recorded (a request slot and when, before the status write): `actionPerform` is
    /// sent only within `intent_max_age` of it.
    intent: Option<deploy::Intent>,
}

impl Kind for TaniumAction {
    /// No intent was ever recorded: nothing was sent to Tanium.
    fn nothing_in_tanium(status: &TaniumActionStatus) -> bool {
        status.deployment.action_name.is_none()
    }
    fn connection_ref(&self) -> Option<&crate::crd::ConnectionRef> {
        self.spec.connection_ref.as_ref()
    }
    const FINALIZER: &'static str = FINALIZER;
    type Status = TaniumActionStatus;
    type Scratch = Scratch;

    fn scratch(&self) -> Scratch {
        Scratch::default()
    }
    status_fields!(TaniumActionStatus);
    fn apply(o: Object<'_, Self>) -> impl Future<Output = Result<Action, Error>> + Send {
        o.apply()
    }
    fn cleanup(o: Object<'_, Self>) -> impl Future<Output = Result<Action, Error>> + Send {
        o.cleanup()
    }
    fn phase_label(status: &TaniumActionStatus) -> Option<String> {
        status.phase.map(|p| p.to_string())
    }
    fn finished(status: &TaniumActionStatus) -> bool {
        status.phase.is_some_and(Phase::is_terminal)
    }
    /// `ttlSecondsAfterFinished` deletes it at a time: `finished` requeues until then.
    fn due_later(&self) -> bool {
        self.spec.ttl_seconds_after_finished.is_some()
    }
    /// Finished or suspended: its Gateway access no longer matters to it.
    fn at_rest(status: &TaniumActionStatus) -> bool {
        status
            .phase
            .is_some_and(|p| p.is_terminal() || p == Phase::Suspended)
    }
}

impl Object<'_, TaniumAction> {
    fn phase(&self) -> Phase {
        self.status.phase.unwrap_or(Phase::Pending)
    }

    /// A TTL deletes the finished object, and a GitOps tool creates it again from the manifest, again and again.
    /// Nothing is deployed twice (the re-created object adopts the earlier action), but the object never rests:
    /// said once with an event, and in a condition while it lasts.
    fn warn_of_recreation_loop(&mut self) {
        let tool = crate::crd::gitops_manager(&self.obj.metadata);
        let (Some(ttl), Some(tool)) = (self.obj.spec.ttl_seconds_after_finished, tool) else {
            self.status
                .conditions
                .retain(|c| c.type_ != condition::RECREATION_LOOP);
            return;
        };
        let fresh =
            crate::crd::condition(&self.status.conditions, condition::RECREATION_LOOP).is_none();
        let message = format!(
            "ttlSecondsAfterFinished ({ttl}) deletes this object once it finished, and {tool} manages it and will \
             create it again from the manifest: a loop of deletion and re-creation. The re-created object adopts \
             the Tanium action deployed before and deploys nothing; to end the loop, remove \
             ttlSecondsAfterFinished (or the object from the GitOps source once it finished)"
        );
        self.set(
            condition::RECREATION_LOOP,
            true,
            Reason::TTLUnderGitOps,
            message.clone(),
        );
        if fresh {
            self.event(true, Reason::TTLUnderGitOps, message);
        }
    }

    fn recurring(&self) -> bool {
        self.obj.spec.schedule.reissue_seconds.is_some()
    }

    async fn apply(mut self) -> Result<Action, Error> {
        self.warn_of_recreation_loop();
        let phase = self.phase();
        match decide::stage(phase, self.obj.spec.suspend) {
            decide::Stage::Finished => self.finished().await,
            decide::Stage::Track => self.track().await,
            decide::Stage::Prepare => self.prepare_and_deploy().await,
            decide::Stage::Suspend => {
                if phase != Phase::Suspended {
                    self.status.phase = Some(Phase::Suspended);
                    self.set(
                        condition::READY,
                        false,
                        Reason::Suspended,
                        "spec.suspend is true: nothing is deployed until it is false",
                    );
                    self.save().await?;
                    self.event(
                        false,
                        Reason::Suspended,
                        "deployment held by spec.suspend".into(),
                    );
                }
                Ok(Action::await_change())
            }
        }
    }

    /// Everything before the deployment; every check can hold it back with a condition and deploys nothing.
    async fn prepare_and_deploy(mut self) -> Result<Action, Error> {
        let ctx = self.ctx;
        let conn = self.conn.clone();
        let spec = &self.obj.spec;
        let ns = self.obj.namespace().unwrap_or_default();
        let policy = Some(&ctx.config.policy);
        if let Err(held) = gates::check_spec(spec, &ns, policy) {
            return self.hold(held).await;
        }
        let package = match conn.packages.get(&conn.gateway, &spec.package.name).await {
            Ok(p) => p,
            Err(e) => return self.gateway_trouble(e).await,
        };
        if let Err(held) = gates::check_package(spec, package.as_ref()) {
            return self.hold(held).await;
        }
        if let Some(package) = package {
            self.status.package = Some(PackageStatus {
                id: package.id.clone(),
                name: package.name.clone(),
            });
        }

        // Preview with the very targets that will be deployed.
        let found = match preview::find(&conn.gateway, &spec.targets, &spec.preview).await {
            Ok(f) => f,
            Err(e) => return self.gateway_trouble(e).await,
        };
        if let Err(held) = gates::check_found(&found) {
            return self.hold(held).await;
        }
        let digest = preview::action_digest(spec, found.count);
        let count = found.count;
        let name = self.obj.name_any();
        let verdict = gates::judge_preview(
            spec,
            &found,
            &digest,
            policy,
            self.obj
                .annotations()
                .get(APPROVED_PREVIEW_ANNOTATION)
                .map(String::as_str),
            (&name, Some(&ns)),
        );
        // Same count and digest: keep observedAt (the time it first looked like this), so repeated checks of an
        // unchanged preview write nothing new.
        let kept = self
            .status
            .preview
            .take()
            .filter(|p| (&p.digest, p.count) == (&digest, count))
            .map(|p| p.observed_at);
        let first_preview = kept.is_none();
        let mut recorded = found.into_preview(digest.clone());
        if let Some(at) = kept {
            recorded.observed_at = at;
        }
        self.status.preview = Some(recorded);
        self.set(
            condition::PREVIEWED,
            true,
            Reason::Previewed,
            format!("{count} endpoint(s) match; digest {digest}"),
        );
        if first_preview {
            self.echo(
                Reason::Previewed,
                format!("{count} endpoint(s) match the targets (digest {digest})"),
            );
        }
        match verdict {
            gates::Verdict::Deploy => {}
            gates::Verdict::Held(held) => return self.hold(held).await,
            gates::Verdict::AwaitingApproval { message, .. } => {
                let reason = Reason::AwaitingPreviewApproval;
                let was = self.phase();
                self.status.phase = Some(Phase::AwaitingPreviewApproval);
                self.set(condition::READY, false, reason, message.clone());
                self.save().await?;
                if was != Phase::AwaitingPreviewApproval || first_preview {
                    self.event(false, reason, message);
                }
                return Ok(Action::requeue(ctx.config.timing.blocked));
            }
        }

        // An earlier intent may have reached Tanium: look before deploying (once per reconcile).
        if self.status.deployment.intended() && !self.scratch.looked_up {
            return self.recover().await;
        }
        let name = self.action_name();
        if !self.status.deployment.intended() {
            // The name belongs to the manifest: an object deleted and applied again (a GitOps tool, a TTL, a
            // person) finds the action its predecessor deployed, and deploys nothing.
            match deploy::adopt_existing(&self.conn.gateway, &mut self.status.deployment, &name)
                .await
            {
                Ok(Some(ids)) => return self.adopted(&name, ids).await,
                Ok(None) => {}
                Err(e) => return self.gateway_trouble(e).await,
            }
        }
        // Record the intent, durably, before the side effect that must not repeat.
        self.scratch.intent = match deploy::Intent::reserve(&self.conn.gateway).await {
            Ok(intent) => Some(intent),
            Err(e) => return self.gateway_trouble(e).await,
        };
        self.status.deployment.record_intent(name);
        self.status.phase = Some(Phase::Deploying);
        self.set(
            condition::READY,
            false,
            Reason::Deploying,
            "deploying through actionPerform",
        );
        self.save().await?;
        self.deploy().await
    }

    /// `actionPerform`, once. Only reached with the intent already in status.
    async fn deploy(mut self) -> Result<Action, Error> {
        let request = self.perform_request()?;
        let intent = match self.scratch.intent.take() {
            Some(intent) => intent,
            None => return Err(Error::MissingField("the intent recorded in this reconcile")),
        };
        let sent = deploy::perform(
            &self.conn.gateway,
            &mut self.status.deployment,
            &request,
            intent,
            self.ctx.config.timing.intent_max_age,
        )
        .await;
        match sent {
            Ok(()) => {
                self.ctx.fail_point_after_perform().await;
                let ids: Vec<String> = self
                    .status
                    .deployment
                    .scheduled_actions
                    .iter()
                    .map(|s| s.id.clone())
                    .collect();
                let message = format!(
                    "deployed as scheduled action(s) {} ({:?})",
                    ids.join(", "),
                    request.name
                );
                self.set(condition::DEPLOYED, true, Reason::Deployed, message.clone());
                // The running state goes with the ids, in one write: the polls' tally follows at most every
                // `results_write` (`decide::progress_can_wait`).
                let targeted = self.status.preview.as_ref().map_or(0, |p| p.count);
                self.status.results = Some(ResultCounts {
                    targeted,
                    ..ResultCounts::default()
                });
                self.status.results_written_at = Some(Time(jiff::Timestamp::now()));
                self.status.phase = Some(Phase::Running);
                let running = format!("{message}; following its results");
                self.set(condition::READY, false, Reason::Running, running.clone());
                self.set(condition::COMPLETED, false, Reason::Running, running);
                self.save().await?;
                self.event(false, Reason::Deployed, message);
                Ok(Action::requeue(self.ctx.config.timing.poll_min))
            }
            Err(GatewayError::Fenced { reason, .. }) => {
                // Nothing was sent. The intent stays, so the next reconcile looks the name up (after the grace)
                // before deploying: whoever leads then decides.
                tracing::info!(action = %request.name, %reason, "actionPerform not sent; recovery will look it up by name");
                Ok(Action::requeue(self.ctx.config.timing.poll_min))
            }
            Err(e @ GatewayError::OutcomeUnknown { .. }) => {
                // A refusal too may follow a commit (Tanium does not say otherwise): it is final only once a
                // look-up by name after the grace finds nothing (`recover`).
                let (reason, message) = match e.refusal() {
                    Some(refusal) => (
                        Reason::DeployRefused.as_str(),
                        format!(
                            "the Gateway refused actionPerform: {refusal}{}",
                            decide::UNCONFIRMED
                        ),
                    ),
                    // A missing permission is a person's to grant; said as such, still looked up first.
                    None => (
                        match e.cause() {
                            cause @ GatewayError::Forbidden { .. } => cause.reason(),
                            _ => Reason::OutcomeUnknown.as_str(),
                        },
                        format!("{e}; the action will be looked up by name before any new attempt"),
                    ),
                };
                self.set(condition::DEPLOYED, false, reason, message.clone());
                self.save().await?;
                self.event(true, reason, message);
                Err(e.into())
            }
            Err(e) => self.gateway_trouble(e).await,
        }
    }

    /// The Gateway refused the deployment and a look-up confirmed that nothing was created; the spec is immutable,
    /// so it will not change its mind.
    async fn refused(mut self, message: String) -> Result<Action, Error> {
        self.status.phase = Some(Phase::Failed);
        self.status.completed_at = Some(Time(jiff::Timestamp::now()));
        self.set(
            condition::DEPLOYED,
            false,
            Reason::DeployRefused,
            message.clone(),
        );
        self.set(
            condition::READY,
            false,
            Reason::DeployRefused,
            message.clone(),
        );
        self.save().await?;
        self.event(true, Reason::DeployRefused, message);
        Ok(Action::await_change())
    }

    /// Tanium already runs (or ran) this manifest's action: follow it instead of deploying.
    async fn adopted(self, name: &str, ids: Vec<String>) -> Result<Action, Error> {
        let message = format!(
            "Tanium already has scheduled action(s) {} named {name:?}, deployed from this same manifest by an earlier \
             object of this name (deleted and created again); following it and deploying nothing. To run it again, \
             change spec.runId or the name",
            ids.join(", ")
        );
        self.follow_found(Reason::Adopted, message).await
    }

    /// What a look-up by name found is this object's deployment now: follow it.
    async fn follow_found(mut self, reason: Reason, message: String) -> Result<Action, Error> {
        self.set(condition::DEPLOYED, true, reason, message.clone());
        self.status.phase = Some(Phase::Running);
        self.save().await?;
        self.event(false, reason, message);
        Ok(Action::requeue(self.ctx.config.timing.poll_min))
    }

    /// Deploying, awaiting approval in Tanium, or running: follow it to its end.
    async fn track(mut self) -> Result<Action, Error> {
        if self.status.deployment.scheduled_actions.is_empty() {
            return self.recover().await;
        }
        let recurring = self.recurring();
        let Some(progress) = tracking::poll(
            &self.conn.poller,
            &self.owner(),
            &mut self.status.deployment.scheduled_actions,
            recurring,
            self.ctx.config.timing.gone_after,
        ) else {
            // The poller wakes this object when it has the answer; the requeue is only a safety net.
            return Ok(Action::requeue(self.ctx.config.timing.poll_max));
        };
        let targeted = self.status.preview.as_ref().map_or(0, |p| p.count);
        self.status.results = Some(ResultCounts {
            targeted,
            counts: progress.results,
            waiting_when_stopped: None,
        });
        self.status.expires_at = progress.expires_at.map(Time);
        let now = progress.now;
        let settings = decide::Settings {
            targeted,
            recurring,
            schedule_ended: self.obj.spec.schedule.end_time.is_none_or(|end| now >= end),
            stop_when_complete: self.obj.spec.stop_when_complete,
        };
        match decide::after_poll(&progress, settings) {
            decide::Step::AwaitingApproval(ids) => {
                let message = format!(
                    "scheduled action(s) {} wait for approval in Tanium by a user other than the operator's \
                     (the operator never approves its own actions)",
                    ids.join(", ")
                );
                self.running(
                    Phase::AwaitingApproval,
                    Reason::AwaitingTaniumApproval,
                    message,
                )
                .await
            }
            decide::Step::Running => {
                let every = self.ctx.config.timing.results_write;
                let written = self.obj.status.as_ref();
                if self.phase() == Phase::Running
                    && let Some(written) = written
                    && decide::progress_can_wait(
                        written,
                        &self.status,
                        jiff::Timestamp::now(),
                        every,
                    )
                {
                    // Nothing written: the poller wakes this object again on the next change, and the tally is
                    // written once it is due.
                    return Ok(Action::requeue(self.ctx.config.timing.poll_max.min(every)));
                }
                let message = self.status.results.unwrap_or_default().summary();
                self.running(Phase::Running, Reason::Running, message).await
            }
            decide::Step::Finish {
                phase,
                reason,
                stop,
            } => self.finish(phase, reason, stop).await,
        }
    }

    /// The intent is recorded but no ids are: an `actionPerform` may have happened. Look before deploying again.
    async fn recover(mut self) -> Result<Action, Error> {
        let Some(name) = self.status.deployment.action_name.clone() else {
            // Cannot happen through this operator (the name is written with the phase); start over cleanly.
            self.status.phase = Some(Phase::Pending);
            self.save().await?;
            return Ok(Action::requeue(Duration::ZERO));
        };
        let grace = self.ctx.config.timing.lookup_grace;
        let found =
            match deploy::look_up(&self.conn.gateway, &mut self.status.deployment, grace).await {
                Ok(found) => found,
                Err(e) => return self.gateway_trouble(e).await,
            };
        let deployed = crate::crd::condition(&self.status.conditions, condition::DEPLOYED);
        let ids = match decide::after_look_up(found, deployed) {
            decide::Recovery::Follow(ids) => ids,
            decide::Recovery::Wait(wait) => return Ok(Action::requeue(wait)),
            decide::Recovery::Failed(refusal) => return self.refused(refusal).await,
            decide::Recovery::Redeploy => {
                tracing::info!(action = %name, "no action by this name in Tanium; deploying after fresh checks");
                self.scratch.looked_up = true;
                // Everything may have changed since the intent (targets, limits, approval, suspend): check again.
                self.status.phase = Some(Phase::Pending);
                return Box::pin(self.apply()).await;
            }
        };
        let message = format!(
            "found scheduled action(s) {} named {name:?} from an earlier attempt whose answer was lost; not deploying again",
            ids.join(", ")
        );
        self.follow_found(Reason::Recovered, message).await
    }

    async fn running(
        mut self,
        phase: Phase,
        reason: Reason,
        message: String,
    ) -> Result<Action, Error> {
        let was = self.phase();
        self.status.phase = Some(phase);
        if self.obj.status.as_ref().map(|s| s.results) != Some(self.status.results) {
            self.status.results_written_at = Some(Time(jiff::Timestamp::now()));
        }
        self.set(condition::READY, false, reason, message.clone());
        self.set(condition::COMPLETED, false, reason, message.clone());
        self.save().await?;
        if was != phase && phase == Phase::AwaitingApproval {
            self.event(false, Reason::AwaitingTaniumApproval, message);
        }
        if !self.recurring() {
            // The shared poller wakes this object when one of its actions changes.
            return Ok(Action::requeue(self.ctx.config.timing.poll_max));
        }
        let age = self
            .status
            .deployment
            .deployed_at
            .as_ref()
            .map_or(Duration::ZERO, |t| {
                jiff::Timestamp::now().duration_since(t.0).unsigned_abs()
            });
        Ok(Action::requeue(self.ctx.config.timing.poll_interval(age)))
    }

    /// Stop what is still open, then record the terminal phase.
    async fn finish(
        mut self,
        phase: Phase,
        reason: Reason,
        to_stop: Vec<ActionId>,
    ) -> Result<Action, Error> {
        // A recurring action's schedule goes first, so that nothing is reissued once the object is terminal.
        let recurring = self.recurring();
        if let Err(e) = deploy::close(
            &self.conn.gateway,
            &mut self.status.deployment,
            recurring,
            &to_stop,
        )
        .await
        {
            return self.gateway_trouble(e).await;
        }
        let now = Time(jiff::Timestamp::now());
        if !to_stop.is_empty() {
            self.status.stopped_at = Some(now.clone());
            if let Some(r) = self.status.results.as_mut() {
                r.waiting_when_stopped = Some(r.counts.waiting);
            }
        }
        self.status.completed_at = Some(now);
        self.status.phase = Some(phase);
        let mut message = self.status.results.unwrap_or_default().summary();
        if !to_stop.is_empty() {
            let ids: Vec<String> = to_stop.iter().map(ToString::to_string).collect();
            let waiting = self.status.results.map_or(0, |r| r.counts.waiting);
            message.push_str(&format!(
                "; stopped action(s) {} that Tanium still showed open ({waiting} endpoint(s) still waiting were \
                 cut off)",
                ids.join(", ")
            ));
        }
        let done = phase == Phase::Completed;
        self.set(condition::COMPLETED, done, reason, message.clone());
        self.set(condition::READY, done, reason, message.clone());
        self.save().await?;
        self.conn.poller.forget(&tracking::polled(
            &self.status.deployment.scheduled_actions,
            self.recurring(),
        ));
        self.event(reason != Reason::Completed, reason, message);
        self.finished().await
    }

    /// Hold the deployment with a condition and an event; nothing is deployed.
    /// Held by a gate: phase Blocked, the reason in Ready, an event when it is new.
    async fn hold(self, held: gates::Held) -> Result<Action, Error> {
        let retry = match held.wait {
            gates::Wait::Permanent => self.ctx.config.timing.permanent_error,
            gates::Wait::Blocked => self.ctx.config.timing.blocked,
        };
        self.block(held.reason, held.message, retry).await
    }

    async fn block(
        mut self,
        reason: Reason,
        message: String,
        retry: Duration,
    ) -> Result<Action, Error> {
        let known = self.phase() == Phase::Blocked && self.ready_reason_is(reason);
        self.status.phase = Some(Phase::Blocked);
        self.warn(reason, message, known).await?;
        Ok(Action::requeue(retry))
    }

    fn owner(&self) -> super::poller::Owner {
        super::poller::Owner::Action(kube::runtime::reflector::ObjectRef::from_obj(self.obj))
    }

    /// The manifest's Tanium action name: found again by it after a crash, a lost answer or a re-creation.
    fn action_name(&self) -> String {
        self.obj.spec.tanium_action_name(
            &self.obj.namespace().unwrap_or_default(),
            &self.obj.name_any(),
        )
    }

    fn perform_request(&self) -> Result<PerformRequest, Error> {
        let spec = &self.obj.spec;
        let name = self
            .status
            .deployment
            .action_name
            .clone()
            .ok_or(Error::MissingField("status.actionName"))?;
        Ok(PerformRequest {
            name,
            comment: spec.comment.clone(),
            package: wire::package(&spec.package),
            targets: wire::targets(&spec.targets).map_err(GatewayError::InvalidRequest)?,
            schedule: wire::schedule(&spec.schedule),
        })
    }
}
