//! Objects the operator cannot read. One object that does not decode (a CRD from another version of the operator,
//! a schema looser than the types) must not stop the watch of every other object of its kind: the watch decodes
//! each object on its own (`DeserializeGuard`), passes on the ones it can read, and says about each one it cannot,
//! once per version, in a Warning event on the object and the log. Nothing is ever deployed for it: it never
//! reaches a reconcile.

use std::collections::HashMap;

use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;

/// The event's reason, for people and for tests.
pub const REASON: &str = "InvalidObject";

/// At most this many unreadable objects are remembered (to say it once per version); past it, the memory starts
/// over and each is said once more.
const REMEMBERED: usize = 10_000;

/// The event with only the objects that decode; each one that does not goes to `report`.
pub fn readable<K: kube::Resource>(
    event: watcher::Event<DeserializeGuard<K>>,
    report: &futures::channel::mpsc::UnboundedSender<InvalidObject>,
) -> Option<watcher::Event<K>> {
    let keep = |guard: DeserializeGuard<K>| match guard.0 {
        Ok(obj) => Some(obj),
        Err(invalid) => {
            let _ = report.unbounded_send(invalid);
            None
        }
    };
    match event {
        watcher::Event::Apply(g) => keep(g).map(watcher::Event::Apply),
        watcher::Event::InitApply(g) => keep(g).map(watcher::Event::InitApply),
        // Never cached, so there is nothing to forget.
        watcher::Event::Delete(g) => g.0.ok().map(watcher::Event::Delete),
        watcher::Event::Init => Some(watcher::Event::Init),
        watcher::Event::InitDone => Some(watcher::Event::InitDone),
    }
}

/// Say about each unreadable object, once per version, until `invalid` ends (the watch stopped).
pub async fn report<K>(
    client: kube::Client,
    reporter: kube::runtime::events::Reporter,
    mut invalid: futures::channel::mpsc::UnboundedReceiver<InvalidObject>,
) where
    K: kube::Resource<DynamicType = ()>,
{
    use futures::StreamExt as _;
    let kind = K::kind(&());
    let mut said: HashMap<String, String> = HashMap::new();
    while let Some(obj) = invalid.next().await {
        let uid = obj.metadata.uid.clone().unwrap_or_default();
        let version = obj.metadata.resource_version.clone().unwrap_or_default();
        if said.get(&uid) == Some(&version) {
            continue;
        }
        if said.len() >= REMEMBERED {
            said.clear();
        }
        said.insert(uid, version);
        let name = obj.metadata.name.clone().unwrap_or_default();
        let namespace = obj.metadata.namespace.clone().unwrap_or_default();
        tracing::warn!(kind = %kind, %name, %namespace, error = %obj.error, "cannot read this object; it is left alone until it is fixed");
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(kind.clone().into_owned()),
            name: obj.metadata.name.clone(),
            namespace: obj.metadata.namespace.clone(),
            uid: obj.metadata.uid.clone(),
            resource_version: obj.metadata.resource_version.clone(),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: REASON.into(),
            note: Some(super::truncate(
                format!(
                    "the operator cannot read this {kind}: {}. Nothing is done for it until it is fixed (a CRD \
                     from another version of the operator?); deleting it waits for its finalizer, which only a \
                     readable object can have removed by the operator",
                    obj.error
                ),
                1000,
            )),
            action: REASON.into(),
            secondary: None,
        };
        let recorder = kube::runtime::events::Recorder::new(client.clone(), reporter.clone());
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, %name, %namespace, "cannot publish event");
        }
    }
}
