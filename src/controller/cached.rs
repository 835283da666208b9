//! What the watch caches keep of an object: what a reconcile reads, nothing more. A cache holds every object of its
//! kind for the life of the process (100,000 finished TaniumActions are 100,000 cached objects), so what no
//! reconcile reads is dropped as each object arrives: managedFields (often most of a stored object) and
//! `kubectl.kubernetes.io/last-applied-configuration`, which `kubectl apply` and Argo CD's client-side apply leave
//! on every object: a second copy of its spec. Other annotations stay: a change to any of them wakes a reconcile
//! (`changes`), which is how a person, or `flux reconcile` with its `reconcile.fluxcd.io/requestedAt`, asks the
//! operator to look again now.
//!
//! Nothing is lost: every write the operator makes is a patch of its own fields (finalizer, status), never the
//! cached object written back.
//!
//! And an object with nothing left to do ([`object::settled`]: a finished TaniumAction, its generation observed)
//! leaves the cache altogether (`settle`): most objects of a long-lived install are finished ones, and none of them
//! needs a reconcile until it changes, which brings the whole object back. Only its phase is kept, in the
//! `tanium_operator_objects` gauge.

use kube::Resource;
use kube::runtime::watcher::Event;

use super::Context;
use super::object::{self, Kind};

/// Left by client-side `kubectl apply`: the whole manifest again, which no reconcile reads.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drop from `obj` what no reconcile reads.
pub fn trim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A watch event as the cache and the controller should see it: a [`object::settled`] object is counted and leaves
/// (its update becomes a deletion from the cache, and in a relist it is left out), so that no reconcile starts
/// for it and the cache does not hold it. Its next change (a new generation, deletion) is not settled and comes in
/// whole.
pub fn settle<K: Kind>(event: Event<K>, ctx: &Context) -> Option<Event<K>> {
    match event {
        Event::Apply(obj) if object::settled(&obj) => {
            object::count(&obj, ctx);
            Some(Event::Delete(obj))
        }
        Event::InitApply(obj) if object::settled(&obj) => {
            object::count(&obj, ctx);
            None
        }
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{APPROVED_PREVIEW_ANNOTATION, ARGOCD_TRACKING_ANNOTATION, TaniumAction};

    #[test]
    fn the_cache_drops_what_no_reconcile_reads() {
        let mut obj: TaniumAction = serde_json::from_value(serde_json::json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
            "metadata": {
                "name": "a", "namespace": "ns", "labels": {"tanium-operator.dev/shard": "s1"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {"package": {"name": "p"}, "targets": {"actionGroup": {"name": "All Computers"}}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        obj.metadata.annotations = Some(
            [
                (APPROVED_PREVIEW_ANNOTATION, "sha256:1"),
                (
                    ARGOCD_TRACKING_ANNOTATION,
                    "app:tanium-operator.dev/TaniumAction:ns/a",
                ),
                ("reconcile.fluxcd.io/requestedAt", "2026-12-03T23:00:00Z"),
                (LAST_APPLIED, "{\"spec\": \"…\"}"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        );
        trim(&mut obj);
        let annotations = obj.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                ARGOCD_TRACKING_ANNOTATION,
                "reconcile.fluxcd.io/requestedAt",
                APPROVED_PREVIEW_ANNOTATION
            ]
        );
        assert_eq!(obj.metadata.managed_fields, None);
        assert!(
            obj.metadata.labels.is_some(),
            "labels stay: shards are chosen by them"
        );
        assert_eq!(
            crate::crd::gitops_manager(&obj.metadata).map(|m| &m[..7]),
            Some("Argo CD")
        );

        // Only the last-applied copy: no empty map kept.
        obj.metadata.annotations = Some([(LAST_APPLIED.to_owned(), "{}".to_owned())].into());
        trim(&mut obj);
        assert_eq!(obj.metadata.annotations, None);
    }

    fn finished(edit: impl FnOnce(&mut serde_json::Value)) -> TaniumAction {
        let mut v = serde_json::json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u1", "generation": 1,
                         "finalizers": [crate::controller::action::FINALIZER]},
            "spec": {"package": {"name": "p"}, "targets": {"endpoints": ["1"]}},
            "status": {"observedGeneration": 1, "phase": "Completed", "conditions": [
                {"type": "Ready", "status": "True", "reason": "Completed", "message": "done",
                 "lastTransitionTime": "2026-12-04T00:00:00Z", "observedGeneration": 1},
                {"type": "Completed", "status": "True", "reason": "Completed", "message": "done",
                 "lastTransitionTime": "2026-12-04T00:00:00Z", "observedGeneration": 1}
            ]}
        });
        edit(&mut v);
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_an_object_with_nothing_left_to_do_leaves_the_cache() {
        use crate::controller::object::settled;
        assert!(
            settled(&finished(|_| {})),
            "as the operator leaves a finished action"
        );
        type Edit = fn(&mut serde_json::Value);
        let kept: [(&str, Edit); 7] = [
            ("still running", |v| v["status"]["phase"] = "Running".into()),
            ("a generation not yet observed", |v| {
                v["metadata"]["generation"] = 2.into()
            }),
            ("being deleted", |v| {
                v["metadata"]["deletionTimestamp"] = "2026-12-04T00:00:00Z".into();
            }),
            ("without our finalizer (its reconcile adds it)", |v| {
                v["metadata"]["finalizers"] = serde_json::json!([]);
            }),
            ("ttlSecondsAfterFinished: deleted at a time", |v| {
                v["spec"]["ttlSecondsAfterFinished"] = 60.into();
            }),
            (
                "a status a write would change (the operator's own conditions go at rest)",
                |v| {
                    v["status"]["conditions"][1] = serde_json::json!({
                        "type": "GatewayTLSVerified", "status": "False", "reason": "VerificationDisabled",
                        "message": "m", "lastTransitionTime": "2026-12-04T00:00:00Z"});
                },
            ),
            ("no status at all", |v| {
                v["status"] = serde_json::Value::Null
            }),
        ];
        for (what, edit) in kept {
            assert!(!settled(&finished(edit)), "{what}");
        }
    }
}
