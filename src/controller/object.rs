//! One reconcile of one object, whatever its kind: the object as read, a working copy of its status, where to
//! write it, and the events it raises. What every kind does the same way lives here once: the finalizer around a
//! reconcile, counting the object under its phase, the operator's own conditions, the one status-write rule, and
//! how a Gateway error or a hold is said. Each kind's reconciler (`action`, `tag`, `inspection`) is an `impl` on
//! [`Object`] of its kind and keeps only its decisions.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt as _};

use super::connection::Connection;
use super::connections::Refusal;
pub use super::events::Events;
use super::{Context, Error};
use crate::crd::{ConnectionRef, Reason, condition, ready_reason_is, set_condition};
use crate::gateway::{GatewayError, TlsVerification};

/// What differs between kinds, for the parts every kind shares.
pub trait Kind:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
{
    /// The finalizer that holds the object until [`Kind::cleanup`] is done.
    const FINALIZER: &'static str;
    type Status: Clone + Default + PartialEq + serde::Serialize;
    /// What one reconcile of this kind carries besides the status.
    type Scratch;

    fn scratch(&self) -> Self::Scratch;
    fn status(&self) -> Option<&Self::Status>;
    fn conditions(status: &Self::Status) -> &[Condition];
    fn conditions_mut(status: &mut Self::Status) -> &mut Vec<Condition>;
    fn observe(status: &mut Self::Status, generation: Option<i64>);
    fn observed(status: &Self::Status) -> Option<i64>;
    /// The label the object is counted under (`tanium_operator_objects{phase}`).
    fn phase_label(status: &Self::Status) -> Option<String>;
    /// The operator no longer acts for the object: conditions about its own Gateway access are dropped.
    fn at_rest(_status: &Self::Status) -> bool {
        false
    }
    /// Over for good: a new generation (a field that may still change) changes nothing it says.
    fn finished(_status: &Self::Status) -> bool {
        false
    }
    /// A finished object still has something due at a time, without any change to wake it (TaniumAction's
    /// `ttlSecondsAfterFinished`): it is not [`settled`].
    fn due_later(&self) -> bool {
        false
    }
    /// The connection the object names (`spec.connectionRef`); none: the operator's own.
    fn connection_ref(&self) -> Option<&ConnectionRef>;
    /// Nothing of this object is in Tanium (never deployed, nothing open, no tag applied): its deletion needs no
    /// Gateway, so it is not held when its connection is gone.
    fn nothing_in_tanium(_status: &Self::Status) -> bool {
        false
    }
    /// What the kind does while the object lives.
    fn apply(o: Object<'_, Self>) -> impl Future<Output = Result<Action, Error>> + Send;
    /// What it does once the object is being deleted; the finalizer is released when this returns `Ok`.
    fn cleanup(o: Object<'_, Self>) -> impl Future<Output = Result<Action, Error>> + Send;
}

/// One reconcile of an object of any kind: behind the kind's finalizer, [`Object::start`]ed, then the kind's
/// `apply` or `cleanup`.
///
/// First the connection the object names (`controller::connections`): one it may not use, or that is not there or
/// not ready, holds it with a condition naming the connection, and nothing is sent anywhere. A finished object asks
/// the Gateway nothing and goes on without one; an object being deleted goes without one when nothing of it is in
/// Tanium, and otherwise waits for it.
pub async fn reconcile<K: Kind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let c = ctx.clone();
    let connection = |obj: &K| {
        let namespace = obj.meta().namespace.as_deref().unwrap_or_default();
        c.connections.for_object(namespace, obj.connection_ref())
    };
    with_finalizer(
        obj,
        ctx.clone(),
        K::FINALIZER,
        async |obj, api, events| {
            let conn = match connection(&obj) {
                Ok(conn) => conn,
                Err(_) if obj.status().is_some_and(K::finished) => c.connections.own().clone(),
                Err(refusal) => {
                    return Object::unconnected(obj.as_ref(), &c, &api, events)
                        .refuse(refusal)
                        .await;
                }
            };
            K::apply(Object::start(obj.as_ref(), &c, conn, &api, events).await?).await
        },
        async |obj, api, events| match connection(&obj) {
            Ok(conn) => K::cleanup(Object::new(obj.as_ref(), &c, conn, &api, events)).await,
            Err(_) if obj.status().is_none_or(K::nothing_in_tanium) => Ok(Action::await_change()),
            Err(refusal) => {
                Object::unconnected(obj.as_ref(), &c, &api, events)
                    .deletion_held(refusal)
                    .await
            }
        },
    )
    .await
}

/// The [`Kind`] accessors of a status with `conditions` and `observed_generation` fields, as every kind's has.
macro_rules! status_fields {
    ($status:ty) => {
        fn status(&self) -> Option<&$status> {
            self.status.as_ref()
        }
        fn conditions(status: &$status) -> &[Condition] {
            &status.conditions
        }
        fn conditions_mut(status: &mut $status) -> &mut Vec<Condition> {
            &mut status.conditions
        }
        fn observe(status: &mut $status, generation: Option<i64>) {
            status.observed_generation = generation;
        }
        fn observed(status: &$status) -> Option<i64> {
            status.observed_generation
        }
    };
}
pub(super) use status_fields;

/// One reconcile of one object of kind `K`.
pub struct Object<'a, K: Kind> {
    pub obj: &'a K,
    pub ctx: &'a Context,
    /// The Tanium server this object's requests go to: its only way to the Gateway.
    pub conn: Arc<Connection>,
    pub api: &'a Api<K>,
    events: &'a Events,
    pub status: K::Status,
    /// The object's version as this reconcile knows it: every status write is conditional on it, so a reconcile
    /// that started from a stale copy fails with a conflict instead of acting on old state.
    resource_version: Option<String>,
    pub scratch: K::Scratch,
}

