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

impl Key {
    /// Its name in metrics (the `connection` label) and logs: `own`, `TaniumConnection/<namespace>/<name>`,
    /// `ClusterTaniumConnection/<name>`. Bounded by the connection objects the process has seen
    /// since it started (a deleted one's series stay until a restart).
    pub fn label(&self) -> String {
        match self {
            Key::Own => super::connection::OWN.to_owned(),
            Key::Namespaced { namespace, name } => format!("TaniumConnection/{namespace}/{name}"),
            Key::Cluster { name } => format!("ClusterTaniumConnection/{name}"),
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

/// Whether an object's Ready says it waits for its connection (its token refused, or the connection missing, not
/// allowed or not ready): such objects look again when a connection may have become usable (`Connections::changes`).
pub fn held_by_connection(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> bool {
    let Some(ready) = crate::crd::condition(conditions, condition::READY) else {
        return false;
    };
    ready.reason == crate::gateway::GatewayError::TOKEN_REJECTED
        || [
            Reason::ConnectionNotFound,
            Reason::ConnectionNotAllowed,
            Reason::ConnectionNotReady,
        ]
        .iter()
        .any(|r| ready.reason == r.as_str())
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
    /// Rotations told to stop (their connection rebuilt, swept or the controllers stopped) and not yet over.
    finishing: Mutex<HashMap<Key, Finishing>>,
    wakers: Mutex<Option<Wakers>>,
    /// Bumped when a connection may have become usable (`changes`).
    changed: Arc<tokio::sync::watch::Sender<u64>>,
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
    /// Its token rotation, if it has one: told to stop when this goes (`_stop` dropped), not aborted, so that a new
    /// token only this process holds is written first; waited for (`Finishing`) before another rotation of the same
    /// connection starts and before the controllers' stop is over.
    rotation: Option<Rotation>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A token rotation running for a connection.
struct Rotation {
    /// Where the token it keeps is: no other connection's rotation may keep the same one.
    at: TokenAt,
    task: tokio::task::JoinHandle<()>,
}

/// A rotation told to stop and not yet over, with the connection whose state it leaves behind.
struct Finishing {
    conn: Arc<Connection>,
    task: tokio::task::JoinHandle<()>,
}

/// A token's place: a Secret's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TokenAt {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl TokenAt {
    /// The token a rotation keeps.
    pub fn of(config: &super::rotation::RotationConfig) -> Self {
        Self {
            namespace: config.namespace.clone(),
            name: config.secret.clone(),
            key: config.key.clone(),
        }
    }
}

impl Drop for Built {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// What a connection's token rotation needs: the operator's context and where the token is.
pub(super) struct Rotate {
    pub ctx: Arc<super::Context>,
    pub config: super::rotation::RotationConfig,
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
            finishing: Mutex::new(HashMap::new()),
            wakers: Mutex::new(None),
            changed: Arc::new(tokio::sync::watch::Sender::new(0)),
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
        let drained: Vec<(Key, Built)> = match self.built.lock() {
            Ok(mut built) => built.drain().collect(),
            Err(_) => Vec::new(),
        };
        drained
            .into_iter()
            .map(|(key, b)| {
                let conn = b.conn.clone();
                self.retire(key, b);
                conn
            })
            .collect()
    }

    /// `built` goes: its poller stops, and its rotation, told to stop, is kept among the finishing ones.
    fn retire(&self, key: Key, mut built: Built) {
        if let Some(rotation) = built.rotation.take()
            && let Ok(mut finishing) = self.finishing.lock()
        {
            let task = match finishing.remove(&key) {
                // Retired twice before the first was over: the second waits for the first.
                Some(earlier) => tokio::spawn(async move {
                    let _ = earlier.task.await;
                    let _ = rotation.task.await;
                }),
                None => rotation.task,
            };
            finishing.insert(
                key,
                Finishing {
                    conn: built.conn.clone(),
                    task,
                },
            );
        }
    }

    /// Wait until every rotation told to stop has written what only it held (at most `within`): the process may
    /// end after this.
    pub async fn rotations_finished(&self, within: std::time::Duration) {
        let tasks: Vec<Finishing> = match self.finishing.lock() {
            Ok(mut f) => f.drain().map(|(_, f)| f).collect(),
            Err(_) => Vec::new(),
        };
        let all = futures::future::join_all(tasks.into_iter().map(|f| f.task));
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!("a connection's token rotation did not finish before the stop");
        }
    }

    /// Whether a connection other than `key` has a rotation keeping the token at `at`.
    pub(super) fn rotated_elsewhere(&self, key: &Key, at: &TokenAt) -> bool {
        self.built.lock().is_ok_and(|built| {
            built
                .iter()
                .any(|(k, b)| k != key && b.rotation.as_ref().is_some_and(|r| r.at == *at))
        })
    }

    /// The connection built for `key` from the object's `generation`, if it is built from that one.
    pub(super) fn current(&self, key: &Key, generation: Option<i64>) -> Option<Arc<Connection>> {
        let built = self.built.lock().ok()?;
        built
            .get(key)
            .filter(|b| b.generation == generation)
            .map(|b| b.conn.clone())
    }

    /// Keep `conn` for `key` and start its poller and token rotation; whatever was there before goes (its poller
    /// stops; its rotation finishes first: the new one starts only after it).
    pub(super) fn keep(
        &self,
        key: Key,
        generation: Option<i64>,
        conn: Arc<Connection>,
        timing: super::Timing,
        rotate: Option<Rotate>,
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
        let changed = self.changed.clone();
        let tokens = conn.gateway.token_changes();
        tokio::spawn(async move {
            use futures::StreamExt as _;
            let mut tokens = std::pin::pin!(tokens);
            // Ends when the client goes (its sender with it).
            while tokens.next().await.is_some() {
                changed.send_modify(|n| *n += 1);
            }
        });
        let mut built = self.built.lock().ok()?;
        let old = built.remove(&key);
        let old_conn = old.as_ref().map(|b| b.conn.clone());
        if let Some(old) = old {
            self.retire(key.clone(), old);
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let rotation = rotate.map(|rotate| {
            let at = TokenAt::of(&rotate.config);
            let before = self.finishing.lock().ok().and_then(|mut f| f.remove(&key));
            let rotating = conn.clone();
            let task = tokio::spawn(async move {
                if let Some(before) = before {
                    // Two rotations of one token would lock each other out: the one told to stop ends first, and
                    // what only it held (a new token not yet in the Secret) is this one's to write.
                    let _ = before.task.await;
                    rotating.rotation.take_over(&before.conn.rotation);
                }
                let stopped = async {
                    let _ = stopped.await;
                };
                super::rotation::keep_valid(&rotate.ctx, &rotating, &rotate.config, stopped).await;
            });
            Rotation { at, task }
        });
        built.insert(
            key,
            Built {
                generation,
                conn,
                poller,
                rotation,
                _stop: stop,
            },
        );
        old_conn
    }

    /// Yields each time a connection may have become usable: a token changed (any connection's) or a connection
    /// object turned Ready. The objects it held look again then, not after their requeue.
    pub fn changes(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        let own = self.own.gateway.token_changes();
        let built = futures::stream::unfold(self.changed.subscribe(), |mut seen| async move {
            seen.changed().await.ok().map(|()| ((), seen))
        });
        futures::stream::select(own, built)
    }

    /// A connection object turned Ready, or changed while Ready (`status`).
    pub(super) fn became_ready(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Forget the connections whose objects are gone (their pollers stop, their rotations finish; open Direct
    /// Connect connections are left to the Gateway's idle timeout). On every connection reconcile, and every
    /// recheck interval (`runtime`), since a deleted object is reconciled no more.
    pub fn sweep(&self) {
        let gone: Vec<(Key, Built)> = {
            let Ok(mut built) = self.built.lock() else {
                return;
            };
            let known = Stores(self);
            let keys: Vec<Key> = built
                .keys()
                .filter(|key| match key {
                    Key::Own => false,
                    Key::Namespaced { namespace, name } => {
                        known.namespaced(namespace, name).is_none()
                    }
                    Key::Cluster { name } => known.cluster(name).is_none(),
                })
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| built.remove(&k).map(|b| (k, b)))
                .collect()
        };
        for (key, b) in gone {
            self.retire(key, b);
        }
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

    #[test]
    fn objects_waiting_for_a_connection_are_the_ones_it_wakes() {
        let with = |reason: &str| {
            let mut conditions = Vec::new();
            crate::crd::set_condition(&mut conditions, condition::READY, false, reason, "m", None);
            conditions
        };
        for waiting in [
            crate::gateway::GatewayError::TOKEN_REJECTED,
            Reason::ConnectionNotFound.as_str(),
            Reason::ConnectionNotAllowed.as_str(),
            Reason::ConnectionNotReady.as_str(),
        ] {
            assert!(held_by_connection(&with(waiting)), "{waiting}");
        }
        for other in [Reason::NoTargets, Reason::PolicyDenied, Reason::Connected] {
            assert!(!held_by_connection(&with(other.as_str())), "{other:?}");
        }
        assert!(!held_by_connection(&[]));
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
