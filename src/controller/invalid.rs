//! Objects the operator cannot read. One object that does not decode (a CRD from another version of the operator,
//! a schema looser than the types) must not stop the watch of every other object of its kind: the watch decodes
//! each object on its own ([`Guarded`]), passes on the ones it can read, and says about each one it cannot, once
//! per version, in a Warning event on the object and the log. Nothing is ever deployed for it: it never reaches a
//! reconcile.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use serde::Deserialize;

/// An object as the watch brought it: readable, or not (with the metadata that could be read).
///
/// kube's `DeserializeGuard` does the same through a `serde_value` tree and a clone of every object, which cost a
/// third more CPU in the benchmark (docs/performance.md); this keeps the object's JSON text and parses it once.
#[derive(Debug, Clone)]
pub struct Guarded<K>(pub Result<K, InvalidObject>);

/// An object that could not be read, and why.
#[derive(Debug, Clone)]
pub struct InvalidObject {
    pub error: String,
    pub metadata: ObjectMeta,
}

impl<'de, K: serde::de::DeserializeOwned> Deserialize<'de> for Guarded<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct MetadataOnly {
            #[serde(default)]
            metadata: ObjectMeta,
        }
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        match serde_json::from_str::<K>(raw.get()) {
            Ok(obj) => Ok(Self(Ok(obj))),
            Err(e) => {
                let MetadataOnly { metadata } =
                    serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
                Ok(Self(Err(InvalidObject {
                    error: e.to_string(),
                    metadata,
                })))
            }
        }
    }
}

impl<K: kube::Resource> kube::Resource for Guarded<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        self.0.as_ref().map_or_else(|e| &e.metadata, K::meta)
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0
            .as_mut()
            .map_or_else(|e| &mut e.metadata, K::meta_mut)
    }
}

/// The event's reason, for people and for tests.
pub const REASON: &str = crate::crd::Reason::InvalidObject.as_str();

/// At most this many unreadable objects are remembered (to say it once per version); past it, the memory starts
/// over and each is said once more.
const REMEMBERED: usize = 10_000;

/// The event with only the objects that decode; each one that does not goes to `report`.
pub fn readable<K: kube::Resource>(
    event: watcher::Event<Guarded<K>>,
    report: &futures::channel::mpsc::UnboundedSender<InvalidObject>,
) -> Option<watcher::Event<K>> {
    let keep = |guard: Guarded<K>| match guard.0 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TaniumAction;

    #[test]
    fn a_list_with_one_unreadable_object_keeps_the_others() {
        let list = r#"[
            {"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
             "metadata": {"name": "good", "namespace": "ns"},
             "spec": {"package": {"name": "p"}, "targets": {"actionGroup": {"name": "All Computers"}}}},
            {"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
             "metadata": {"name": "garbled", "namespace": "ns", "resourceVersion": "7"},
             "spec": {"package": 7}}
        ]"#;
        let read: Vec<Guarded<TaniumAction>> =
            serde_json::from_str(list).unwrap_or_else(|e| panic!("{e}"));
        assert!(read[0].0.is_ok());
        let garbled = read[1]
            .0
            .as_ref()
            .err()
            .map(|e| (e.metadata.name.clone(), e.error.clone()));
        let (name, error) = garbled.unwrap_or_default();
        assert_eq!(name.as_deref(), Some("garbled"));
        assert!(error.contains("invalid type"), "{error}");
        assert_eq!(
            kube::Resource::meta(&read[1]).resource_version.as_deref(),
            Some("7")
        );
    }
}
