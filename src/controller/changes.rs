//! What starts a reconcile from the watch: a change a person made (spec, annotations such as a preview approval,
//! deletion), not the operator's own status and finalizer writes. Unlike kube's `predicate_filter`, an object that
//! leaves the watch (deleted, or moved to another shard) is forgotten at once, so that one moved back with the
//! same generation is seen again; and the memory follows the watch's relists, so it never outgrows the objects.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

/// The fingerprints of what a person can change, per object in the watch.
pub struct Changes<K: kube::Resource<DynamicType = ()>> {
    seen: HashMap<ObjectRef<K>, u64>,
    /// Built during a relist and swapped in at its end: objects gone meanwhile are dropped with the old map.
    relisting: Option<HashMap<ObjectRef<K>, u64>>,
}

impl<K: kube::Resource<DynamicType = ()>> Default for Changes<K> {
    fn default() -> Self {
        Self {
            seen: HashMap::new(),
            relisting: None,
        }
    }
}

/// What the operator acts on when it changes.
fn fingerprint<K: kube::Resource>(obj: &K) -> u64 {
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.uid.hash(&mut h);
    meta.generation.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    h.finish()
}

/// What one watch event means for the reconciler.
#[derive(Debug)]
pub enum Seen<K> {
    /// A person changed it, or it is new to this watch: reconcile it.
    Changed(K),
    /// It left the watch (deleted, or no longer in this shard).
    Left(K),
    /// Nothing a reconcile needs to hear about.
    Nothing,
}

impl<K: kube::Resource<DynamicType = ()> + Clone> Changes<K> {
    pub fn see(&mut self, event: watcher::Event<K>) -> Seen<K> {
        match event {
            watcher::Event::Init => {
                self.relisting = Some(HashMap::new());
                Seen::Nothing
            }
            watcher::Event::InitDone => {
                if let Some(fresh) = self.relisting.take() {
                    self.seen = fresh;
                }
                Seen::Nothing
            }
            watcher::Event::InitApply(obj) => {
                let key = ObjectRef::from_obj(&obj);
                let print = fingerprint(&obj);
                let changed = self.seen.get(&key) != Some(&print);
                self.relisting
                    .get_or_insert_with(HashMap::new)
                    .insert(key, print);
                if changed {
                    Seen::Changed(obj)
                } else {
                    Seen::Nothing
                }
            }
            watcher::Event::Apply(obj) => {
                let print = fingerprint(&obj);
                match self.seen.insert(ObjectRef::from_obj(&obj), print) {
                    Some(before) if before == print => Seen::Nothing,
                    _ => Seen::Changed(obj),
                }
            }
            watcher::Event::Delete(obj) => {
                self.seen.remove(&ObjectRef::from_obj(&obj));
                Seen::Left(obj)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TaniumAction;

    fn action(generation: i64, approved: Option<&str>) -> TaniumAction {
        let mut obj: TaniumAction = serde_json::from_value(serde_json::json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u1", "generation": generation},
            "spec": {"package": {"name": "p"}, "targets": {"actionGroup": {"name": "All Computers"}}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        if let Some(digest) = approved {
            obj.metadata.annotations = Some([("approved".to_owned(), digest.to_owned())].into());
        }
        obj
    }

    fn changed(seen: Seen<TaniumAction>) -> bool {
        matches!(seen, Seen::Changed(_))
    }

    #[test]
    fn own_writes_are_quiet_a_person_s_changes_and_a_return_are_not() {
        let mut c = Changes::default();
        assert!(changed(c.see(watcher::Event::Apply(action(1, None)))));
        // A status write: same generation and annotations.
        assert!(!changed(c.see(watcher::Event::Apply(action(1, None)))));
        assert!(changed(c.see(watcher::Event::Apply(action(1, Some("d"))))));
        assert!(changed(c.see(watcher::Event::Apply(action(2, Some("d"))))));
        // Moved to another shard and back, unchanged: reconciled again.
        assert!(matches!(
            c.see(watcher::Event::Delete(action(2, Some("d")))),
            Seen::Left(_)
        ));
        assert!(changed(c.see(watcher::Event::Apply(action(2, Some("d"))))));
    }

    #[test]
    fn a_relist_reports_only_what_changed_and_forgets_what_is_gone() {
        let mut c = Changes::default();
        c.see(watcher::Event::Apply(action(1, None)));
        c.see(watcher::Event::Init);
        assert!(!changed(c.see(watcher::Event::InitApply(action(1, None)))));
        c.see(watcher::Event::InitDone);
        assert_eq!(c.seen.len(), 1);
        // Gone during a gap in the watch: not in the relist, so forgotten; back later, it is new again.
        c.see(watcher::Event::Init);
        c.see(watcher::Event::InitDone);
        assert!(c.seen.is_empty());
        assert!(changed(c.see(watcher::Event::Apply(action(1, None)))));
    }
}
