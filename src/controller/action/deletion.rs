//! A TaniumAction going away: `ttlSecondsAfterFinished` deleting a finished object, and the finalizer's cleanup
//! that stops what is still open (`deletionPolicy: Stop`) or leaves it (`Orphan`).

use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt as _};

use crate::controller::deploy::{self, LookUp};
use crate::controller::object::Object;
use crate::controller::{Error, deleting_for, tracking};
use crate::crd::{Reason, TaniumAction};
use crate::gateway::GatewayError;

impl Object<'_, TaniumAction> {
    /// A terminal object: nothing to ask the Gateway. Only the TTL remains.
    pub(super) async fn finished(self) -> Result<Action, Error> {
        let Some(ttl) = self.obj.spec.ttl_seconds_after_finished else {
            return Ok(Action::await_change());
        };
        let Some(done) = self.status.completed_at.as_ref().map(|t| t.0) else {
            return Ok(Action::await_change());
        };
        let due = done + jiff::SignedDuration::from_secs(ttl.max(0));
        let now = jiff::Timestamp::now();
        if now >= due {
            tracing::info!(name = %self.obj.name_any(), "deleting: ttlSecondsAfterFinished passed");
            // Only this object: a newer one of the same name is not ours to delete.
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: self.obj.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            self.api.delete(&self.obj.name_any(), &params).await?;
            return Ok(Action::await_change());
        }
        Ok(Action::requeue(due.duration_since(now).unsigned_abs()))
    }

    /// Deletion: stop a still-open action (`deletionPolicy: Stop`), or leave it (`Orphan`).
    pub(super) async fn cleanup(mut self) -> Result<Action, Error> {
        use crate::crd::action::DeletionPolicy;
        self.conn.poller.forget(&tracking::polled(
            &self.status.deployment.scheduled_actions,
            self.recurring(),
        ));
        let phase = self.phase();
        // Terminal objects may still own an open action (stopWhenComplete: false): the recorded instance
        // statuses say so without asking the Gateway.
        let still_open = self.status.deployment.maybe_open();
        let never_sent = self.status.deployment.action_name.is_none();
        if !phase.is_terminal()
            && !never_sent
            && self.status.deployment.scheduled_actions.is_empty()
        {
            // An intent without ids: its request may still land in Tanium. The object stays until a look-up by name
            // can be trusted, so that one created again under this name (a GitOps tool, a person) cannot deploy
            // beside it. Whatever the look-up finds is stopped below, or left as it is (Orphan).
            let grace = self.ctx.config.timing.lookup_grace;
            match deploy::look_up(&self.conn.gateway, &mut self.status.deployment, grace).await {
                Ok(LookUp::TooEarly(wait)) => return Err(Error::Requeue(wait)),
                Ok(LookUp::Adopted(_)) => {}
                Ok(LookUp::Nothing) => return Ok(Action::await_change()),
                Err(e) => return self.deletion_blocked(e).await,
            }
        }
        if self.obj.spec.deletion_policy == DeletionPolicy::Orphan
            || never_sent
            || (phase.is_terminal() && !still_open)
        {
            return Ok(Action::await_change());
        }
        match self.stop_everything().await {
            Ok(stopped) => {
                if !stopped.is_empty() {
                    self.event(
                        false,
                        Reason::Stopped,
                        format!(
                            "stopped Tanium action(s) {} on deletion",
                            stopped.join(", ")
                        ),
                    );
                }
                Ok(Action::await_change())
            }
            Err(e) => self.deletion_blocked(e).await,
        }
    }

    /// The Gateway cannot be asked what deletion needs: say so and try again, up to the deletion time-out.
    pub(super) async fn deletion_blocked(self, e: GatewayError) -> Result<Action, Error> {
        let since = deleting_for(self.obj.meta());
        if since >= self.ctx.config.timing.deletion_timeout {
            let message = format!(
                "could not stop the Tanium action(s) for {since:?} ({e}); letting the object go and leaving them as they are"
            );
            self.event(true, Reason::DeletionTimedOut, message);
            return Ok(Action::await_change());
        }
        let message = format!(
            "cannot stop the Tanium action(s) yet ({e}); deletion waits up to {:?}, or set deletionPolicy: Orphan",
            self.ctx.config.timing.deletion_timeout
        );
        self.deletion_waits(e, message).await
    }

    pub(super) async fn stop_everything(&mut self) -> Result<Vec<String>, GatewayError> {
        let all = deploy::instances(&self.status.deployment);
        let recurring = self.recurring();
        deploy::close(
            &self.conn.gateway,
            &mut self.status.deployment,
            recurring,
            &all,
        )
        .await
    }
}
