//! `restart_apiserver`: a new kube-apiserver process on the same port and etcd; what was stored is still there and
//! the clients made before it work again.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use tanium_testenv::ControlPlane;

#[tokio::test]
async fn a_restarted_apiserver_serves_what_etcd_holds() {
    let Some(mut cp) = ControlPlane::start_or_skip().await else {
        return;
    };
    let client = cp.client();
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let map: ConfigMap = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "kept"}, "data": {"k": "v"}}),
    )
    .expect("a ConfigMap");
    maps.create(&PostParams::default(), &map)
        .await
        .expect("created");
    let [etcd, apiserver] = cp.pids();

    cp.restart_apiserver().await.expect("restarted");

    let [etcd_after, apiserver_after] = cp.pids();
    assert_eq!(etcd, etcd_after, "the same etcd");
    assert_ne!(apiserver, apiserver_after, "a new kube-apiserver process");
    assert!(cp.is_running());
    let kept = maps.get("kept").await.expect("read through the old client");
    assert_eq!(
        kept.data.and_then(|d| d.get("k").cloned()).as_deref(),
        Some("v")
    );
}