impl<'a, K: Kind> Object<'a, K> {
    pub fn new(
        obj: &'a K,
        ctx: &'a Context,
        conn: Arc<Connection>,
        api: &'a Api<K>,
        events: &'a Events,
    ) -> Self {
        let mut this = Self::unconnected(obj, ctx, api, events);
        let generation = obj.meta().generation;
        mark_operator_conditions(K::conditions_mut(&mut this.status), &conn, generation);
        this.conn = conn;
        this
    }

    /// An object whose connection cannot be used: only what `refuse` and `deletion_held` need. Its `conn` is the
    /// operator's own, which neither uses (nothing is sent for it).
    fn unconnected(obj: &'a K, ctx: &'a Context, api: &'a Api<K>, events: &'a Events) -> Self {
        count(obj, ctx);
        let conn = ctx.connections.own().clone();
        let mut status = obj.status().cloned().unwrap_or_default();
        let generation = obj.meta().generation;
        K::observe(&mut status, generation);
        Self {
            obj,
            ctx,
            conn,
            api,
            events,
            status,
            resource_version: obj.meta().resource_version.clone(),
            scratch: obj.scratch(),
        }
    }

    /// The object, ready to reconcile. A changed spec is first said to be in progress and written, before any
    /// Gateway request: until then Argo CD and people would read the previous generation's verdict. A new object
    /// needs no such write (the apiserver is the limit under a burst, and this would be one more per object): the
    /// CRDs default its status to `observedGeneration: 0`, which kstatus and the Argo CD health checks read as in
    /// progress until the operator's first real write. A status written before Reconciling and Stalled existed gets
    /// them here too (`save` writes only when something differs).
    pub async fn start(
        obj: &'a K,
        ctx: &'a Context,
        conn: Arc<Connection>,
        api: &'a Api<K>,
        events: &'a Events,
    ) -> Result<Self, Error> {
        let mut this = Self::new(obj, ctx, conn, api, events);
        let stored = obj.status().and_then(K::observed);
        if stored.unwrap_or(0) == 0 {
            return Ok(this);
        }
        if stored != obj.meta().generation && !K::finished(&this.status) {
            let message = format!(
                "generation {} is being reconciled",
                obj.meta().generation.unwrap_or_default()
            );
            this.set(condition::READY, false, Reason::Progressing, message);
        }
        this.save().await?;
        Ok(this)
    }

    pub fn set(
        &mut self,
        type_: &str,
        ok: bool,
        reason: impl AsRef<str>,
        message: impl Into<String>,
    ) {
        set_condition(
            K::conditions_mut(&mut self.status),
            type_,
            ok,
            reason.as_ref(),
            message,
            self.obj.meta().generation,
        );
    }

