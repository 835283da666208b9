//! Which Tanium server an object's requests go to. `spec.connectionRef` names a TaniumConnection of the object's
//! own namespace or a ClusterTaniumConnection whose `spec.namespaces` lists it (or `*`); without it, the operator's
//! own connection (its flags and chart values). An object whose connection is missing, not allowed or not ready is
//! held with a condition naming it, and nothing is sent anywhere else: a broken connection holds only its own
//! objects.

mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use kube::runtime::reflector::{ObjectRef, Store};

pub use status::{reconcile_cluster, reconcile_namespaced};

use super::connection::Connection;
use crate::crd::connection::{ConnectionKind, ConnectionRef};
use crate::crd::{
    ClusterTaniumConnection, Reason, TaniumAction, TaniumConnection, TaniumTag, condition,
};

/// A connection, as objects name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// The operator's own.
    Own,
    Namespaced {
        namespace: String,
        name: String,
    },
    Cluster {
        name: String,
    },
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Own => f.write_str("the operator's own connection"),
            Key::Namespaced { namespace, name } => write!(f, "TaniumConnection {namespace}/{name}"),
            Key::Cluster { name } => write!(f, "ClusterTaniumConnection {name}"),
        }
    }
}

/// Why an object cannot use the connection it names: said in its Ready condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
}

/// The connection objects the operator knows (its watch caches).
pub trait Known {
    fn namespaced(&self, namespace: &str, name: &str) -> Option<Arc<TaniumConnection>>;
    fn cluster(&self, name: &str) -> Option<Arc<ClusterTaniumConnection>>;
}

/// The connection an object in `namespace` that names `wanted` uses, or why it may not.
pub fn choose(
    namespace: &str,
    wanted: Option<&ConnectionRef>,
    known: &impl Known,
) -> Result<Key, Refusal> {
    let Some(wanted) = wanted else {
        return Ok(Key::Own);
    };
    let name = wanted.name.as_str();
    let (key, conditions) = match wanted.kind {
        ConnectionKind::TaniumConnection => {
            let key = Key::Namespaced {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            };
            let Some(found) = known.namespaced(namespace, name) else {
                return Err(not_found(&key));
            };
            (key, found.status.clone())
        }
        ConnectionKind::ClusterTaniumConnection => {
            let key = Key::Cluster {
                name: name.to_owned(),
            };
            let Some(found) = known.cluster(name) else {
                return Err(not_found(&key));
            };
            if !found.spec.allows(namespace) {
                return Err(Refusal {
                    reason: Reason::ConnectionNotAllowed,
                    message: format!(
                        "{key} does not list namespace {namespace} in spec.namespaces: an admin adds it there, or this \
                         object names another connection"
                    ),
                });
            }
            (key, found.status.clone())
        }
    };
    let conditions = conditions.map(|s| s.conditions).unwrap_or_default();
    let ready = crate::crd::condition(&conditions, condition::READY);
    if ready.is_none_or(|c| c.status != "True") {
        let why = ready
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_else(|| "the operator has not checked it yet".to_owned());
        return Err(Refusal {
            reason: Reason::ConnectionNotReady,
            message: format!("{key} is not ready ({why}); nothing is sent until it is"),
        });
    }
    Ok(key)
}

fn not_found(key: &Key) -> Refusal {
    Refusal {
        reason: Reason::ConnectionNotFound,
        message: format!("{key} does not exist; nothing is sent until it does"),
    }
}

/// Every connection this replica can speak through: its own, and the ones built from TaniumConnection and
/// ClusterTaniumConnection objects (`status`), with what runs for each (its results poller).
pub struct Connections {
    own: Arc<Connection>,
    namespaced: RwLock<Option<Store<TaniumConnection>>>,
    cluster: RwLock<Option<Store<ClusterTaniumConnection>>>,
    built: Mutex<HashMap<Key, Built>>,
    wakers: Mutex<Option<Wakers>>,
}

/// Where a connection's poller says an object's actions have news.
#[derive(Clone)]
pub struct Wakers {
    pub actions: futures::channel::mpsc::UnboundedSender<ObjectRef<TaniumAction>>,
    pub tags: futures::channel::mpsc::UnboundedSender<ObjectRef<TaniumTag>>,
}

impl Wakers {
    /// Let `poller` wake the objects whose actions it reads.
    fn attach(&self, poller: &super::poller::Poller) {
        poller.wake_actions_with(self.actions.clone());
        poller.wake_tags_with(self.tags.clone());
    }
}

struct Built {
    /// What it was built from: the connection object's generation (its server settings).
    generation: Option<i64>,
    conn: Arc<Connection>,
    poller: tokio::task::JoinHandle<()>,
}

