//! Who owns a tag. Tanium tags are global: a round that adds or removes one acts on every endpoint that matches,
//! whoever else wants the tag there. So each tag has one owner among the TaniumTags that claim it (name it in
//! their spec, have applied it, or have a round for it in flight), in any namespace, and only the owner adds or
//! removes it; the others are held (`TagOwnedElsewhere`, naming the owner) and let go of any record of it.
//!
//! The owner is the claimant that has already acted on the tag (applied it, or sent a round for it), the oldest
//! of those; when none has, the oldest claimant (creationTimestamp, then uid, so every replica agrees). Acting
//! first wins over age so that an old object edited to name a tag another already keeps cannot take it over (and
//! then strip it by being deleted). Owners are chosen among the TaniumTags this replica watches: shards that
//! split TaniumTags between them need disjoint tag prefixes (`Policy::tag_bindings`) to keep tags apart.

use std::sync::{Arc, RwLock};

use kube::ResourceExt as _;
use kube::runtime::reflector::Store;

use crate::crd::TaniumTag;

/// The TaniumTags this replica watches, as its tag controller's cache holds them (set each time the controllers
/// start).
#[derive(Default)]
pub struct Claimants(RwLock<Option<Store<TaniumTag>>>);

impl Claimants {
    pub fn watch(&self, store: Store<TaniumTag>) {
        if let Ok(mut s) = self.0.write() {
            *s = Some(store);
        }
    }

    /// Every TaniumTag in the cache; `None` before the tag controller started.
    pub fn all(&self) -> Option<Vec<Arc<TaniumTag>>> {
        self.0.read().ok()?.as_ref().map(Store::state)
    }
}

/// The TaniumTag that owns a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    /// It is being deleted: it keeps the tag until its removal is done.
    pub deleting: bool,
    /// It has applied the tag, or has a round for it in flight.
    pub acted: bool,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaniumTag {}/{}", self.namespace, self.name)?;
        match (self.acted, self.deleting) {
            (_, true) => f.write_str(" (being deleted; it removes the tag first)"),
            (true, false) => f.write_str(" (it applied the tag first)"),
            (false, false) => f.write_str(" (it claimed the tag first)"),
        }
    }
}

/// Tags `obj` has acted on: applied, or in its round in flight.
fn acted_on(obj: &TaniumTag) -> impl Iterator<Item = &String> {
    obj.status.iter().flat_map(|s| {
        s.applied_tags
            .iter()
            .chain(s.round.iter().flat_map(|r| r.tags.iter()))
    })
}

fn claims(obj: &TaniumTag, tag: &str) -> bool {
    obj.spec.tags.iter().chain(acted_on(obj)).any(|t| t == tag)
}

/// Lower is the stronger claim: acted first, then older, then the smaller uid.
fn rank<'a>(obj: &'a TaniumTag, tag: &str) -> (bool, jiff::Timestamp, &'a str) {
    (
        !acted_on(obj).any(|t| t == tag),
        obj.metadata
            .creation_timestamp
            .as_ref()
            .map_or(jiff::Timestamp::MAX, |t| t.0),
        obj.metadata.uid.as_deref().unwrap_or_default(),
    )
}

/// The tags `me` claims that another of `all` owns, each with its owner, in `me`'s order (spec first).
pub fn owned_elsewhere(me: &TaniumTag, all: &[Arc<TaniumTag>]) -> Vec<(String, Owner)> {
    let mine: Vec<&String> = {
        let mut seen: Vec<&String> = Vec::new();
        for t in me.spec.tags.iter().chain(acted_on(me)) {
            if !seen.contains(&t) {
                seen.push(t);
            }
        }
        seen
    };
    let me_uid = me.metadata.uid.as_deref();
    mine.into_iter()
        .filter_map(|tag| {
            let owner = all
                .iter()
                .map(Arc::as_ref)
                .filter(|o| o.metadata.uid.as_deref() != me_uid && claims(o, tag))
                .min_by(|a, b| rank(a, tag).cmp(&rank(b, tag)))?;
            (rank(owner, tag) < rank(me, tag)).then(|| {
                (
                    tag.clone(),
                    Owner {
                        namespace: owner.namespace().unwrap_or_default(),
                        name: owner.name_any(),
                        deleting: owner.metadata.deletion_timestamp.is_some(),
                        acted: !rank(owner, tag).0,
                    },
                )
            })
        })
        .collect()
}

