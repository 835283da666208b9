//! Which objects this process reconciles. Past one replica, Kubernetes is the engine (docs/performance.md):
//! the objects are split into shards, each a Deployment with its own Lease, by a namespace set or a label
//! selector. Every shard has its own watch caches, poller and Gateway budget; what keeps an object that moves
//! between shards from being deployed twice is the same as between two leaders: every status write is
//! conditional on the version the reconcile read, and an intent is written before every side effect.

use kube::Resource as _;
use kube::runtime::watcher;

/// The label the chart's shards select on: `tanium-operator.dev/shard: <name>` puts an object in that shard; objects
/// without it (or naming no shard that exists) stay with the main Deployment.
pub const SHARD_LABEL: &str = "tanium-operator.dev/shard";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shard {
    /// Only objects in these namespaces; empty: all. One namespace is watched on its own (a namespaced Role is
    /// enough); several are picked from a cluster-wide watch, before anything is cached.
    pub namespaces: Vec<String>,
    /// Only objects whose labels match this Kubernetes label selector, applied by the apiserver.
    pub label_selector: Option<String>,
}

impl Shard {
    /// Everything, everywhere: one replica set reconciles every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The one namespace watched on its own, if that is the shard.
    pub fn only_namespace(&self) -> Option<&str> {
        match self.namespaces.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Where this shard's objects of kind `K` are listed and watched.
    pub fn api<K>(&self, client: &kube::Client) -> kube::Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match self.only_namespace() {
            Some(ns) => kube::Api::namespaced(client.clone(), ns),
            None => kube::Api::all(client.clone()),
        }
    }

    pub fn watcher_config(&self) -> watcher::Config {
        match &self.label_selector {
            Some(selector) => watcher::Config::default().labels(selector),
            None => watcher::Config::default(),
        }
    }

    /// The part of the shard the apiserver cannot select: a namespace set.
    pub fn holds<K: kube::Resource>(&self, obj: &K) -> bool {
        self.namespaces.len() <= 1
            || obj
                .meta()
                .namespace
                .as_ref()
                .is_some_and(|ns| self.namespaces.contains(ns))
    }

    /// Keep the watch events of this shard's objects only (the list's and watch's bookkeeping events pass).
    pub fn filter<K: kube::Resource>(&self, event: &watcher::Event<K>) -> bool {
        match event {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
                self.holds(o)
            }
            watcher::Event::Init | watcher::Event::InitDone => true,
        }
    }

    /// Refuse a label selector the apiserver cannot parse, at start: a watch with it would only fail and retry
    /// for ever. Other errors (an apiserver not reachable yet) are left to the watches, which retry.
    pub async fn check(&self, client: &kube::Client) -> Result<(), String> {
        let Some(selector) = &self.label_selector else {
            return Ok(());
        };
        let api: kube::Api<crate::crd::TaniumAction> = self.api(client);
        let params = kube::api::ListParams::default().labels(selector).limit(1);
        match api.list_metadata(&params).await {
            Err(kube::Error::Api(e)) if e.code == 400 => Err(format!(
                "shard label selector {selector:?} is not valid: {}",
                e.message
            )),
            Err(e) => {
                tracing::warn!(error = %e, kind = %crate::crd::TaniumAction::kind(&()), "cannot check the shard's label selector yet; the watches will retry");
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.namespaces.as_slice() {
            [] => f.write_str("all namespaces")?,
            [one] => write!(f, "namespace {one}")?,
            several => write!(f, "namespaces {}", several.join(", "))?,
        }
        if let Some(selector) = &self.label_selector {
            write!(f, ", labels {selector}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TaniumAction;

    fn in_namespace(ns: &str) -> TaniumAction {
        let mut obj = TaniumAction::new(
            "a",
            serde_json::from_value(serde_json::json!({
                "package": {"name": "p"},
                "targets": {"actionGroup": {"name": "All Computers"}}
            }))
            .unwrap_or_else(|e| panic!("spec: {e}")),
        );
        obj.metadata.namespace = Some(ns.into());
        obj
    }

    #[test]
    fn a_namespace_set_is_picked_client_side_one_namespace_by_the_api() {
        let set = Shard {
            namespaces: vec!["team-a".into(), "team-b".into()],
            label_selector: None,
        };
        assert!(set.holds(&in_namespace("team-b")));
        assert!(!set.holds(&in_namespace("team-c")));
        assert!(set.filter(&watcher::Event::<TaniumAction>::InitDone));
        assert!(!set.filter(&watcher::Event::Apply(in_namespace("team-c"))));
        assert_eq!(set.only_namespace(), None);
        let one = Shard {
            namespaces: vec!["team-a".into()],
            label_selector: None,
        };
        // The namespaced API already selects it.
        assert!(one.holds(&in_namespace("team-z")));
        assert_eq!(one.only_namespace(), Some("team-a"));
        assert!(Shard::everything().holds(&in_namespace("x")));
    }

    #[test]
    fn says_what_it_reconciles() {
        assert_eq!(Shard::everything().to_string(), "all namespaces");
        let shard = Shard {
            namespaces: vec!["a".into(), "b".into()],
            label_selector: Some(format!("{SHARD_LABEL}=blue")),
        };
        assert_eq!(
            shard.to_string(),
            "namespaces a, b, labels tanium-operator.dev/shard=blue"
        );
    }
}
