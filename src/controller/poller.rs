//! The one results poller for every open action of every object: each cycle it asks for all actions that are due
//! (an instance by id, or a recurring action's newest instance through its scheduled action),
//! up to `batch` per request (aliases in one GraphQL document), so that Gateway requests grow with open actions /
//! batch, not with objects. Each action's interval backs off with its age (fast right after deployment, slower
//! later, capped). An object is woken only when one of its actions changed; terminal objects never register, so
//! they cost no request, also after a restart.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt as _;
use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

use kube::Resource as _;

use super::Timing;
use crate::crd::{TaniumAction, TaniumTag};
use crate::gateway::actions::Polled;
use crate::gateway::{ActionState, GatewayClient};

/// Whose action it is: the object to wake when it changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    Action(ObjectRef<TaniumAction>),
    Tag(ObjectRef<TaniumTag>),
}

impl Owner {
    /// Is it this object (of kind `K`)?
    fn is<K: kube::Resource<DynamicType = ()>>(&self, obj: &K) -> bool {
        let (kind, r) = match self {
            Self::Action(r) => (TaniumAction::kind(&()), (&r.name, &r.namespace)),
            Self::Tag(r) => (TaniumTag::kind(&()), (&r.name, &r.namespace)),
        };
        kind == K::kind(&())
            && obj.meta().name.as_ref() == Some(r.0)
            && obj.meta().namespace == *r.1
    }
}

/// What the poller last saw of some actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// `None`: the Gateway does not know the action (purged).
    pub states: HashMap<Polled, Option<ActionState>>,
    /// The Gateway's clock, as of the oldest of these answers.
    pub now: jiff::Timestamp,
}

struct Watched {
    owner: Owner,
    /// When it was first watched: the interval grows with the action's age.
    since: Instant,
    next_due: Instant,
    /// The last answer, with the Gateway's clock at that poll.
    last: Option<(Option<ActionState>, jiff::Timestamp)>,
    /// When its owner last looked; an owner that stops looking (deleted, finished elsewhere) is forgotten.
    looked: Instant,
}

/// Ways an object is woken, one per kind.
#[derive(Default)]
struct Wakers {
    actions: Option<futures::channel::mpsc::UnboundedSender<ObjectRef<TaniumAction>>>,
    tags: Option<futures::channel::mpsc::UnboundedSender<ObjectRef<TaniumTag>>>,
}

pub struct Poller {
    watched: Mutex<HashMap<Polled, Watched>>,
    wakers: Mutex<Wakers>,
    /// Actions per request; 1 is the way scripts poll (one request per action).
    batch: usize,
    /// Poll requests in flight at once.
    parallel: usize,
}

/// Consecutive failed cycles before the next one, capped.
const ERROR_PAUSE: Duration = Duration::from_secs(2);

impl Poller {
    pub fn new(batch: usize) -> Self {
        Self {
            watched: Mutex::new(HashMap::new()),
            wakers: Mutex::new(Wakers::default()),
            batch: batch.max(1),
            parallel: 4,
        }
    }