    pub fn ready_reason_is(&self, reason: impl AsRef<str>) -> bool {
        ready_reason_is(K::conditions(&self.status), reason.as_ref())
    }

    /// Raised now, published when the reconcile is over (see [`Events`]).
    pub fn event(&self, warning: bool, reason: impl AsRef<str>, note: String) {
        self.events.raise(warning, reason.as_ref(), note);
    }

    /// An event that only repeats what status already says (a preview taken, a round started, a connection opened
    /// again): published only with `--all-events`. By default an object's events are the ones that move it on or
    /// need a person, two for a one-off action's whole life, so that a burst spends the apiserver on writes.
    pub fn echo(&self, reason: Reason, note: String) {
        if self.ctx.config.all_events {
            self.event(false, reason, note);
        } else {
            tracing::debug!(
                reason = reason.as_str(),
                note,
                "not published (--all-events is off)"
            );
        }
    }

    /// The one place status is written: server-side apply of the whole status as this operator's field manager,
    /// conditional on the resourceVersion. A reconcile that learned nothing new writes nothing.
    pub async fn save(&mut self) -> Result<(), Error> {
        normalize::<K>(&mut self.status, self.obj.meta().generation);
        if self.obj.status() == Some(&self.status)
            && self.resource_version == self.obj.meta().resource_version
        {
            return Ok(());
        }
        write_status(
            self.api,
            &self.obj.name_any(),
            &mut self.resource_version,
            &self.status,
        )
        .await?;
        let label = K::phase_label(&self.status);
        self.ctx.metrics.phase(
            K::kind(&()).as_ref(),
            &self.obj.uid().unwrap_or_default(),
            label.as_deref(),
        );
        Ok(())
    }

    /// Write the next status on top of this version (one read after a conflict), not the one first read.
    pub fn rebase(&mut self, resource_version: Option<String>) {
        self.resource_version = resource_version;
    }

    /// Ready=False with `reason`, saved, and a warning event unless it says nothing new (`known`).
    pub async fn warn(
        &mut self,
        reason: impl AsRef<str>,
        message: String,
        known: bool,
    ) -> Result<(), Error> {
        let reason = reason.as_ref();
        self.set(condition::READY, false, reason, message.clone());
        self.save().await?;
        if !known {
            self.event(true, reason, message);
        }
        Ok(())
    }

    /// The object's connection cannot be used: said in Ready (an event when it is news), looked at again after
    /// the gates' interval.
    async fn refuse(mut self, refusal: Refusal) -> Result<Action, Error> {
        let known = self.ready_reason_is(refusal.reason);
        self.warn(refusal.reason, refusal.message, known).await?;
        Ok(Action::requeue(self.ctx.config.timing.blocked))
    }

    /// Deletion needs the Gateway (something of the object is in Tanium) and the object's connection cannot be
    /// used: the finalizer stays, and Ready says why and what a person can do.
    async fn deletion_held(mut self, refusal: Refusal) -> Result<Action, Error> {
        let message = format!(
            "{} Deletion waits for it: what this object left in Tanium can only be stopped or removed through it \
             (or remove the finalizer {} to leave it there)",
            refusal.message,
            K::FINALIZER
        );
        let known = self.ready_reason_is(Reason::DeletionBlocked);
        self.warn(Reason::DeletionBlocked, message, known).await?;
        Err(Error::Requeue(self.ctx.config.timing.blocked))
    }

    /// Deletion cannot go on yet (what it needs from the Gateway failed): said in Ready and an event, and the error
    /// goes to the backoff, so that the finalizer is tried again.
    pub async fn deletion_waits(
        mut self,
        e: GatewayError,
        message: String,
    ) -> Result<Action, Error> {
        self.set(
            condition::READY,
            false,
            Reason::DeletionBlocked,
            message.clone(),
        );
        self.save().await?;
        self.event(true, Reason::DeletionBlocked, message);
        Err(e.into())
    }