impl Drop for Built {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

struct Stores<'a>(&'a Connections);

impl Known for Stores<'_> {
    fn namespaced(&self, namespace: &str, name: &str) -> Option<Arc<TaniumConnection>> {
        let store = self.0.namespaced.read().ok()?;
        store.as_ref()?.get(&ObjectRef::new(name).within(namespace))
    }
    fn cluster(&self, name: &str) -> Option<Arc<ClusterTaniumConnection>> {
        let store = self.0.cluster.read().ok()?;
        store.as_ref()?.get(&ObjectRef::new(name))
    }
}

impl Connections {
    pub fn new(own: Connection) -> Self {
        Self {
            own: Arc::new(own),
            namespaced: RwLock::new(None),
            cluster: RwLock::new(None),
            built: Mutex::new(HashMap::new()),
            wakers: Mutex::new(None),
        }
    }

    /// The operator's own connection (its flags and chart values).
    pub fn own(&self) -> &Arc<Connection> {
        &self.own
    }

    /// The connection an object in `namespace` naming `wanted` speaks through, or why it may not speak at all.
    pub fn for_object(
        &self,
        namespace: &str,
        wanted: Option<&ConnectionRef>,
    ) -> Result<Arc<Connection>, Refusal> {
        let key = choose(namespace, wanted, &Stores(self))?;
        if key == Key::Own {
            return Ok(self.own.clone());
        }
        self.built(&key).ok_or_else(|| Refusal {
            reason: Reason::ConnectionNotReady,
            message: format!(
                "{key} is not connected by this replica yet; nothing is sent until it is"
            ),
        })
    }

    fn built(&self, key: &Key) -> Option<Arc<Connection>> {
        self.built.lock().ok()?.get(key).map(|b| b.conn.clone())
    }

    /// Every connection now: the own one first.
    pub fn all(&self) -> Vec<Arc<Connection>> {
        let mut all = vec![self.own.clone()];
        if let Ok(built) = self.built.lock() {
            all.extend(built.values().map(|b| b.conn.clone()));
        }
        all
    }

    /// The controllers started: where the connection objects are cached and where pollers wake objects.
    pub fn started(
        &self,
        namespaced: Store<TaniumConnection>,
        cluster: Store<ClusterTaniumConnection>,
        wakers: Wakers,
    ) {
        if let Ok(mut s) = self.namespaced.write() {
            *s = Some(namespaced);
        }
        if let Ok(mut s) = self.cluster.write() {
            *s = Some(cluster);
        }
        wakers.attach(&self.own.poller);
        if let Ok(mut w) = self.wakers.lock() {
            *w = Some(wakers);
        }
    }

    /// The controllers stopped (shutdown, or leadership lost): every built connection goes, with its poller; the
    /// next leader term builds them again from the objects.
    pub fn stopped(&self) -> Vec<Arc<Connection>> {
        let drained: Vec<Built> = match self.built.lock() {
            Ok(mut built) => built.drain().map(|(_, b)| b).collect(),
            Err(_) => Vec::new(),
        };
        drained.iter().map(|b| b.conn.clone()).collect()
    }

    /// The connection built for `key` from the object's `generation`, if it is built from that one.
    pub(super) fn current(&self, key: &Key, generation: Option<i64>) -> Option<Arc<Connection>> {
        let built = self.built.lock().ok()?;
        built
            .get(key)
            .filter(|b| b.generation == generation)
            .map(|b| b.conn.clone())
    }

    /// Keep `conn` for `key` and start its poller; whatever was there before goes (its poller stops).
    pub(super) fn keep(
        &self,
        key: Key,
        generation: Option<i64>,
        conn: Arc<Connection>,
        timing: super::Timing,
    ) -> Option<Arc<Connection>> {
        if let Ok(w) = self.wakers.lock()
            && let Some(w) = w.as_ref()
        {
            w.attach(&conn.poller);
        }
        let polling = conn.clone();
        let poller = tokio::spawn(async move {
            polling
                .poller
                .run(&polling.gateway, &timing, std::future::pending())
                .await;
        });
        let old = self.built.lock().ok()?.insert(
            key,
            Built {
                generation,
                conn,
                poller,
            },
        );
        old.map(|b| b.conn.clone())
    }

