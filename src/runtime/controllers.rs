//! The controllers as a process runs them: one kube-runtime controller per kind on a filtered watch, the shared
//! poller, token rotation and the Gateway's feature detection, until told to stop; and the backoff after a failed
//! reconcile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::runtime::controller::Action;

use crate::controller::{
    Context, Error, action, cached, changes, inspection, invalid, rotation, tag,
};
use crate::gateway::GatewayError;

/// Requeue after a failed reconcile: per-object capped exponential backoff, never a hot loop.
pub fn error_policy<K: kube::Resource>(
    obj: std::sync::Arc<K>,
    error: &Error,
    ctx: std::sync::Arc<Context>,
) -> Action {
    if let Error::Requeue(after) = error {
        return Action::requeue(*after);
    }
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let delay = ctx.backoff(&uid);
    tracing::warn!(
        name = obj.meta().name.as_deref().unwrap_or(""),
        namespace = obj.meta().namespace.as_deref().unwrap_or(""),
        reason = error.reason(),
        error = %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// How many kinds [`run`] serves (each must have synced its cache before the replica is ready).
pub const KINDS: usize = 3;

/// Run every controller until `shutdown` resolves.
pub async fn run(
    ctx: std::sync::Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    use futures::FutureExt as _;
    let shutdown = shutdown.shared();
    let (wake_actions, actions_woken) = futures::channel::mpsc::unbounded();
    let (wake_tags, tags_woken) = futures::channel::mpsc::unbounded();
    let wakers = crate::controller::connections::Wakers {
        actions: wake_actions,
        tags: wake_tags,
    };
    let own = ctx.connections.own().clone();
    tokio::join!(
        run_kind(
            ctx.clone(),
            shutdown.clone(),
            action::reconcile,
            Some(actions_woken)
        ),
        run_kind(
            ctx.clone(),
            shutdown.clone(),
            tag::reconcile,
            Some(tags_woken)
        ),
        run_kind(ctx.clone(), shutdown.clone(), inspection::reconcile, None),
        run_connections(ctx.clone(), wakers, shutdown.clone()),
        watch_tag_claimants(&ctx, shutdown.clone()),
        rotation::run(ctx.clone(), shutdown.clone()),
        detect_gateway_features(&ctx, shutdown.clone()),
        own.poller
            .run(&own.gateway, &ctx.config.timing, shutdown.clone()),
    );
    // No Direct Connect connection outlives the controllers (shutdown, or leadership lost), and no connection
    // built from an object: the next term builds them again.
    let built = ctx.connections.stopped();
    for conn in std::iter::once(own).chain(built) {
        conn.sessions.close_all(&conn.gateway).await;
    }
    // A new token only a connection's rotation holds is written to its Secret before the process may end.
    ctx.connections
        .rotations_finished(Duration::from_secs(20))
        .await;
}

/// The connection objects' controllers: each TaniumConnection and ClusterTaniumConnection built into a connection
/// and its status written (`controller::connections`). Their caches are what objects choose their connection from.
async fn run_connections(
    ctx: Arc<Context>,
    wakers: crate::controller::connections::Wakers,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    use futures::StreamExt as _;
    use kube::runtime::{Controller, watcher};

    use crate::controller::connections::{reconcile_cluster, reconcile_namespaced};
    use crate::crd::{ClusterTaniumConnection, TaniumConnection};

    fn said<T, E: std::fmt::Display>(result: Result<T, E>) -> std::future::Ready<()> {
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection reconcile did not complete");
        }
        std::future::ready(())
    }
    let only = ctx.config.shard.only_namespace();
    let namespaced: kube::Api<TaniumConnection> = match only {
        Some(ns) => kube::Api::namespaced(ctx.client.clone(), ns),
        None => kube::Api::all(ctx.client.clone()),
    };
    let namespaced = Controller::new(namespaced, watcher::Config::default());
    // Watching one namespace, the operator may read nothing cluster-wide (the chart grants it nothing there): no
    // ClusterTaniumConnection is known, and an object naming one is held as naming one that does not exist.
    let cluster = only.is_none().then(|| {
        Controller::new(
            kube::Api::<ClusterTaniumConnection>::all(ctx.client.clone()),
            watcher::Config::default(),
        )
    });
    let cluster_store = match &cluster {
        Some(c) => c.store(),
        None => kube::runtime::reflector::store::<ClusterTaniumConnection>().0,
    };
    ctx.connections
        .started(namespaced.store(), cluster_store, wakers);
    let cluster = async {
        if let Some(cluster) = cluster {
            cluster
                .graceful_shutdown_on(shutdown.clone())
                .run(reconcile_cluster, error_policy, ctx.clone())
                .for_each(said)
                .await;
        }
    };
    // A deleted connection object is reconciled no more: what was built from it goes at the next sweep.
    let sweeps = async {
        loop {
            tokio::time::sleep(ctx.config.timing.connection_recheck).await;
            ctx.connections.sweep();
        }
    };
    let sweeps = async {
        tokio::select! {
            () = sweeps => {}
            () = shutdown.clone() => {}
        }
    };
    tokio::join!(
        namespaced
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_namespaced, error_policy, ctx.clone())
            .for_each(said),
        cluster,
        sweeps,
    );
}

