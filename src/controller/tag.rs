//! The TaniumTag reconciler. Every `interval`: count the matching endpoints and the ones lacking a tag (the
//! seed's best practice: the targeting itself excludes endpoints already done), deploy "Custom Tagging - Add
//! Tags" to those only, track the round to its end; remove tags dropped from the spec; and on deletion remove
//! every tag it applied before letting the object go. A steady state makes no Gateway write.

mod decide;
mod owner;

pub use owner::Claimants;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt as _};

use super::deploy::{self, LookUp};
use super::object::{Kind, Object, status_fields};
use super::{Context, Error, gates, tracking, wire};
use crate::crd::tag::{RoundKind, TagRound};
use crate::crd::{
    APPROVED_PREVIEW_ANNOTATION, Deployment, Reason, ResultCounts, TaniumTag, TaniumTagStatus,
    condition,
};
use crate::gateway::actions::{PackageRef, PerformRequest, Schedule, Target};
use crate::gateway::endpoints::EndpointQuery;
use crate::gateway::{ActionId, EndpointId, Filter, FilterOp, GatewayError};

pub const FINALIZER: &str = "tanium-operator.dev/remove-tags";
pub const ADD_TAGS: &str = "Custom Tagging - Add Tags";
pub const REMOVE_TAGS: &str = "Custom Tagging - Remove Tags";
const CUSTOM_TAGS: &str = "Custom Tags";

pub async fn reconcile(obj: Arc<TaniumTag>, ctx: Arc<Context>) -> Result<Action, Error> {
    super::object::reconcile(obj, ctx).await
}

/// Tags given to the tagging packages: their one parameter takes them separated by spaces.
fn tag_param(tags: &[String]) -> String {
    tags.join(" ")
}

/// Endpoints that carry any of `tags`.
fn carrying(tags: &[String]) -> Filter {
    Filter::any(
        tags.iter()
            .map(|t| Filter::sensor(CUSTOM_TAGS, FilterOp::Eq, t))
            .collect(),
    )
}

/// Endpoints that lack any of `tags` (NOT "Custom Tags" has it, for one tag or another).
fn lacking(tags: &[String]) -> Filter {
    Filter::any(
        tags.iter()
            .map(|t| Filter::sensor(CUSTOM_TAGS, FilterOp::Eq, t).negate())
            .collect(),
    )
}

/// Which endpoints a round deploys to.
enum Selection {
    Filter(Filter),
    Ids(Vec<EndpointId>),
}

impl Kind for TaniumTag {
    /// No round ever started and no tag is applied.
    fn nothing_in_tanium(status: &TaniumTagStatus) -> bool {
        status.rounds == 0 && status.round.is_none() && status.applied_tags.is_empty()
    }
    fn connection_ref(&self) -> Option<&crate::crd::ConnectionRef> {
        self.spec.connection_ref.as_ref()
    }
    const FINALIZER: &'static str = FINALIZER;
    type Status = TaniumTagStatus;
    type Scratch = ();

    fn scratch(&self) {}
    status_fields!(TaniumTagStatus);
    fn apply(o: Object<'_, Self>) -> impl Future<Output = Result<Action, Error>> + Send {
        o.apply()
    }
    fn cleanup(o: Object<'_, Self>) -> impl Future<Output = Result<Action, Error>> + Send {
        o.cleanup()
    }
    fn phase_label(status: &TaniumTagStatus) -> Option<String> {
        status.phase.map(|p| format!("{p:?}"))
    }
}

