//! `/readyz`: the Kubernetes API answers, and, while this replica leads, every kind's cache has synced and the
//! Gateway has answered.

use std::sync::Arc;
use std::time::Duration;

use super::controllers;
use crate::controller::Context;
use crate::gateway::GatewayClient;
use crate::telemetry::Readiness;

/// Readiness, re-evaluated every few seconds: the Kubernetes API answers, and, while this replica leads, every
/// kind's cache has synced and the Gateway has answered (a standby is ready to take over when the API answers).
pub async fn track_readiness(
    ctx: Arc<Context>,
    client: kube::Client,
    gateway: GatewayClient,
    ready: Arc<Readiness>,
) {
    use std::sync::atomic::Ordering;
    let mut gateway_answered = false;
    loop {
        let kube_ok = client.apiserver_version().await.is_ok();
        let leading = ctx.metrics.leader.get() == 1;
        if leading && !gateway_answered {
            gateway_answered = gateway.now().await.is_ok();
        }
        let synced = ctx.caches_synced.load(Ordering::SeqCst) >= controllers::KINDS;
        let now_ready = kube_ok && (!leading || (synced && gateway_answered));
        tracing::debug!(
            ready = now_ready,
            kubernetes = kube_ok,
            leading,
            synced,
            gateway = gateway_answered,
            "readiness check"
        );
        if now_ready != ready.get() {
            tracing::info!(
                ready = now_ready,
                kubernetes = kube_ok,
                leading,
                synced,
                gateway = gateway_answered,
                "readiness changed"
            );
        }
        ready.set(now_ready);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