/// Every TaniumTag in the operator's namespace scope, for deciding who owns a tag (`controller::tag::Claimants`):
/// its own watch, narrowed by no shard label (one a namespace user sets must not hide an owner) and read leniently.
async fn watch_tag_claimants(ctx: &Context, shutdown: impl std::future::Future<Output = ()>) {
    use futures::StreamExt as _;
    use kube::Resource as _;
    use kube::api::{ApiResource, DynamicObject};
    use kube::runtime::{WatchStreamExt as _, reflector, watcher};

    let resource = ApiResource::erase::<crate::crd::TaniumTag>(&());
    let api: kube::Api<DynamicObject> = match ctx.config.shard.only_namespace() {
        Some(ns) => kube::Api::namespaced_with(ctx.client.clone(), ns, &resource),
        None => kube::Api::all_with(ctx.client.clone(), &resource),
    };
    let writer = reflector::store::Writer::<DynamicObject>::new(resource);
    ctx.tag_claimants.watch(writer.as_reader(), api.clone());
    let watch = watcher(api, watcher::Config::default())
        .default_backoff()
        // Not even the annotations a reconcile reads: a claim is made of spec and status.
        .modify(|o| {
            cached::trim(o);
            o.meta_mut().annotations = None;
        })
        .reflect(writer)
        .for_each(|event| {
            if let Err(e) = event {
                tracing::debug!(error = %e, kind = %crate::crd::TaniumTag::kind(&()), "the tag claimants' watch will retry");
            }
            std::future::ready(())
        });
    tokio::select! {
        () = watch => {}
        () = shutdown => {}
    }
}