    /// A Gateway error: said in Ready (an event when it is news); a person's problem (token, refusal) is looked at
    /// again slowly, a passing one goes to the error policy's backoff.
    pub async fn gateway_trouble(mut self, e: GatewayError) -> Result<Action, Error> {
        let known = self.ready_reason_is(e.reason());
        self.warn(e.reason(), e.to_string(), known).await?;
        if e.is_permanent() {
            Ok(Action::requeue(self.ctx.config.timing.permanent_error))
        } else {
            Err(e.into())
        }
    }
}

/// Counted under its phase as read, so that objects that need no write (terminal, steady, [`settled`]) count after
/// a restart too.
pub fn count<K: Kind>(obj: &K, ctx: &Context) {
    let label = obj.status().and_then(K::phase_label);
    ctx.metrics.phase(
        K::kind(&()).as_ref(),
        &obj.uid().unwrap_or_default(),
        label.as_deref(),
    );
}

/// What every status write adds to what a reconcile decided: an object the operator no longer acts for loses the
/// operator's own conditions, and Reconciling and Stalled follow Ready.
fn normalize<K: Kind>(status: &mut K::Status, generation: Option<i64>) {
    if K::at_rest(status) {
        clear_operator_conditions(K::conditions_mut(status));
    }
    super::kstatus::derive(K::conditions_mut(status), generation);
}

/// Nothing is left to do for `obj` until it changes: finished, its generation observed, not being deleted, behind
/// the kind's finalizer, nothing due later, and a status that a write would not change. A reconcile of it as it is
/// would count it, write nothing, ask the Gateway nothing and wait for a change; and any change that could matter
/// (a new generation, deletion) arrives as a new version of the whole object, which is no longer settled. So the
/// watch cache need not keep it (`cached::settle`), and no reconcile ever reads less than the whole object.
pub fn settled<K: Kind>(obj: &K) -> bool {
    let meta = obj.meta();
    let Some(status) = obj.status() else {
        return false;
    };
    if !K::finished(status)
        || obj.due_later()
        || K::observed(status) != meta.generation
        || meta.deletion_timestamp.is_some()
        || !meta
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == K::FINALIZER))
    {
        return false;
    }
    let mut written = status.clone();
    normalize::<K>(&mut written, meta.generation);
    written == *status
}

/// A reconcile behind the kind's finalizer: `apply` while the object lives, `cleanup` once it is being deleted
/// (the finalizer is released when `cleanup` returns `Ok`). Everything it logs carries the object (kind,
/// namespace, name) and a reconcile id, so that one reconcile's lines can be picked out of many.
async fn with_finalizer<K>(
    obj: Arc<K>,
    ctx: Arc<Context>,
    name: &str,
    apply: impl AsyncFnOnce(Arc<K>, kube::Api<K>, &Events) -> Result<Action, Error>,
    cleanup: impl AsyncFnOnce(Arc<K>, kube::Api<K>, &Events) -> Result<Action, Error>,
) -> Result<Action, Error>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    use tracing::Instrument as _;
    static RECONCILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = RECONCILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let span = tracing::info_span!(
        "reconcile",
        kind = %K::kind(&()),
        namespace = %obj.meta().namespace.as_deref().unwrap_or_default(),
        name = %obj.meta().name.as_deref().unwrap_or_default(),
        reconcile_id = id,
    );
    async move {
        use kube::runtime::finalizer::{Error as FinalizerError, Event as Step, finalizer};
        let started = std::time::Instant::now();
        let ns = obj
            .meta()
            .namespace
            .clone()
            .ok_or(Error::MissingField("metadata.namespace"))?;
        let uid = obj
            .meta()
            .uid
            .clone()
            .ok_or(Error::MissingField("metadata.uid"))?;
        let api: kube::Api<K> = kube::Api::namespaced(ctx.client.clone(), &ns);
        let obj = match with_our_finalizer(&api, name, obj).await {
            Ok(obj) => obj,
            Err(e) => {
                ctx.metrics.reconciled(
                    K::kind(&()).as_ref(),
                    "KubernetesApiError",
                    started.elapsed(),
                );
                return Err(e);
            }
        };
        let reference = obj.object_ref(&());
        let events = Events::default();
        let result = finalizer(&api, name, obj, |event| async {
            match event {
                Step::Apply(obj) => apply(obj, api.clone(), &events).await,
                Step::Cleanup(obj) => {
                    let done = cleanup(obj, api.clone(), &events).await;
                    if done.is_ok() {
                        // The finalizer is released next: the object no longer counts in any phase.
                        ctx.metrics.phase(K::kind(&()).as_ref(), &uid, None);
                    }
                    done
                }
            }
        })
        .await
        .map_err(|e| match e {
            FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
            other => Error::Finalizer(Box::new(other)),
        });
        events.publish(&ctx.client, &ctx.reporter, &reference).await;
        if result.is_ok() {
            ctx.record_success(&uid);
        }
        let outcome = match &result {
            Ok(_) | Err(Error::Requeue(_)) => "ok",
            Err(e) => e.reason(),
        };
        ctx.metrics
            .reconciled(K::kind(&()).as_ref(), outcome, started.elapsed());
        result
    }
    .instrument(span)
    .await
}

