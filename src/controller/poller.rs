//! The one results poller for every open action of every object: each cycle it asks for all actions that are due
//! (an instance by id, or a recurring action's newest instance through its scheduled action),
//! up to `batch` per request (aliases in one GraphQL document), so that Gateway requests grow with open actions /
//! batch, not with objects. Each action's interval backs off with its age (fast right after deployment, slower
//! later, capped). An object is woken only when one of its actions changed; terminal objects never register, so
//! they cost no request, also after a restart.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt as _;
use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

use kube::Resource as _;

use super::Timing;
use crate::crd::{TaniumAction, TaniumTag};
use crate::gateway::poll::Polled;
use crate::gateway::{GatewayClient, Read};

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

/// What the poller knows of one action.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    /// The last answer that showed it (never [`Read::Absent`]); `None`: never shown yet.
    pub known: Option<Read>,
    /// How long every answer has been `null` (or an error for its alias), if the latest was.
    pub absent_for: Option<Duration>,
}

/// What the poller last saw of some actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub states: HashMap<Polled, Reading>,
    /// The Gateway's clock, as of the oldest of these answers.
    pub now: jiff::Timestamp,
}

struct Watched {
    owner: Owner,
    /// When it was first watched: the interval grows with the action's age.
    since: Instant,
    next_due: Instant,
    /// The last answer that showed the action: a `null` in between changes nothing known.
    known: Option<Read>,
    /// The Gateway's clock at the last answer of any kind; `None`: not polled yet.
    answered_at: Option<jiff::Timestamp>,
    /// Since when every answer has been `null`.
    absent_since: Option<Instant>,
    /// The owner was woken when the absence reached `Timing::gone_after`.
    absence_reported: bool,
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
    /// Actions per request at most; 1 is the way scripts poll (one request per action).
    batch: usize,
    /// Actions per request now: halved when the Gateway times out, fails (5xx) or refuses a document as too big,
    /// doubled back after a cycle where every request went through.
    size: std::sync::atomic::AtomicUsize,
    /// Actions whose read broke every request it was in, found by splitting: read alone from then on.
    isolated: Mutex<HashSet<Polled>>,
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
            size: std::sync::atomic::AtomicUsize::new(batch.max(1)),
            isolated: Mutex::new(HashSet::new()),
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
                known: None,
                answered_at: None,
                absent_since: None,
                absence_reported: false,
                looked: now,
            });
            w.looked = now;
            match w.answered_at {
                Some(at) => {
                    states.insert(
                        id.clone(),
                        Reading {
                            known: w.known.clone(),
                            absent_for: w.absent_since.map(|since| now.duration_since(since)),
                        },
                    );
                    oldest = Some(oldest.map_or(at, |o| o.min(at)));
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
        if let Ok(mut isolated) = self.isolated.lock() {
            for id in ids {
                isolated.remove(id);
            }
        }
    }

    /// Stop watching whatever `owner` had watched (it left this replica's watch: deleted, or moved to another
    /// shard, whose poller reads them now).
    pub fn forget_owner<K: kube::Resource<DynamicType = ()>>(&self, owner: &K) {
        if let Ok(mut watched) = self.watched.lock() {
            watched.retain(|_, w| !w.owner.is(owner));
            if let Ok(mut isolated) = self.isolated.lock() {
                isolated.retain(|k| watched.contains_key(k));
            }
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
        if let Ok(mut isolated) = self.isolated.lock() {
            isolated.remove(from);
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
        if let Ok(mut isolated) = self.isolated.lock() {
            isolated.retain(|k| watched.contains_key(k));
        }
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
            let size = self.size();
            due.div_ceil(size) * size
        };
        all.into_iter()
            .take(fill.min(watched.len()))
            .map(|(_, id)| id)
            .collect()
    }

    /// Record answers; returns the owners whose actions changed, were answered for the first time, or have been
    /// answered `null` for `Timing::gone_after` (the owner then asks whether they are gone).
    pub(crate) fn record(
        &self,
        timing: &Timing,
        gateway_now: jiff::Timestamp,
        answers: HashMap<Polled, Read>,
    ) -> HashSet<Owner> {
        let mut changed = HashSet::new();
        let Ok(mut watched) = self.watched.lock() else {
            return changed;
        };
        let now = Instant::now();
        for (id, read) in answers {
            let Some(w) = watched.get_mut(&id) else {
                continue;
            };
            w.next_due = now + timing.poll_interval(now.duration_since(w.since));
            let first = w.answered_at.is_none();
            w.answered_at = Some(gateway_now);
            match read {
                Read::Absent => {
                    let since = *w.absent_since.get_or_insert(now);
                    let long = now.duration_since(since) >= timing.gone_after;
                    if first || (long && !std::mem::replace(&mut w.absence_reported, true)) {
                        changed.insert(w.owner.clone());
                    }
                }
                read => {
                    w.absent_since = None;
                    w.absence_reported = false;
                    if first || w.known.as_ref() != Some(&read) {
                        changed.insert(w.owner.clone());
                    }
                    w.known = Some(read);
                }
            }
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

    /// Actions per request now.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed).clamp(1, self.batch)
    }

    /// One poll of `due`, `size` actions per request, a few requests at once. A request the Gateway could not
    /// answer because of its size (a document refused before execution, or a time-out or 5xx while other requests
    /// went through) is split in two and asked again at once, within a budget of requests per cycle; the size
    /// halves for later cycles and grows back by a quarter after a cycle where every request went through. When
    /// nothing goes through, the Gateway is down: nothing is split or shrunk, and `run` pauses. A read that fails
    /// alone is read alone, its failures timed as absence (`Timing::gone_after`), outside all of that. `false` when
    /// any batch failed.
    async fn cycle(&self, gateway: &GatewayClient, timing: &Timing, due: Vec<Polled>) -> bool {
        let size = self.size();
        let isolated = self.isolated.lock().map(|i| i.clone()).unwrap_or_default();
        let (alone, together): (Vec<Polled>, Vec<Polled>) =
            due.into_iter().partition(|p| isolated.contains(p));
        let mut woken = HashSet::new();
        let alone: Vec<_> = futures::stream::iter(alone)
            .map(|p| async move {
                let answer = gateway.poll(std::slice::from_ref(&p), 1).await;
                (p, answer)
            })
            .buffer_unordered(self.parallel)
            .collect()
            .await;
        for (p, answer) in alone {
            match answer {
                Ok((Some(now), states)) => {
                    woken.extend(self.record(timing, now, states));
                    // Fine again: it may share requests again (a split isolates it anew if not).
                    if let Ok(mut i) = self.isolated.lock() {
                        i.remove(&p);
                    }
                }
                Ok((None, _)) => {}
                Err(e) => {
                    tracing::debug!(error = %e, action = ?p, "an isolated read failed again");
                    woken.extend(self.absent(timing, &p));
                    self.postpone(std::slice::from_ref(&p), ERROR_PAUSE * 4);
                }
            }
        }
        let mut pending: Vec<Vec<Polled>> = together.chunks(size).map(<[_]>::to_vec).collect();
        let mut budget = pending.len() * 4 + 4;
        let mut all_ok = true;
        while !pending.is_empty() {
            budget = budget.saturating_sub(pending.len());
            let results: Vec<_> = futures::stream::iter(pending)
                .map(|chunk| async move {
                    let answer = gateway.poll(&chunk, chunk.len()).await;
                    (chunk, answer)
                })
                .buffer_unordered(self.parallel)
                .collect()
                .await;
            let any_through = results.iter().any(|(_, a)| a.is_ok());
            pending = Vec::new();
            for (chunk, answer) in results {
                let e = match answer {
                    Ok((Some(now), states)) => {
                        woken.extend(self.record(timing, now, states));
                        continue;
                    }
                    Ok((None, _)) => continue,
                    Err(e) => e,
                };
                all_ok = false;
                let refused = matches!(e, crate::gateway::GatewayError::GraphQl { .. });
                if !too_big(&e) || !(any_through || refused) || budget < 2 {
                    tracing::warn!(error = %e, actions = chunk.len(), "results poll failed");
                    self.postpone(&chunk, ERROR_PAUSE);
                    continue;
                }
                if chunk.len() == 1 {
                    tracing::warn!(error = %e, action = ?chunk[0], "this action's read fails alone; reading it alone from now on");
                    if let Ok(mut i) = self.isolated.lock() {
                        i.insert(chunk[0].clone());
                    }
                    woken.extend(self.absent(timing, &chunk[0]));
                    self.postpone(&chunk, ERROR_PAUSE);
                    continue;
                }
                let half = chunk.len().div_ceil(2);
                if self.size.fetch_min(half, Ordering::Relaxed) > half {
                    tracing::info!(error = %e, actions = half, "results poll failed for its size; asking fewer actions per request");
                }
                budget = budget.saturating_sub(2);
                pending.push(chunk[..half].to_vec());
                pending.push(chunk[half..].to_vec());
            }
        }
        if all_ok {
            let grown = (size + (size / 4).max(1)).min(self.batch);
            self.size.store(grown, Ordering::Relaxed);
        }
        self.wake(woken);
        all_ok
    }

    /// A read the Gateway cannot answer counts as a `null` for the absence rules.
    fn absent(&self, timing: &Timing, p: &Polled) -> HashSet<Owner> {
        let now = self
            .watched
            .lock()
            .ok()
            .and_then(|w| w.get(p).and_then(|w| w.answered_at))
            .unwrap_or_else(jiff::Timestamp::now);
        self.record(timing, now, HashMap::from([(p.clone(), Read::Absent)]))
    }
}

/// A poll the Gateway may have failed because of its size: a time-out, a 5xx, or a document refused before
/// execution (a complexity or size limit says so with a GraphQL error without a `path`).
fn too_big(e: &crate::gateway::GatewayError) -> bool {
    use crate::gateway::GatewayError as E;
    match e {
        E::NoAnswer { .. } => true,
        E::Http { status, .. } => *status >= 500,
        E::GraphQl { errors, .. } => errors.iter().all(|x| x.path.is_none()),
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gateway::{ActionId, ActionResults, ActionStatus};

    fn owner(name: &str) -> Owner {
        Owner::Action(ObjectRef::new(name).within("ns"))
    }

    /// An open action instance that finished on `completed` endpoints, as a poll reads it.
    pub(crate) fn state(id: &str, completed: u32) -> Read {
        Read::State(crate::gateway::ActionState {
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
        // A null in between is no news: what was known stays, the absence is timed, nobody is woken.
        let null: HashMap<_, _> = [(ids[0].clone(), Read::Absent)].into();
        assert!(p.record(&timing, now, null).is_empty());
        let seen = p.observe(&owner("a"), &ids).unwrap();
        assert_eq!(seen.states[&ids[0]].known, Some(state("1", 3)));
        assert!(seen.states[&ids[0]].absent_for.is_some());
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