impl Object<'_, TaniumTag> {
    fn interval(&self) -> Duration {
        self.obj.spec.interval()
    }

    /// The phase and Ready condition a reconcile ended in (not saved).
    fn enter(&mut self, to: decide::Transition, message: impl Into<String>) {
        let (ready, reason) = to.ready();
        self.status.phase = Some(to.phase());
        self.set(condition::READY, ready, reason, message);
    }

    async fn apply(mut self) -> Result<Action, Error> {
        match decide::stage(self.status.round.is_some(), self.obj.spec.suspend) {
            decide::Stage::Round => return self.advance_round().await,
            decide::Stage::Suspended => {
                self.enter(
                    decide::Transition::Suspended,
                    "spec.suspend is true: no tagging rounds",
                );
                self.save().await?;
                return Ok(Action::requeue(self.interval()));
            }
            decide::Stage::Survey => {}
        }
        let spec = &self.obj.spec;
        let ns = self.obj.namespace().unwrap_or_default();
        let policy = Some(&self.ctx.config.policy);
        if let Err(held) =
            gates::check_targets(&spec.targets, &ns, policy, &[ADD_TAGS, REMOVE_TAGS])
        {
            return self.block(held.reason, held.message).await;
        }
        if let Some(refusal) = self.ctx.config.policy.refuses_tags(&ns, &spec.tags) {
            return self.block(Reason::PolicyDenied, refusal).await;
        }
        let elsewhere = self.owned_elsewhere().await?;
        if !elsewhere.is_empty() {
            // Its record of them goes too (a race between caches may have let it act): its deletion must not take
            // off what the owner keeps.
            self.let_go(&elsewhere);
            return self
                .block(Reason::TagOwnedElsewhere, owner::message(&elsewhere))
                .await;
        }
        for package in [ADD_TAGS, REMOVE_TAGS] {
            let found = match self.conn.packages.get(&self.conn.gateway, package).await {
                Ok(p) => p,
                Err(e) => return self.gateway_trouble(e).await,
            };
            if let Err(held) = decide::check_package(package, found.as_ref()) {
                return self.block(held.reason, held.message).await;
            }
        }

        // Tags dropped from the spec come off first.
        let dropped = decide::dropped(&self.status.applied_tags, &spec.tags);
        if !dropped.is_empty() {
            let (count, selection) = match self.select(carrying(&dropped)).await {
                Ok(found) => found,
                Err(e) => return self.gateway_trouble(e).await,
            };
            if count > 0 {
                return self
                    .start_round(RoundKind::Remove, dropped, count, selection)
                    .await;
            }
            self.status.applied_tags.retain(|t| !dropped.contains(t));
        }

        // Count, and tag only what lacks a tag.
        let tags = spec.tags.clone();
        let counted = async {
            let matched = self.count(None).await?;
            let (pending, selection) = self.select(lacking(&tags)).await?;
            Ok::<_, GatewayError>((matched, pending, selection))
        };
        let (matched, pending, selection) = match counted.await {
            Ok(c) => c,
            Err(e) => return self.gateway_trouble(e).await,
        };
        self.status.matched = Some(matched);
        self.status.pending = Some(pending);
        self.status.tagged = Some(matched.saturating_sub(pending));
        let limit = self.ctx.config.policy.max_targets(spec.safety.max_targets);
        match decide::after_count(pending, limit) {
            decide::Next::Round => {}
            decide::Next::Held(held) => return self.block(held.reason, held.message).await,
            decide::Next::InSync => {
                decide::record_applied(&mut self.status.applied_tags, &tags);
                let message = format!(
                    "all {matched} matching endpoint(s) carry {}",
                    tags.join(", ")
                );
                self.enter(decide::Transition::InSync, message);
                self.save().await?;
                return Ok(Action::requeue(self.interval()));
            }
        }
        // The second act a namespace user cannot perform alone: above the operator's threshold, a person approves
        // this round (its tags, targets and count) first.
        let unapproved = self
            .ctx
            .config
            .policy
            .approval_needed(pending)
            .map(|threshold| {
                (
                    threshold,
                    decide::round_digest(&tags, &spec.targets, pending),
                )
            })
            .filter(|(_, digest)| {
                self.obj.annotations().get(APPROVED_PREVIEW_ANNOTATION) != Some(digest)
            });
        if let Some((threshold, digest)) = unapproved {
            let ns = self.obj.namespace();
            let command = super::preview::approve_command_for(
                "taniumtag",
                &self.obj.name_any(),
                ns.as_deref(),
                &digest,
            );
            let message = format!(
                "{pending} endpoint(s) lack a tag, more than the operator's approval threshold ({threshold}) lets \
                 a round tag unapproved; to tag them, approve this round: {command}"
            );
            self.status.round_digest = Some(digest);
            return self
                .hold(decide::Transition::AwaitingApproval, message)
                .await;
        }
        self.status.round_digest = None;
        self.start_round(RoundKind::Add, tags, pending, selection)
            .await
    }

    /// The tags this object claims that another TaniumTag owns (`owner`), by the claimants' watch.
    async fn owned_elsewhere(&self) -> Result<Vec<(String, owner::Owner)>, Error> {
        // Until the claimants' watch has listed every TaniumTag once, nothing can be decided.
        let all = self
            .ctx
            .tag_claimants
            .cached()
            .await
            .ok_or(Error::Requeue(Duration::from_secs(1)))?;
        let me = owner::Claimant::of(self.obj);
        Ok(owner::owned_elsewhere(&me, &all, &self.ctx.config.policy))
    }

    /// Forget having applied tags another TaniumTag owns: they stay on the endpoints.
    fn let_go(&mut self, elsewhere: &[(String, owner::Owner)]) {
        self.status
            .applied_tags
            .retain(|t| !elsewhere.iter().any(|(owned, _)| owned == t));
    }

    /// The targets' filter or ids, as they are sent.
    fn target(&self) -> Result<(Option<Filter>, Vec<EndpointId>), GatewayError> {
        let targets =
            wire::targets(&self.obj.spec.targets).map_err(GatewayError::InvalidRequest)?;
        Ok(targets.target.into_query())
    }

    /// Endpoints matching the targets AND `extra`: how many, and how to deploy to exactly them.
    async fn select(&self, extra: Filter) -> Result<(u64, Selection), GatewayError> {
        match self.target()? {
            (None, ids) => {
                let query = EndpointQuery {
                    filter: Some(extra),
                    ids: ids.clone(),
                    page_size: ids.len().max(1) as u32,
                    ..EndpointQuery::default()
                };
                let found = self.conn.gateway.all_endpoints(&query, None).await?;
                Ok((
                    found.len() as u64,
                    Selection::Ids(found.into_iter().map(|e| e.id).collect()),
                ))
            }
            (Some(f), _) => {
                let filter = Filter::all(vec![f, extra]);
                let count = self.conn.gateway.count_endpoints(Some(&filter)).await?;
                Ok((count, Selection::Filter(filter)))
            }
        }
    }

    async fn count(&self, extra: Option<Filter>) -> Result<u64, GatewayError> {
        let (filter, ids) = self.target()?;
        let query = EndpointQuery {
            filter: match (filter, extra) {
                (Some(f), Some(e)) => Some(Filter::all(vec![f, e])),
                (f, e) => f.or(e),
            },
            ids,
            page_size: 1,
            ..EndpointQuery::default()
        };
        Ok(self.conn.gateway.endpoints_page(&query, None).await?.total)
    }

    /// Record the round's intent, then deploy it once.
    async fn start_round(
        mut self,
        kind: RoundKind,
        tags: Vec<String>,
        targeted: u64,
        selection: Selection,
    ) -> Result<Action, Error> {
        let mut targets =
            wire::targets(&self.obj.spec.targets).map_err(GatewayError::InvalidRequest)?;
        targets.target = match selection {
            Selection::Filter(f) => Target::Filter(f),
            Selection::Ids(ids) => Target::Endpoints(ids),
        };
        let number = self.status.rounds + 1;
        let verb = match kind {
            RoundKind::Add => "add",
            RoundKind::Remove => "remove",
        };
        let prefix: String = format!(
            "{}/{}",
            self.obj.namespace().unwrap_or_default(),
            self.obj.name_any()
        )
        .chars()
        .take(120)
        .collect();
        let name = format!(
            "{prefix} [{}] {verb} #{number}",
            self.obj.uid().unwrap_or_default()
        );
        let mut round = TagRound {
            number,
            kind,
            tags: tags.clone(),
            targeted,
            deployment: Deployment::default(),
            results: None,
            finished_at: None,
        };
        if kind == RoundKind::Add {
            // Acting makes an owner: asked of the apiserver, not the cache, right before, so that two objects
            // reconciled at once on caches a moment old do not both act.
            let all = self.ctx.tag_claimants.listed().await?;
            let me = owner::Claimant::of(self.obj);
            let elsewhere = owner::owned_elsewhere(&me, &all, &self.ctx.config.policy);
            if !elsewhere.is_empty() {
                return self
                    .block(Reason::TagOwnedElsewhere, owner::message(&elsewhere))
                    .await;
            }
        }
        let intent = match deploy::Intent::reserve(&self.conn.gateway).await {
            Ok(intent) => intent,
            Err(e) => return self.gateway_trouble(e).await,
        };
        round.deployment.record_intent(name.clone());
        self.status.rounds = number;
        let message = format!(
            "round {number}: {verb} {} on {targeted} endpoint(s)",
            tags.join(", ")
        );
        self.enter(decide::Transition::Round(kind), message.clone());
        self.status.round = Some(round);
        self.save().await?;

        let request = PerformRequest {
            name,
            comment: format!(
                "TaniumTag {}/{}: {verb} {}",
                self.obj.namespace().unwrap_or_default(),
                self.obj.name_any(),
                tags.join(" ")
            ),
            package: PackageRef {
                id: None,
                name: Some(
                    if kind == RoundKind::Add {
                        ADD_TAGS
                    } else {
                        REMOVE_TAGS
                    }
                    .into(),
                ),
                params: vec![tag_param(&tags)],
                sensor_sourced_params: Vec::new(),
            },
            targets,
            schedule: Schedule::default(),
        };
        let Some(round) = self.status.round.as_mut() else {
            return Err(Error::MissingField("status.round"));
        };
        let sent = deploy::perform(
            &self.conn.gateway,
            &mut round.deployment,
            &request,
            intent,
            self.ctx.config.timing.intent_max_age,
        )
        .await;
        match sent {
            Ok(()) => {
                self.save().await?;
                self.echo(Reason::RoundStarted, message);
                Ok(Action::requeue(self.ctx.config.timing.poll_min))
            }
            Err(e) if e.refusal().is_some() => {
                // Refused. The intent stays: the round is dropped only once a look-up by name (after the grace
                // period) confirms that nothing was created, so a partly created deployment is never repeated.
                self.block(Reason::DeployRefused, e.to_string()).await
            }
            Err(GatewayError::Fenced { reason, .. }) => {
                // Nothing sent; the round's intent stays and is looked up by name once the grace is over.
                tracing::info!(%reason, "tag round not sent; it will be looked up by name");
                Ok(Action::requeue(self.ctx.config.timing.poll_min))
            }
            Err(e) => self.gateway_trouble(e).await,
        }
    }

    /// A round in flight: find it after a lost answer, poll it, and close it when every target finished.
    async fn advance_round(mut self) -> Result<Action, Error> {
        let grace = self.ctx.config.timing.lookup_grace;
        let Some(mut round) = self.status.round.clone() else {
            return Ok(Action::requeue(Duration::ZERO));
        };
        if round.deployment.scheduled_actions.is_empty() {
            match deploy::look_up(&self.conn.gateway, &mut round.deployment, grace).await {
                Ok(LookUp::Adopted(ids)) => {
                    let message = format!(
                        "round {}: found scheduled action(s) {} after a lost answer",
                        round.number,
                        ids.join(", ")
                    );
                    self.status.round = Some(round);
                    self.save().await?;
                    self.event(false, Reason::Recovered, message);
                    return Ok(Action::requeue(self.ctx.config.timing.poll_min));
                }
                Ok(LookUp::TooEarly(wait)) => return Ok(Action::requeue(wait)),
                Ok(LookUp::Nothing) => {
                    // Nothing was created under this round's name: drop it; the next round starts from fresh counts.
                    self.status.round = None;
                    self.save().await?;
                    return Ok(Action::requeue(Duration::ZERO));
                }
                Err(e) => return self.gateway_trouble(e).await,
            }
        }
        let owner =
            super::poller::Owner::Tag(kube::runtime::reflector::ObjectRef::from_obj(self.obj));
        let Some(progress) = tracking::poll(
            &self.conn.poller,
            &owner,
            &mut round.deployment.scheduled_actions,
            false,
            self.ctx.config.timing.gone_after,
        ) else {
            // The poller wakes this object when it has the answer; the requeue is only a safety net.
            self.status.round = Some(round);
            return Ok(Action::requeue(self.ctx.config.timing.poll_max));
        };
        round.results = Some(ResultCounts {
            targeted: round.targeted,
            counts: progress.results,
            waiting_when_stopped: None,
        });
        if !decide::round_over(&progress, round.targeted) {
            self.status.round = Some(round);
            self.save().await?;
            // The shared poller wakes this object when the round's actions change.
            return Ok(Action::requeue(self.ctx.config.timing.poll_max));
        }
        // Tanium keeps an action open until it expires; a finished round is closed now.
        if !progress.open.is_empty()
            && let Some(r) = round.results.as_mut()
        {
            r.waiting_when_stopped = Some(r.counts.waiting);
        }
        if let Err(e) = deploy::close(
            &self.conn.gateway,
            &mut round.deployment,
            false,
            &progress.open,
        )
        .await
        {
            return self.gateway_trouble(e).await;
        }
        self.conn.poller.forget(&tracking::polled(
            &round.deployment.scheduled_actions,
            false,
        ));
        round.finished_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        ));
        let r = progress.results;
        match round.kind {
            RoundKind::Add => decide::record_applied(&mut self.status.applied_tags, &round.tags),
            // Kept until a recount finds no endpoint carrying them: one that failed or was offline gets another
            // removal round, and a deletion waits for it (up to its timeout).
            RoundKind::Remove => {}
        }
        let message = format!(
            "round {} finished: {} of {} endpoint(s) completed, {} failed, {} expired",
            round.number, r.completed, round.targeted, r.failed, r.expired
        );
        self.status.round = None;
        self.status.last_round = Some(round);
        self.save().await?;
        self.event(r.failed + r.expired > 0, Reason::RoundFinished, message);
        // The next count waits an interval: the Gateway's cached readings of "Custom Tags" need time to show the
        // new tags, and counting at once would target the same endpoints again.
        Ok(Action::requeue(self.interval()))
    }

    /// Deletion: finish or stop the round in flight, then remove every tag this object applied, tracked to the
    /// end, before the object goes. Bounded by the deletion timeout, with an event.
    async fn cleanup(mut self) -> Result<Action, Error> {
        let since = super::deleting_for(self.obj.meta());
        if since >= self.ctx.config.timing.deletion_timeout {
            // Best effort: a round still running would keep changing endpoints after the object is gone.
            if let Some(mut round) = self.status.round.clone() {
                let open = deploy::instances(&round.deployment);
                if let Err(e) =
                    deploy::close(&self.conn.gateway, &mut round.deployment, false, &open).await
                {
                    tracing::warn!(error = %e, "cannot stop the round in flight of a TaniumTag being let go");
                }
            }
            let message = format!(
                "could not remove tag(s) {} within {:?}; letting the object go and leaving them on the endpoints",
                self.status.applied_tags.join(", "),
                self.ctx.config.timing.deletion_timeout
            );
            self.event(true, Reason::DeletionTimedOut, message);
            return Ok(Action::await_change());
        }
        if let Some(mut round) = self.status.round.clone() {
            if round.kind == RoundKind::Add && !round.deployment.scheduled_actions.is_empty() {
                // No point finishing an add that is about to be undone: stop it, then remove.
                let open: Vec<ActionId> = deploy::instances(&round.deployment);
                if let Err(e) =
                    deploy::close(&self.conn.gateway, &mut round.deployment, false, &open).await
                {
                    return self.cleanup_blocked(e).await;
                }
                decide::record_applied(&mut self.status.applied_tags, &round.tags);
                self.status.round = None;
                self.save().await?;
                return Err(Error::Requeue(Duration::ZERO));
            }
            // A removal (or an intent without ids) follows its normal course, at its own pace.
            let wait = if round.deployment.scheduled_actions.is_empty() {
                (self.ctx.config.timing.lookup_grace / 4).max(Duration::from_secs(1))
            } else {
                self.ctx
                    .config
                    .timing
                    .poll_interval(round_age(&Some(round.clone())))
            };
            self.advance_round().await?;
            return Err(Error::Requeue(wait));
        }
        let elsewhere = self.owned_elsewhere().await?;
        self.let_go(&elsewhere);
        if self.status.applied_tags.is_empty() {
            if !elsewhere.is_empty() {
                self.save().await?;
            }
            return Ok(Action::await_change());
        }
        let tags = self.status.applied_tags.clone();
        let (count, selection) = match self.select(carrying(&tags)).await {
            Ok(found) => found,
            Err(e) => return self.cleanup_blocked(e).await,
        };
        if count == 0 {
            self.status.applied_tags.clear();
            self.save().await?;
            return Ok(Action::await_change());
        }
        let wait = self.ctx.config.timing.poll_min;
        self.start_round(RoundKind::Remove, tags, count, selection)
            .await?;
        Err(Error::Requeue(wait))
    }

    async fn cleanup_blocked(self, e: GatewayError) -> Result<Action, Error> {
        let message = format!(
            "cannot remove the tags yet ({e}); deletion waits up to {:?}",
            self.ctx.config.timing.deletion_timeout
        );
        self.deletion_waits(e, message).await
    }

    async fn block(self, reason: Reason, message: String) -> Result<Action, Error> {
        self.hold(decide::Transition::Held(reason), message).await
    }

    /// Held where `to` says, with a warning event when that is news; looked at again within the interval.
    async fn hold(mut self, to: decide::Transition, message: String) -> Result<Action, Error> {
        let (_, reason) = to.ready();
        let known = self.status.phase == Some(to.phase()) && self.ready_reason_is(reason);
        self.status.phase = Some(to.phase());
        self.warn(reason, message, known).await?;
        Ok(Action::requeue(
            self.interval().min(self.ctx.config.timing.permanent_error),
        ))
    }
}

fn round_age(round: &Option<TagRound>) -> Duration {
    round
        .as_ref()
        .and_then(|r| r.deployment.deployed_at.as_ref())
        .map_or(Duration::ZERO, |t| {
            jiff::Timestamp::now().duration_since(t.0).unsigned_abs()
        })
}