/// What a held object's Ready says.
pub fn message(elsewhere: &[(String, Owner)]) -> String {
    let each: Vec<String> = elsewhere
        .iter()
        .map(|(tag, owner)| format!("tag {tag:?} is owned by {owner}"))
        .collect();
    format!(
        "{}; Tanium tags are global, so this object neither adds nor removes a tag another TaniumTag owns (rename \
         the tag, or delete that object)",
        each.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::tag::{RoundKind, TagRound, TaniumTagStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn tag(ns: &str, name: &str, created: i64, tags: &[&str], applied: &[&str]) -> Arc<TaniumTag> {
        let mut obj: TaniumTag = serde_json::from_value(serde_json::json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumTag",
            "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}")},
            "spec": {"tags": tags, "targets": {"filter": {"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Linux"}}},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        obj.metadata.creation_timestamp = Some(Time(
            jiff::Timestamp::from_second(created).unwrap_or_else(|e| panic!("{e}")),
        ));
        obj.status = Some(TaniumTagStatus {
            applied_tags: applied.iter().map(|t| t.to_string()).collect(),
            ..TaniumTagStatus::default()
        });
        Arc::new(obj)
    }

    fn owners(me: &Arc<TaniumTag>, all: &[Arc<TaniumTag>]) -> Vec<(String, String)> {
        owned_elsewhere(me, all)
            .into_iter()
            .map(|(t, o)| (t, format!("{}/{}", o.namespace, o.name)))
            .collect()
    }

    #[test]
    fn the_first_claimant_owns_and_the_others_are_held() {
        let a = tag("team-a", "web", 100, &["pci"], &[]);
        let b = tag("team-b", "web", 200, &["pci", "free"], &[]);
        let all = [a.clone(), b.clone()];
        assert!(owners(&a, &all).is_empty());
        assert_eq!(
            owners(&b, &all),
            [("pci".to_string(), "team-a/web".to_string())]
        );
        // Same creation second: the uid decides, the same way on every replica.
        let c = tag("team-c", "web", 100, &["pci"], &[]);
        let all = [a.clone(), c.clone()];
        assert!(owners(&a, &all).is_empty());
        assert_eq!(owners(&c, &all).len(), 1);
    }

    #[test]
    fn having_acted_beats_age_so_an_old_object_cannot_take_a_tag_over() {
        // team-b's object is older, and was edited to name the tag team-a's object already applied.
        let a = tag("team-a", "web", 200, &["pci"], &["pci"]);
        let b = tag("team-b", "old", 100, &["pci"], &[]);
        let all = [a.clone(), b.clone()];
        assert!(owners(&a, &all).is_empty());
        assert_eq!(
            owners(&b, &all),
            [("pci".to_string(), "team-a/web".to_string())]
        );
        // A round in flight is acting too.
        let mut c = (*tag("team-c", "c", 300, &["pci"], &[])).clone();
        if let Some(s) = c.status.as_mut() {
            s.round = Some(TagRound {
                number: 1,
                kind: RoundKind::Add,
                tags: vec!["pci".into()],
                targeted: 1,
                deployment: Default::default(),
                results: None,
                finished_at: None,
            });
        }
        let c = Arc::new(c);
        let all = [b.clone(), c.clone()];
        assert!(owners(&c, &all).is_empty());
        assert_eq!(owners(&b, &all).len(), 1);
        // Both acted (a race between two replicas' caches): the older keeps it.
        let d = tag("team-d", "d", 50, &["pci"], &["pci"]);
        assert_eq!(owners(&a, &[a.clone(), d.clone()]).len(), 1);
        assert!(owners(&d, &[a.clone(), d.clone()]).is_empty());
    }

    #[test]
    fn a_tag_dropped_from_the_spec_is_owned_until_it_is_removed() {
        let a = tag("team-a", "web", 100, &["other"], &["pci"]);
        let b = tag("team-b", "web", 50, &["pci"], &[]);
        let all = [a.clone(), b.clone()];
        assert_eq!(
            owners(&b, &all),
            [("pci".to_string(), "team-a/web".to_string())]
        );
        assert!(owners(&a, &all).is_empty());
    }

    #[test]
    fn the_message_names_each_owner() {
        let a = tag("team-a", "web", 100, &["pci"], &["pci"]);
        let b = tag("team-b", "web", 200, &["pci"], &[]);
        let m = message(&owned_elsewhere(&b, &[a, b.clone()]));
        assert!(
            m.contains("tag \"pci\" is owned by TaniumTag team-a/web (it applied the tag first)"),
            "{m}"
        );
    }
}