/// Ask the Gateway once what it offers (see `gateway::introspect`), until it answers; say what was found.
async fn detect_gateway_features(ctx: &Context, shutdown: impl std::future::Future<Output = ()>) {
    let gateway = &ctx.connections.own().gateway;
    if gateway.features().is_some() {
        return;
    }
    tokio::pin!(shutdown);
    let mut pause = Duration::from_secs(1);
    loop {
        match gateway.detect_features().await {
            Ok(features) => {
                tracing::info!(%features, "Gateway features detected");
                ctx.metrics
                    .gateway_features(&ctx.connections.own().name, &features.named());
                return;
            }
            // Introspection refused or partial: the Gateway will not say; the current-then-older fallback stays.
            Err(e @ (GatewayError::GraphQl { .. } | GatewayError::Decode { .. })) => {
                tracing::info!(error = %e, "cannot detect the Gateway's features by introspection; trying the current Direct Connect family first, then the older");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot detect the Gateway's features yet; trying again")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = &mut shutdown => return,
        }
        pause = (pause * 2).min(Duration::from_secs(60));
    }
}

/// Run one kind's controller until `shutdown`. It wakes on what a person changes (spec, annotations such as the
/// preview approval, deletion), not on the operator's own writes, and on the shared poller's news about an object's
/// actions (`woken`); otherwise it is paced by the reconcilers' requeue intervals.
async fn run_kind<K, R, Fut>(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    reconcile: R,
    woken: Option<
        futures::channel::mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<K>>,
    >,
) where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + crate::crd::Conditions
        + crate::controller::Kind
        + Send
        + Sync
        + 'static,
    R: FnMut(Arc<K>, Arc<Context>) -> Fut,
    Fut: futures::TryFuture<Ok = Action, Error = Error> + Send + 'static,
{
    use futures::{StreamExt as _, TryStreamExt as _};
    use kube::runtime::{Controller, WatchStreamExt as _, reflector, watcher};

    let shard = ctx.config.shard.clone();
    // Each object decoded on its own: one that cannot be read is reported, the others go on (`invalid`).
    let api: kube::Api<invalid::Guarded<K>> = shard.api(&ctx.client);
    let (unreadable, reported) = futures::channel::mpsc::unbounded();
    tokio::spawn(invalid::report::<K>(
        ctx.client.clone(),
        ctx.reporter.clone(),
        reported,
    ));
    let config = kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency);
    let (reader, writer) = reflector::store();
    // Readiness: this kind's watch has delivered its first complete list (undone when the controllers stop).
    let synced = Arc::new(AtomicBool::new(false));
    let mark = {
        let synced = synced.clone();
        let ctx = ctx.clone();
        move |event: &Result<watcher::Event<K>, watcher::Error>| {
            if matches!(event, Ok(watcher::Event::InitDone)) && !synced.swap(true, Ordering::SeqCst)
            {
                ctx.caches_synced.fetch_add(1, Ordering::SeqCst);
                tracing::debug!(kind = K::kind(&()).as_ref(), "watch cache synced");
            }
        }
    };
    let sync_ctx = ctx.clone();
    let mut changes = changes::Changes::<K>::default();
    let left_ctx = ctx.clone();
    let settle_ctx = ctx.clone();
    let changes = watcher(api, shard.watcher_config())
        .default_backoff()
        .try_filter(move |event| std::future::ready(shard.filter(event)))
        .try_filter_map(move |event| std::future::ready(Ok(invalid::readable(event, &unreadable))))
        .inspect(mark)
        .modify(cached::trim)
        .try_filter_map(move |event| std::future::ready(Ok(cached::settle(event, &settle_ctx))))
        .reflect(writer)
        // Not finalizers: the reconcile that adds ours goes on at once (see `with_our_finalizer`).
        .try_filter_map(move |event| {
            let changed = match changes.see(event) {
                changes::Seen::Changed(obj) => Some(obj),
                changes::Seen::Left(obj) => {
                    // Its actions are not this replica's to read any more (deleted, or in another shard now).
                    for conn in left_ctx.connections.all() {
                        conn.poller.forget_owner(&obj);
                    }
                    None
                }
                changes::Seen::Nothing => None,
            };
            std::future::ready(Ok(changed))
        });
    let mut controller = Controller::for_stream(changes, reader).with_config(config);
    if let Some(woken) = woken {
        // The shared poller's news about an object's actions.
        controller = controller.reconcile_on(woken);
    }
    // A connection that may have become usable (a new token: the Secret's file re-read, a rotation, also one made by
    // another shard; a connection object turned Ready or changed): the objects it holds go again now, not after the
    // slow requeue of a person's problem. The others are left alone. Looked for again a little later too: a
    // reconcile refused just before the change may not have written so yet, nor its cache seen the connection Ready.
    let store = controller.store();
    let held_by_connection = ctx
        .connections
        .changes()
        .flat_map(|()| {
            futures::stream::iter([Duration::ZERO, Duration::from_secs(5)]).then(tokio::time::sleep)
        })
        .flat_map(move |()| {
            let held: Vec<reflector::ObjectRef<K>> = store
                .state()
                .iter()
                .filter(|o| crate::controller::connections::held_by_connection(o.conditions()))
                .map(|o| reflector::ObjectRef::from_obj(o.as_ref()))
                .collect();
            futures::stream::iter(held)
        });
    controller = controller.reconcile_on(held_by_connection);
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(kind = K::kind(&()).as_ref(), error = %e, "reconcile did not complete");
            }
        })
        .await;
    if synced.load(Ordering::SeqCst) {
        sync_ctx.caches_synced.fetch_sub(1, Ordering::SeqCst);
    }
}
