//! Reconciling only while this replica leads: the controllers start when the Lease is won and stop when it is
//! lost, and in-flight reconciles get a bounded drain at shutdown.

use std::sync::Arc;
use std::time::Duration;

use super::controllers;
use super::lease::{self, Leadership};
use crate::controller::Context;

/// This replica's name in the Lease: the pod's name in a cluster, else host and process.
pub fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// Reconcile only while holding the Lease. Losing it stops the controllers; a reconcile still in flight may not
/// send a once-only mutation any more (the Gateway client asks `leadership` first), and status writes are
/// conditional, so a hand-over cannot deploy twice. They start again, from a fresh cache, if it is won back.
pub async fn run_as_leader(
    ctx: Arc<Context>,
    leadership: Arc<Leadership>,
    api: kube::Api<k8s_openapi::api::coordination::v1::Lease>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: Duration,
) {
    use futures::FutureExt as _;
    let shutdown = shutdown.shared();
    let mut leading = leadership.subscribe();
    // The keeper gives the Lease up only after the controllers stopped, so that no standby starts meanwhile.
    let (done, controllers_done) = tokio::sync::oneshot::channel::<()>();
    let keeper = tokio::spawn(lease::keep(leadership.clone(), api, async move {
        let _ = controllers_done.await;
    }));
    loop {
        tokio::select! {
            () = shutdown.clone() => break,
            changed = leading.wait_for(|l| *l) => if changed.is_err() { break },
        }
        tracing::info!("acquired leadership; reconciling");
        ctx.metrics.leader.set(1);
        let mut lost = leading.clone();
        let stop = shutdown.clone();
        let metrics = ctx.clone();
        run_with_deadline(
            ctx.clone(),
            async move {
                tokio::select! {
                    () = stop => {},
                    _ = lost.wait_for(|l| !*l) => {
                        // Said at once, not after the drain: another replica may lead already.
                        metrics.metrics.leader.set(0);
                        tracing::warn!("lost leadership; stopping the controllers");
                    }
                }
            },
            shutdown.clone(),
            drain,
        )
        .await;
        ctx.metrics.leader.set(0);
        // Another replica counts the objects now.
        ctx.metrics.clear_phases();
        if shutdown.clone().now_or_never().is_some() {
            break;
        }
    }
    let _ = done.send(());
    if let Err(e) = keeper.await {
        tracing::warn!(error = %e, "lease keeper task failed");
    }
}

/// Run the controllers until `stop`; once `shutdown` fired, in-flight reconciles get `drain` to finish and are
/// then abandoned (safe: every step is idempotent and recorded before its side effect).
pub async fn run_with_deadline(
    ctx: Arc<Context>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) {
    let run = controllers::run(ctx.clone(), stop);
    tokio::pin!(run);
    tokio::select! {
        () = &mut run => {}
        () = async { shutdown.await; tokio::time::sleep(drain).await } => {
            tracing::warn!(?drain, "shutdown: abandoning reconciles still in flight");
            // They may hold Direct Connect connections: close them (bounded; the Gateway idles them out anyway).
            let close = async {
                for conn in ctx.connections.all() {
                    conn.sessions.close_all(&conn.gateway).await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), close).await;
        }
    }
}
