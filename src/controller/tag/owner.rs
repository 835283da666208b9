//! Who owns a tag. Tanium tags are global: a round that adds or removes one acts on every endpoint that matches,
//! whoever else wants the tag there. So each tag has one owner among the TaniumTags that claim it (name it in
//! their spec, have applied it, or have a round for it in flight), in any namespace, and only the owner adds or
//! removes it; the others are held (`TagOwnedElsewhere`, naming the owner) and let go of any record of it.
//!
//! The owner is the claimant that has already acted on the tag (applied it, or sent a round for it), the oldest
//! of those; when none has, the oldest claimant (creationTimestamp, then uid, so every replica agrees). Acting
//! first wins over age so that an old object edited to name a tag another already keeps cannot take it over (and
//! then strip it by being deleted). Owners are chosen among every TaniumTag in the operator's namespace scope, from
//! a watch of their own that no shard label narrows ([`Claimants`]); a claim the admin policy refuses (a namespace not
//! allowed, a prefix bound elsewhere) counts only once it has acted.

use std::sync::RwLock;
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ObjectMeta;
use kube::runtime::reflector::Store;
use serde_json::Value;

use crate::controller::Policy;
use crate::crd::TaniumTag;

/// What deciding ownership needs of one TaniumTag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub created: jiff::Timestamp,
    pub deleting: bool,
    /// `spec.tags`.
    pub wants: Vec<String>,
    /// Tags it has acted on: `status.appliedTags` and the tags of its round in flight.
    pub acted: Vec<String>,
}

impl Claimant {
    pub fn of(obj: &TaniumTag) -> Self {
        let acted = obj
            .status
            .iter()
            .flat_map(|s| {
                s.applied_tags
                    .iter()
                    .chain(s.round.iter().flat_map(|r| r.tags.iter()))
            })
            .cloned()
            .collect();
        Self::from_parts(&obj.metadata, obj.spec.tags.clone(), acted)
    }

    fn from_parts(meta: &ObjectMeta, wants: Vec<String>, acted: Vec<String>) -> Self {
        Self {
            uid: meta.uid.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            created: meta
                .creation_timestamp
                .as_ref()
                .map_or(jiff::Timestamp::MAX, |t| t.0),
            deleting: meta.deletion_timestamp.is_some(),
            wants,
            acted,
        }
    }

    /// Read leniently from the object's JSON: an object the controller cannot decode (and so never reconciles) may
    /// still hold a tag on endpoints, and still claims it.
    fn of_json(obj: &DynamicObject) -> Self {
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let status = obj.data.get("status");
        let mut acted = strings(status.and_then(|s| s.get("appliedTags")));
        acted.extend(strings(
            status
                .and_then(|s| s.get("round"))
                .and_then(|r| r.get("tags")),
        ));
        Self::from_parts(
            &obj.metadata,
            strings(obj.data.get("spec").and_then(|s| s.get("tags"))),
            acted,
        )
    }

    fn acted_on(&self, tag: &str) -> bool {
        self.acted.iter().any(|t| t == tag)
    }

    /// Claims `tag`: it has acted on it, or names it and the admin policy lets it (an object the policy holds never
    /// acts, so its wish alone must not keep the tag from the namespaces it is bound to).
    fn claims(&self, tag: &str, policy: &Policy) -> bool {
        self.acted_on(tag)
            || (self.wants.iter().any(|t| t == tag)
                && policy.refuses_namespace(&self.namespace).is_none()
                && policy
                    .refuses_tags(&self.namespace, std::slice::from_ref(&tag.to_owned()))
                    .is_none())
    }

    /// Lower is the stronger claim: acted, then older, then the smaller uid.
    fn rank(&self, tag: &str) -> (bool, jiff::Timestamp, &str) {
        (!self.acted_on(tag), self.created, &self.uid)
    }
}

/// Every TaniumTag in the operator's scope, from a watch of its own: not narrowed by a shard's label selector (a
/// label a namespace user sets must not hide an owner) nor by what the controller can decode.
#[derive(Default)]
pub struct Claimants(RwLock<Option<(Store<DynamicObject>, Api<DynamicObject>)>>);

impl Claimants {
    /// The watch's cache, and where to list afresh (set each time the controllers start).
    pub fn watch(&self, store: Store<DynamicObject>, api: Api<DynamicObject>) {
        if let Ok(mut s) = self.0.write() {
            *s = Some((store, api));
        }
    }

    fn parts(&self) -> Option<(Store<DynamicObject>, Api<DynamicObject>)> {
        self.0.read().ok()?.clone()
    }

