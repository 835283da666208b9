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

use kube::Resource;

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
}