    /// Forget the connections whose objects are gone (their pollers stop; open Direct Connect connections are
    /// left to the Gateway's idle timeout).
    fn sweep(&self) {
        let Ok(mut built) = self.built.lock() else {
            return;
        };
        let known = Stores(self);
        built.retain(|key, _| match key {
            Key::Own => true,
            Key::Namespaced { namespace, name } => known.namespaced(namespace, name).is_some(),
            Key::Cluster { name } => known.cluster(name).is_some(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Fake {
        namespaced: HashMap<(String, String), Arc<TaniumConnection>>,
        cluster: HashMap<String, Arc<ClusterTaniumConnection>>,
    }

    impl Known for Fake {
        fn namespaced(&self, namespace: &str, name: &str) -> Option<Arc<TaniumConnection>> {
            self.namespaced
                .get(&(namespace.to_owned(), name.to_owned()))
                .cloned()
        }
        fn cluster(&self, name: &str) -> Option<Arc<ClusterTaniumConnection>> {
            self.cluster.get(name).cloned()
        }
    }

    fn ready(ok: bool) -> serde_json::Value {
        serde_json::json!({"conditions": [{"type": "Ready", "status": if ok {"True"} else {"False"},
            "reason": if ok {"Connected"} else {"TokenRejected"}, "message": "m",
            "lastTransitionTime": "2026-12-04T00:00:00Z"}]})
    }

    fn known() -> Fake {
        let mut f = Fake::default();
        let server = serde_json::json!({"gatewayUrl": "https://lab.example"});
        for (ns, name, ok) in [("team-a", "lab", true), ("team-a", "broken", false)] {
            let mut spec = server.clone();
            spec["tokenSecretRef"] = serde_json::json!({"name": "t"});
            let c: TaniumConnection = serde_json::from_value(serde_json::json!({
                "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumConnection",
                "metadata": {"name": name, "namespace": ns}, "spec": spec, "status": ready(ok)
            }))
            .unwrap_or_else(|e| panic!("{e}"));
            f.namespaced.insert((ns.into(), name.into()), Arc::new(c));
        }
        for (name, namespaces) in [
            ("prod", serde_json::json!(["team-a"])),
            ("all", serde_json::json!(["*"])),
            ("none", serde_json::json!([])),
        ] {
            let mut spec = server.clone();
            spec["tokenSecretRef"] = serde_json::json!({"name": "t"});
            spec["namespaces"] = namespaces;
            let c: ClusterTaniumConnection = serde_json::from_value(serde_json::json!({
                "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "ClusterTaniumConnection",
                "metadata": {"name": name}, "spec": spec, "status": ready(true)
            }))
            .unwrap_or_else(|e| panic!("{e}"));
            f.cluster.insert(name.into(), Arc::new(c));
        }
        f
    }

    fn named(kind: ConnectionKind, name: &str) -> ConnectionRef {
        ConnectionRef {
            kind,
            name: name.into(),
        }
    }

    #[test]
    fn an_object_uses_what_it_names_and_may_use_and_nothing_else() {
        use ConnectionKind::*;
        let k = known();
        let reason =
            |ns: &str, r: Option<ConnectionRef>| choose(ns, r.as_ref(), &k).map_err(|e| e.reason);
        assert_eq!(reason("team-a", None), Ok(Key::Own));
        assert_eq!(
            reason("team-a", Some(named(TaniumConnection, "lab"))),
            Ok(Key::Namespaced {
                namespace: "team-a".into(),
                name: "lab".into()
            })
        );
        // Another namespace's TaniumConnection of the same name is not this namespace's.
        assert_eq!(
            reason("team-b", Some(named(TaniumConnection, "lab"))),
            Err(Reason::ConnectionNotFound)
        );
        assert_eq!(
            reason("team-a", Some(named(TaniumConnection, "broken"))),
            Err(Reason::ConnectionNotReady)
        );
        assert_eq!(
            reason("team-a", Some(named(ClusterTaniumConnection, "prod"))),
            Ok(Key::Cluster {
                name: "prod".into()
            })
        );
        assert_eq!(
            reason("team-b", Some(named(ClusterTaniumConnection, "prod"))),
            Err(Reason::ConnectionNotAllowed)
        );
        assert_eq!(
            reason("team-b", Some(named(ClusterTaniumConnection, "all"))),
            Ok(Key::Cluster { name: "all".into() })
        );
        assert_eq!(
            reason("team-a", Some(named(ClusterTaniumConnection, "none"))),
            Err(Reason::ConnectionNotAllowed)
        );
        assert_eq!(
            reason("team-a", Some(named(ClusterTaniumConnection, "gone"))),
            Err(Reason::ConnectionNotFound)
        );
        let message = choose("team-a", Some(&named(TaniumConnection, "broken")), &k)
            .err()
            .map(|r| r.message)
            .unwrap_or_default();
        assert!(
            message.contains("TaniumConnection team-a/broken") && message.contains("TokenRejected"),
            "{message}"
        );
    }
}