    /// Actions watched now (a gauge for tests and benchmarks).
    pub fn len(&self) -> usize {
        self.watched.lock().map(|w| w.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Watch `ids` for `owner` and return what was last seen of them, once every one of them has been polled at
    /// least once; `None` until then (the owner is woken when the answer is there).
    pub fn observe(&self, owner: &Owner, ids: &[Polled]) -> Option<Seen> {
        let Ok(mut watched) = self.watched.lock() else {
            return None;
        };
        let now = Instant::now();
        let mut states = HashMap::with_capacity(ids.len());
        let mut oldest: Option<jiff::Timestamp> = None;
        let mut complete = true;
        for id in ids {
            let w = watched.entry(id.clone()).or_insert_with(|| Watched {
                owner: owner.clone(),
                since: now,
                next_due: now,
                last: None,
                looked: now,
            });
            w.looked = now;
            match &w.last {
                Some((state, at)) => {
                    states.insert(id.clone(), state.clone());
                    oldest = Some(oldest.map_or(*at, |o| o.min(*at)));
                }
                None => complete = false,
            }
        }
        match (complete, oldest) {
            (true, Some(now)) => Some(Seen { states, now }),
            _ => None,
        }
    }

    /// Stop watching (the object finished, or is going away).
    pub fn forget(&self, ids: &[Polled]) {
        if let Ok(mut watched) = self.watched.lock() {
            for id in ids {
                watched.remove(id);
            }
        }
    }

    /// Stop watching whatever `owner` had watched (it left this replica's watch: deleted, or moved to another
    /// shard, whose poller reads them now).
    pub fn forget_owner<K: kube::Resource<DynamicType = ()>>(&self, owner: &K) {
        if let Ok(mut watched) = self.watched.lock() {
            watched.retain(|_, w| !w.owner.is(owner));
        }
    }

    /// From now on read `to` instead of `from`, keeping what was read (a one-off action's first instance, found
    /// through its scheduled action, is read by its id from then on).
    pub fn rename(&self, from: &Polled, to: Polled) {
        if let Ok(mut watched) = self.watched.lock()
            && let Some(w) = watched.remove(from)
        {
            watched.insert(to, w);
        }
    }

    pub(crate) fn wake_actions_with(
        &self,
        tx: futures::channel::mpsc::UnboundedSender<ObjectRef<TaniumAction>>,
    ) {
        if let Ok(mut w) = self.wakers.lock() {
            w.actions = Some(tx);
        }
    }

    pub(crate) fn wake_tags_with(
        &self,
        tx: futures::channel::mpsc::UnboundedSender<ObjectRef<TaniumTag>>,
    ) {
        if let Ok(mut w) = self.wakers.lock() {
            w.tags = Some(tx);
        }
    }

    fn wake(&self, owners: HashSet<Owner>) {
        let Ok(wakers) = self.wakers.lock() else {
            return;
        };
        for owner in owners {
            // A closed channel means the controllers stopped; the next start re-reads everything anyway.
            let _ = match owner {
                Owner::Action(r) => wakers
                    .actions
                    .as_ref()
                    .map(|tx| tx.unbounded_send(r).is_ok()),
                Owner::Tag(r) => wakers.tags.as_ref().map(|tx| tx.unbounded_send(r).is_ok()),
            };
        }
    }

    /// Ids due before the next cycle, oldest due first, topped up to whole requests with the ones due next
    /// (polling one a little early lets it share a request); forgets the ones nobody looked at for a long time.
    fn due(&self, timing: &Timing, cycle: Duration) -> Vec<Polled> {
        let Ok(mut watched) = self.watched.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        let horizon = now + cycle;
        let abandoned = timing.poll_max.max(Duration::from_secs(60)) * 10;
        watched.retain(|_, w| now.duration_since(w.looked) < abandoned);
        let mut all: Vec<(Instant, Polled)> = watched
            .iter()
            .map(|(id, w)| (w.next_due, id.clone()))
            .collect();
        all.sort();
        let due = all.iter().take_while(|(at, _)| *at < horizon).count();
        // A last request with room left takes the actions due soonest after: a read a little early costs nothing,
        // a request of its own later does.
        let fill = if due == 0 {
            0
        } else {
            due.div_ceil(self.batch) * self.batch
        };
        all.into_iter()
            .take(fill.min(watched.len()))
            .map(|(_, id)| id)
            .collect()
    }

    /// Record answers; returns the owners whose actions changed (or were answered for the first time).
    fn record(
        &self,
        timing: &Timing,
        gateway_now: jiff::Timestamp,
        answers: HashMap<Polled, Option<ActionState>>,
    ) -> HashSet<Owner> {
        let mut changed = HashSet::new();
        let Ok(mut watched) = self.watched.lock() else {
            return changed;
        };
        let now = Instant::now();
        for (id, state) in answers {
            let Some(w) = watched.get_mut(&id) else {
                continue;
            };
            w.next_due = now + timing.poll_interval(now.duration_since(w.since));
            if w.last.as_ref().map(|(s, _)| s) != Some(&state) {
                changed.insert(w.owner.clone());
            }
            w.last = Some((state, gateway_now));
        }
        changed
    }

    fn postpone(&self, ids: &[Polled], pause: Duration) {
        if let Ok(mut watched) = self.watched.lock() {
            let next = Instant::now() + pause;
            for id in ids {
                if let Some(w) = watched.get_mut(id) {
                    w.next_due = next;
                }
            }
        }
    }

    /// Poll until `stop` resolves: a cycle every `poll_min`, each asking for every action due before the next.
    pub async fn run(
        &self,
        gateway: &GatewayClient,
        timing: &Timing,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let cycle = timing
            .poll_min
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut ticks = tokio::time::interval(cycle);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticks.tick() => {}
            }
            let due = self.due(timing, cycle);
            if !due.is_empty() {
                let ok = self.cycle(gateway, timing, due).await;
                failures = if ok { 0 } else { failures.saturating_add(1) };
            }
            if failures > 0 {
                let pause = ERROR_PAUSE
                    .saturating_mul(1 << failures.min(6))
                    .min(timing.error_backoff_max);
                tokio::select! {
                    () = &mut stop => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// One poll of `due`, `batch` actions per request, a few requests at once. `false` when any request failed.
    async fn cycle(&self, gateway: &GatewayClient, timing: &Timing, due: Vec<Polled>) -> bool {
        let chunks: Vec<Vec<Polled>> = due.chunks(self.batch).map(<[_]>::to_vec).collect();
        let results: Vec<_> = futures::stream::iter(chunks)
            .map(|chunk| async move {
                let answer = gateway.poll(&chunk, self.batch).await;
                (chunk, answer)
            })
            .buffer_unordered(self.parallel)
            .collect()
            .await;
        let mut all_ok = true;
        let mut woken = HashSet::new();
        for (chunk, answer) in results {
            match answer {
                Ok((Some(now), states)) => woken.extend(self.record(timing, now, states)),
                Ok((None, _)) => {}
                Err(e) => {
                    all_ok = false;
                    tracing::warn!(error = %e, actions = chunk.len(), "results poll failed");
                    self.postpone(&chunk, ERROR_PAUSE);
                }
            }
        }
        self.wake(woken);
        all_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{ActionId, ActionResults, ActionStatus};

    fn owner(name: &str) -> Owner {
        Owner::Action(ObjectRef::new(name).within("ns"))
    }

    fn state(id: &str, completed: u32) -> Option<ActionState> {
        Some(ActionState {
            id: ActionId::from(id),
            status: ActionStatus::Open,
            expiration_time: None,
            stopped: false,
            results: ActionResults {
                completed,
                ..ActionResults::default()
            },
        })
    }

    #[test]
    fn an_owner_sees_nothing_until_every_action_was_polled_and_is_woken_only_on_change() {
        let p = Poller::new(50);
        let timing = Timing::default();
        let ids = [
            Polled::Action(ActionId::from("1")),
            Polled::Schedule(crate::gateway::ScheduledActionId("2".into())),
        ];
        assert_eq!(p.observe(&owner("a"), &ids), None);
        let cycle = Duration::from_millis(100);
        assert_eq!(p.due(&timing, cycle).len(), 2);
        let now = jiff::Timestamp::UNIX_EPOCH;
        let first: HashMap<_, _> = [(ids[0].clone(), state("1", 0))].into();
        assert_eq!(p.record(&timing, now, first.clone()).len(), 1);
        assert_eq!(p.observe(&owner("a"), &ids), None, "one still unanswered");
        let second: HashMap<_, _> = [(ids[1].clone(), state("2", 0))].into();
        p.record(&timing, now, second);
        let seen = p.observe(&owner("a"), &ids).unwrap();
        assert_eq!(seen.states.len(), 2);
        assert!(
            p.record(&timing, now, first).is_empty(),
            "no change, no wake"
        );
        let progressed: HashMap<_, _> = [(ids[0].clone(), state("1", 3))].into();
        assert_eq!(p.record(&timing, now, progressed).len(), 1);
        // Just polled: not due again before poll_min.
        assert!(p.due(&timing, cycle).is_empty());
        p.forget(&ids);
        assert!(p.is_empty());
    }

    #[test]
    fn an_owner_that_left_is_forgotten_with_all_it_watched_and_nobody_else() {
        let p = Poller::new(50);
        p.observe(&owner("a"), &[Polled::Action(ActionId::from("1"))]);
        p.observe(&owner("b"), &[Polled::Action(ActionId::from("2"))]);
        let meta = serde_json::json!({"name": "a", "namespace": "ns"});
        let targets = serde_json::json!({"actionGroup": {"name": "All Computers"}});
        // Another kind's object of the same name is not this owner.
        let tag: TaniumTag = serde_json::from_value(serde_json::json!(
            {"metadata": meta, "spec": {"tags": ["t"], "targets": targets}}
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        p.forget_owner(&tag);
        assert_eq!(p.len(), 2);
        let action: TaniumAction = serde_json::from_value(serde_json::json!(
            {"metadata": meta, "spec": {"package": {"name": "x"}, "targets": targets}}
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        p.forget_owner(&action);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn a_partial_request_is_topped_up_with_the_actions_due_next() {
        let p = Poller::new(3);
        let timing = Timing::default();
        let ids: Vec<Polled> = (0..5)
            .map(|i| Polled::Action(ActionId::from(i.to_string().as_str())))
            .collect();
        p.observe(&owner("a"), &ids);
        let now = jiff::Timestamp::UNIX_EPOCH;
        let answers: HashMap<_, _> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), state(&i.to_string(), 0)))
            .collect();
        p.record(&timing, now, answers);
        let cycle = Duration::from_millis(100);
        assert!(p.due(&timing, cycle).is_empty(), "none due yet");
        // One becomes due: its request has room for two more, which go early.
        if let Ok(mut w) = p.watched.lock() {
            w.get_mut(&ids[4]).unwrap().next_due = Instant::now();
        }
        let due = p.due(&timing, cycle);
        assert_eq!(due.len(), 3);
        assert_eq!(due[0], ids[4]);
    }
}