    /// Every claimant in the cache, once it has been filled; `None` until then.
    pub async fn cached(&self) -> Option<Vec<Claimant>> {
        let (store, _) = self.parts()?;
        tokio::time::timeout(Duration::from_secs(5), store.wait_until_ready())
            .await
            .ok()?
            .ok()?;
        Some(store.state().iter().map(|o| Claimant::of_json(o)).collect())
    }

    /// Every claimant as the apiserver has them now: asked right before a round that adds tags, so that two objects
    /// reconciled at once on caches a moment old do not both act.
    pub async fn listed(&self) -> Result<Vec<Claimant>, kube::Error> {
        let Some((_, api)) = self.parts() else {
            return Ok(Vec::new());
        };
        Ok(api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(Claimant::of_json)
            .collect())
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
            (true, true) => f.write_str(" (being deleted; it removes what it applied first)"),
            (false, true) => f.write_str(" (being deleted)"),
            (true, false) => f.write_str(" (it acted on the tag first)"),
            (false, false) => f.write_str(" (it claimed the tag first)"),
        }
    }
}

/// The tags `me` claims that another of `all` owns, each with its owner, in `me`'s order (spec first).
pub fn owned_elsewhere(me: &Claimant, all: &[Claimant], policy: &Policy) -> Vec<(String, Owner)> {
    let mut mine: Vec<&String> = Vec::new();
    for t in me.wants.iter().chain(&me.acted) {
        if !mine.contains(&t) {
            mine.push(t);
        }
    }
    mine.into_iter()
        .filter_map(|tag| {
            let owner = all
                .iter()
                .filter(|o| o.uid != me.uid && o.claims(tag, policy))
                .min_by(|a, b| a.rank(tag).cmp(&b.rank(tag)))?;
            (owner.rank(tag) < me.rank(tag)).then(|| {
                (
                    tag.clone(),
                    Owner {
                        namespace: owner.namespace.clone(),
                        name: owner.name.clone(),
                        deleting: owner.deleting,
                        acted: owner.acted_on(tag),
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
    use std::sync::Arc;

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

    fn owners_under(
        policy: &Policy,
        me: &Arc<TaniumTag>,
        all: &[Arc<TaniumTag>],
    ) -> Vec<(String, String)> {
        let all: Vec<Claimant> = all.iter().map(|o| Claimant::of(o)).collect();
        owned_elsewhere(&Claimant::of(me), &all, policy)
            .into_iter()
            .map(|(t, o)| (t, format!("{}/{}", o.namespace, o.name)))
            .collect()
    }

    fn owners(me: &Arc<TaniumTag>, all: &[Arc<TaniumTag>]) -> Vec<(String, String)> {
        owners_under(&Policy::default(), me, all)
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
        let all = [Claimant::of(&a), Claimant::of(&b)];
        let m = message(&owned_elsewhere(
            &Claimant::of(&b),
            &all,
            &Policy::default(),
        ));
        assert!(
            m.contains("tag \"pci\" is owned by TaniumTag team-a/web (it acted on the tag first)"),
            "{m}"
        );
    }

    #[test]
    fn a_claim_the_policy_refuses_counts_only_once_it_acted() {
        let policy = Policy {
            allowed_namespaces: vec!["team-a".into(), "squat".into()],
            tag_bindings: vec!["team-a-*=team-a".parse().unwrap_or_else(|e| panic!("{e}"))],
            ..Policy::default()
        };
        // Older, but its prefix is bound elsewhere (or its namespace may not act): no claim.
        let squat = tag("squat", "early", 50, &["team-a-pci"], &[]);
        let rogue = tag("rogue", "early", 60, &["team-a-pci"], &[]);
        let a = tag("team-a", "web", 100, &["team-a-pci"], &[]);
        let all = [squat.clone(), rogue.clone(), a.clone()];
        assert!(owners_under(&policy, &a, &all).is_empty());
        // Applied before the binding existed: it still owns what it put on endpoints, until it removes it.
        let before = tag("squat", "before", 50, &["team-a-pci"], &["team-a-pci"]);
        assert_eq!(
            owners_under(&policy, &a, &[before, a.clone()]),
            [("team-a-pci".to_string(), "squat/before".to_string())]
        );
    }

    #[test]
    fn a_claim_is_read_from_json_the_controller_cannot_decode() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumTag",
            "metadata": {"name": "odd", "namespace": "x", "uid": "u", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"tags": ["pci", 7], "targets": "not what the schema says"},
            "status": {"appliedTags": ["old"], "round": {"tags": ["next"]}},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let c = Claimant::of_json(&obj);
        assert_eq!(
            (c.wants, c.acted),
            (
                vec!["pci".to_string()],
                vec!["old".to_string(), "next".to_string()]
            )
        );
        assert_eq!(c.created.to_string(), "2026-01-01T00:00:00Z");
    }
}