/// A new object gets the finalizer here, and the reconcile goes on with the object the patch returned, rather than
/// ending and waiting for the watch to bring the change back: one reconcile per new object, not two, which is most
/// of an apply → deploy's latency. The patch is kube-runtime's own (it tests the list it extends).
async fn with_our_finalizer<K>(api: &kube::Api<K>, name: &str, obj: Arc<K>) -> Result<Arc<K>, Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use kube::api::{Patch, PatchParams};
    let meta = obj.meta();
    let finalizers = meta.finalizers.clone().unwrap_or_default();
    if meta.deletion_timestamp.is_some() || finalizers.iter().any(|f| f == name) {
        return Ok(obj);
    }
    let object_name = meta
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let ops = if finalizers.is_empty() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [name]},
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "add", "path": "/metadata/finalizers/-", "value": name},
        ])
    };
    let patch: json_patch::Patch =
        serde_json::from_value(ops).map_err(|_| Error::MissingField("a valid finalizer patch"))?;
    let patched = api
        .patch(
            &object_name,
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await?;
    Ok(Arc::new(patched))
}

/// Remove what `mark_operator_conditions` adds: an object the operator no longer acts for (a finished or suspended
/// TaniumAction) does not depend on its Gateway access, and would otherwise keep a stale `GatewayToken` for ever.
fn clear_operator_conditions(
    conditions: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
) {
    conditions.retain(|c| {
        c.type_ != condition::GATEWAY_TLS_VERIFIED && c.type_ != condition::GATEWAY_TOKEN
    });
}

/// What every object says about the operator itself, present only while a person should act:
/// `GatewayTLSVerified=False` while the Gateway's certificate is not checked (what the object reports came over a
/// connection anyone on the path could have answered), `GatewayToken=False` while token rotation needs a person.
fn mark_operator_conditions(
    conditions: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    conn: &Connection,
    generation: Option<i64>,
) {
    match conn.gateway.tls() {
        TlsVerification::Insecure => set_condition(
            conditions,
            condition::GATEWAY_TLS_VERIFIED,
            false,
            Reason::VerificationDisabled.as_str(),
            if conn.is_own() {
                format!(
                    "the operator runs with TANIUM_INSECURE_SKIP_TLS_VERIFY: it does not check the Gateway's \
                     certificate, so {}",
                    TlsVerification::INSECURE_RISK
                )
            } else {
                format!(
                    "connection {} has insecureSkipTLSVerify: the operator does not check that Gateway's \
                     certificate, so {}",
                    conn.name,
                    TlsVerification::INSECURE_RISK
                )
            },
            generation,
        ),
        TlsVerification::Verify => {
            conditions.retain(|c| c.type_ != condition::GATEWAY_TLS_VERIFIED);
        }
    }
    super::rotation::state::say_trouble(conditions, conn.rotation.trouble(), generation);
}

/// Server-side apply of `status` as the operator's field manager, conditional on `resource_version` (then the
/// version written): every status the operator writes goes through here.
pub(super) async fn write_status<K>(
    api: &kube::Api<K>,
    name: &str,
    resource_version: &mut Option<String>,
    status: &impl serde::Serialize,
) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use kube::api::{Patch, PatchParams};
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"resourceVersion": resource_version},
        "status": status,
    });
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(crate::crd::MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    *resource_version = written.meta().resource_version.clone();
    Ok(())
}
