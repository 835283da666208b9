//! Crash loops under Gateway faults (HTTP 500s, retryable payload errors, actionPerform committed and its answer
//! dropped, added latency), while TaniumActions arrive:
//!
//! - one operator process SIGKILLed at random moments;
//! - two replicas electing a leader, the leader SIGKILLed again and again (and started anew as a new pod would);
//! - kube-apiserver SIGKILLed and restarted on the same etcd again and again, under one operator process that lives
//!   through it all and must recover its watches and status writes;
//! - two replicas, the leader SIGSTOPped for longer than its lease and the look-up grace at random moments while a
//!   slow Gateway and a small request budget keep reconciles queued between "intent recorded" and
//!   "actionPerform sent", then SIGCONTed after the standby took over.
//!
//! Every committed mutation's answer may fail in each shape Tanium's documentation leaves open (dropped, a
//! retryable payload error, an execution error with a path, HTTP 502 or 504).
//!
//! Every other object names a TaniumConnection to a second sim (the same fleet, its own token, the same faults):
//! the objects are spread over two connections, and each connection's once-only requests ask the same fence.
//!
//! Then one operator runs, the faults stop, and everything is left to settle. From the sims' audits: exactly one
//! actionPerform per object, on the server its connection names and no other, every object Completed, and neither
//! token in any log line, event or status.
//!
//! `TANIUM_CRASH_LOOP_SECONDS` sets how long the killing goes on (default 30; docs/reliability.md's figures come
//! from `TANIUM_CRASH_LOOP_SECONDS=120`), `TANIUM_CRASH_LOOP_SEED` the random seed (printed on every run).

mod common;

use std::time::{Duration, Instant};

use common::{Env, OperatorProcess, TOKEN, committed_for, performs_on, phase};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tanium_operator::controller::Policy;
use tanium_operator::crd::{TaniumAction, TaniumConnection};
use tanium_sim::{AfterCommit, AuditOutcome, Faults, FleetSource, SimConfig, SimServer, TokenUser};

const OBJECTS: usize = 200;
const NAMESPACE: &str = "crash-loop";
/// The second server's token, and the TaniumConnection to it that every odd-numbered object names.
const LAB_TOKEN: &str = "token-crash-loop-lab-5d1e";
const LAB: &str = "lab";
const LEASE_SECONDS: &str = "3";

fn lease_duration() -> Duration {
    Duration::from_secs(LEASE_SECONDS.parse().unwrap_or(3))
}

fn number_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether object `i` goes through the TaniumConnection `lab` (else the operator's own connection).
fn on_lab(i: usize) -> bool {
    i % 2 == 1
}

/// Half the objects target endpoint ids, half a filter; every other one through the `lab` connection.
fn manifest(i: usize, endpoint: &(String, String)) -> TaniumAction {
    let (id, name) = endpoint;
    let targets = match i % 4 {
        0 | 1 => json!({"endpoints": [id]}),
        2 => json!({"filter": {"sensor": {"name": "Computer Name"}, "op": "EQ", "value": name}}),
        _ => json!({"filter": {"filters": [
            {"sensor": {"name": "Computer Name"}, "op": "EQ", "value": name},
            {"sensor": {"name": "Computer Name"}, "op": "EQ", "value": "no-such-host", "negated": true}
        ]}}),
    };
    let mut spec = json!({
        "package": {"name": "Custom Tagging - Add Tags", "params": [format!("crash-{i}")]},
        "targets": targets,
        "schedule": {"distributeSeconds": 60},
    });
    if on_lab(i) {
        spec["connectionRef"] = json!({"kind": "TaniumConnection", "name": LAB});
    }
    serde_json::from_value(json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
        "metadata": {"name": format!("crash-{i:03}")},
        "spec": spec,
    }))
    .expect("a manifest")
}

/// One crash-loop run: the environment, the faults, the workload, and the operator processes' logs.
struct Chaos {
    env: Env,
    /// The second server: the same fleet as `env.sim`, its own token.
    lab: SimServer,
    label: &'static str,
    api: Api<TaniumAction>,
    dir: tempfile::TempDir,
    rng: StdRng,
    loop_for: Duration,
    /// Online endpoints (an offline target would keep an object open until its action expired).
    endpoints: Vec<(String, String)>,
    /// How many objects the run creates.
    objects: usize,
    created: usize,
    spawned: u32,
    kills: u32,
    started: Instant,
}

/// The faults every loop runs under, with the latency given.
fn faults(seed: u64, latency_ms: u64) -> Faults {
    Faults {
        latency_ms,
        http_500_rate: 0.05,
        retryable_error_rate: 0.05,
        drop_after_commit_rate: 0.25,
        drop_operations: vec!["actionPerform".into()],
        after_commit: AfterCommit::ALL.to_vec(),
        seed,
        ..Faults::default()
    }
}

impl Chaos {
    async fn start(label: &'static str) -> Option<Self> {
        Self::start_with(label, OBJECTS, 25).await
    }

    async fn start_with(label: &'static str, objects: usize, latency_ms: u64) -> Option<Self> {
        let env = Env::start(Policy::default(), |_| {}).await?;
        let loop_for = Duration::from_secs(number_from_env("TANIUM_CRASH_LOOP_SECONDS", 30));
        let seed = number_from_env("TANIUM_CRASH_LOOP_SEED", rand::random::<u32>().into());
        println!(
            "{label}: {objects} objects, killing for {loop_for:?}, seed {seed} (TANIUM_CRASH_LOOP_SEED={seed} repeats it)"
        );
        let api = env.namespace(NAMESPACE).await;
        let endpoints: Vec<(String, String)> = env
            .sim
            .sim()
            .online_endpoint_ids()
            .into_iter()
            .filter_map(|id| {
                let spec = env.sim.sim().endpoint(&id)?;
                Some((id, spec.name))
            })
            .collect();
        assert!(endpoints.len() > 50, "{} endpoints online", endpoints.len());
        let lab = tanium_sim::start(SimConfig {
            fleet: FleetSource::Generated { size: 200, seed: 7 },
            tokens: vec![TokenUser::new(LAB_TOKEN, "operator")],
            time_scale: 20.0,
            ..SimConfig::default()
        })
        .await
        .expect("the lab sim starts");
        connect_lab(&env, &lab).await;
        env.sim.sim().set_faults(faults(seed, latency_ms));
        lab.sim()
            .set_faults(faults(seed.wrapping_add(1), latency_ms));
        Some(Self {
            env,
            lab,
            label,
            api,
            dir: tempfile::tempdir().expect("temp dir"),
            rng: StdRng::seed_from_u64(seed),
            loop_for,
            endpoints,
            objects,
            created: 0,
            spawned: 0,
            kills: 0,
            started: Instant::now(),
        })
    }

    fn looping(&self) -> bool {
        self.started.elapsed() < self.loop_for || self.created < self.objects
    }

    /// A new operator process (a new pod: a new name), with `vars` on top of the crash-loop settings.
    fn spawn(&mut self, vars: &[(&str, &str)]) -> OperatorProcess {
        let mut all = vec![
            ("TANIUM_REQUEST_TIMEOUT_SECONDS", "2"),
            ("TANIUM_LOOKUP_GRACE_SECONDS", "6"),
            ("TANIUM_RETRY_HELD_SECONDS", "2"),
            ("RUST_LOG", "info,kube=warn"),
        ];
        all.extend_from_slice(vars);
        self.spawned += 1;
        let name = format!("operator-{}", self.spawned);
        OperatorProcess::spawn(
            &self.env,
            self.env.cp.kubeconfig_path(),
            self.dir.path(),
            &name,
            &all,
        )
    }

    fn kill(&mut self, operator: &mut OperatorProcess) {
        operator.kill();
        self.kills += 1;
    }

    /// The objects due by now, spread over the whole loop, so that creates land in every phase of an operator's
    /// life (and at least one each time, so that the last ones come even if the loop runs long).
    async fn create_wave(&mut self) {
        let share = self.started.elapsed().as_secs_f64() / self.loop_for.as_secs_f64();
        let due = (self.objects as f64 * share.min(1.0)).ceil() as usize;
        let wave = due
            .saturating_sub(self.created)
            .max(1)
            .min(self.objects - self.created);
        for i in self.created..self.created + wave {
            let obj = manifest(i, &self.endpoints[i % self.endpoints.len()]);
            self.api
                .create(&PostParams::default(), &obj)
                .await
                .expect("created");
        }
        self.created += wave;
    }

    fn pause(&mut self, millis: std::ops::RangeInclusive<u64>) -> Duration {
        Duration::from_millis(self.rng.random_range(millis))
    }

    /// Faults off, one operator (`running`, or a new one): every object terminal within a bound, then the
    /// exactly-once (on the right server) and no-token checks.
    async fn settle_and_check(mut self, running: Option<OperatorProcess>) {
        let faulted = self
            .env
            .sim
            .sim()
            .audit()
            .iter()
            .filter(|e| !matches!(e.outcome, AuditOutcome::Ok { .. }))
            .count();
        self.env.sim.sim().set_faults(Faults::default());
        self.lab.sim().set_faults(Faults::default());
        println!(
            "{}: {} kills over {:?}, {faulted} mutations faulted so far; settling",
            self.label,
            self.kills,
            self.started.elapsed()
        );
        let _operator = match running {
            Some(operator) => operator,
            None => self.spawn(&[]),
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        let terminal = |o: &TaniumAction| {
            o.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_terminal())
        };
        let objects = loop {
            let list = self.api.list(&ListParams::default()).await.expect("list");
            let open: Vec<String> = list
                .items
                .iter()
                .filter(|o| !terminal(o))
                .map(|o| {
                    format!(
                        "{} {:?}",
                        o.metadata.name.as_deref().unwrap_or(""),
                        phase(o)
                    )
                })
                .collect();
            if open.is_empty() && list.items.len() == self.objects {
                break list.items;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} objects not terminal 180 s after the last restart: {open:?}",
                open.len(),
                self.objects
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        };

        // Exactly one committed actionPerform per object, on its connection's server, and none for anything else.
        let env = &self.env;
        let (main, lab) = (performs_on(&env.sim), performs_on(&self.lab));
        let mut not_once = Vec::new();
        for obj in &objects {
            let name = obj.metadata.name.as_deref().unwrap_or("");
            let through_lab = obj.spec.connection_ref.is_some();
            let (here, elsewhere) = match through_lab {
                true => (committed_for(&lab, obj), committed_for(&main, obj)),
                false => (committed_for(&main, obj), committed_for(&lab, obj)),
            };
            if here != 1 || elsewhere != 0 {
                not_once.push(format!(
                    "{name}: {here} on its server, {elsewhere} on the other"
                ));
            }
            assert_eq!(
                phase(obj).as_deref(),
                Some("Completed"),
                "{name}: {:#?}",
                obj.status
            );
            let text = serde_json::to_string(obj).unwrap_or_default();
            assert!(!text.contains(TOKEN) && !text.contains(LAB_TOKEN));
        }
        assert!(
            not_once.is_empty(),
            "not deployed exactly once: {not_once:?}"
        );
        let committed: usize = main.values().chain(lab.values()).map(|(c, _)| c).sum();
        assert_eq!(
            committed, self.objects,
            "committed actionPerforms: {main:?} {lab:?}"
        );
        let through_lab = objects
            .iter()
            .filter(|o| o.spec.connection_ref.is_some())
            .count();
        assert_eq!(
            lab.values().map(|(c, _)| c).sum::<usize>(),
            through_lab,
            "the lab server deployed its objects and no other"
        );
        env.assert_exactly_once();

        // The token is in no log line and no event.
        let mut log_lines = 0;
        for entry in std::fs::read_dir(self.dir.path()).expect("logs") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).expect("log");
                assert!(
                    !text.contains(TOKEN) && !text.contains(LAB_TOKEN),
                    "a token is in {}",
                    path.display()
                );
                log_lines += text.lines().count();
            }
        }
        let events: Api<Event> = Api::namespaced(env.client.clone(), NAMESPACE);
        let events = events.list(&ListParams::default()).await.expect("events");
        for e in &events.items {
            let text = serde_json::to_string(e).unwrap_or_default();
            assert!(!text.contains(TOKEN) && !text.contains(LAB_TOKEN));
        }

        let audit: Vec<_> = env
            .sim
            .sim()
            .audit()
            .into_iter()
            .chain(self.lab.sim().audit())
            .collect();
        let dropped = audit
            .iter()
            .filter(|e| matches!(e.outcome, AuditOutcome::Dropped { .. }))
            .count();
        let refused = audit
            .iter()
            .filter(|e| matches!(e.outcome, AuditOutcome::Error { .. }))
            .count();
        let attempts: usize = main.values().chain(lab.values()).map(|(_, a)| a).sum();
        let fenced = self.log_lines_with("once-only mutation not sent");
        println!(
            "{}: {} objects ({through_lab} through a second connection), {} kills, {attempts} actionPerform \
             attempts ({committed} committed, {dropped} answers lost after commit), {refused} mutations refused by \
             injected faults, {fenced} once-only mutations fenced (not sent), {log_lines} log lines and {} events \
             without a token, duplicates: 0",
            self.label,
            self.objects,
            self.kills,
            events.items.len()
        );
    }

    /// Log lines of every operator process of this run that hold `needle`.
    fn log_lines_with(&self, needle: &str) -> usize {
        std::fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .map(|text| text.lines().filter(|l| l.contains(needle)).count())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// A replica of a two-replica election: `vars` on top of the crash-loop settings.
    fn replica(&mut self, vars: &[(&str, &str)]) -> OperatorProcess {
        let mut all = vec![
            ("LEADER_ELECT", "true"),
            ("POD_NAMESPACE", "default"),
            ("LEASE_DURATION_SECONDS", LEASE_SECONDS),
            ("LEASE_GRACE_SECONDS", "1"),
        ];
        all.extend_from_slice(vars);
        self.spawn(&all)
    }

    /// The one replica that leads, once there is exactly one. A leader starved past its lease (two cores, two
    /// operators, an apiserver) may still say it leads when a standby has taken over, until its next renewal
    /// fails: the fence keeps it from sending anything meanwhile. That overlap must end within two lease
    /// durations, never last.
    async fn single_leader(&self, replicas: &[OperatorProcess]) -> usize {
        // Generous: with four loops and their operators on two cores, an election can take long; what this test
        // guards is "never twice", and a leader that never comes is caught all the same.
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut overlap_since: Option<Instant> = None;
        loop {
            let mut leading = Vec::new();
            for (i, r) in replicas.iter().enumerate() {
                if r.leading().await == Some(true) {
                    leading.push(i);
                }
            }
            match leading[..] {
                [i] => return i,
                [] => overlap_since = None,
                _ => {
                    let since = *overlap_since.get_or_insert_with(Instant::now);
                    assert!(
                        since.elapsed() < 2 * lease_duration(),
                        "two leaders at once for {:?}: {leading:?}",
                        since.elapsed()
                    );
                }
            }
            assert!(Instant::now() < deadline, "no single leader for 90 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The `lab` TaniumConnection in the loop's namespace, with its token Secret beside it.
async fn connect_lab(env: &Env, lab: &SimServer) {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "lab-token"}, "stringData": {"token": LAB_TOKEN}
    }))
    .expect("a Secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("Secret created");
    let conns: Api<TaniumConnection> = Api::namespaced(env.client.clone(), NAMESPACE);
    common::create_connection(
        &conns,
        LAB,
        json!({"gatewayUrl": lab.url(), "tokenSecretRef": {"name": "lab-token"}, "requestTimeoutSeconds": 2}),
    )
    .await;
}

#[tokio::test]
async fn sigkill_at_random_under_gateway_faults_deploys_each_object_exactly_once() {
    let Some(mut chaos) = Chaos::start("crash loop").await else {
        return;
    };
    while chaos.looping() {
        let mut operator = chaos.spawn(&[]);
        chaos.create_wave().await;
        let alive = chaos.pause(300..=3000);
        tokio::time::sleep(alive).await;
        chaos.kill(&mut operator);
    }
    chaos.settle_and_check(None).await;
}

#[tokio::test]
async fn the_leader_sigkilled_again_and_again_deploys_each_object_exactly_once() {
    let Some(mut chaos) = Chaos::start("leader loop").await else {
        return;
    };
    let mut replicas = vec![chaos.replica(&[]), chaos.replica(&[])];
    let mut leader_changes = 0;
    while chaos.looping() {
        chaos.create_wave().await;
        // Whoever leads now dies; a new replica takes its place beside the standby, which takes over.
        let leader = chaos.single_leader(&replicas).await;
        let alive = chaos.pause(500..=4000);
        tokio::time::sleep(alive).await;
        let mut dead = replicas.swap_remove(leader);
        chaos.kill(&mut dead);
        leader_changes += 1;
        let fresh = chaos.replica(&[]);
        replicas.push(fresh);
    }
    drop(replicas);
    println!("leader loop: {leader_changes} leaders killed");
    chaos.settle_and_check(None).await;
}

#[tokio::test]
async fn the_apiserver_restarted_again_and_again_loses_and_repeats_nothing() {
    let Some(mut chaos) = Chaos::start("apiserver loop").await else {
        return;
    };
    let operator = chaos.spawn(&[]);
    while chaos.looping() {
        chaos.create_wave().await;
        let up = chaos.pause(1000..=6000);
        tokio::time::sleep(up).await;
        chaos
            .env
            .cp
            .restart_apiserver()
            .await
            .expect("kube-apiserver restarts");
        chaos.kills += 1;
    }
    chaos.settle_and_check(Some(operator)).await;
}

/// The leader frozen (SIGSTOP) for longer than its lease and the look-up grace, at random moments, while a slow
/// Gateway (400 ms a request) and two requests in flight keep reconciles queued between "intent recorded" and
/// "actionPerform sent"; the standby takes over and deploys what it finds; then the old leader resumes. It must
/// send nothing: its last renewal is too old on its own clock, and so is the intent it recorded.
#[tokio::test]
async fn the_leader_paused_past_its_lease_and_the_grace_deploys_each_object_exactly_once() {
    let Some(mut chaos) = Chaos::start_with("pause loop", 60, 400).await else {
        return;
    };
    let vars = [("TANIUM_MAX_CONCURRENT_REQUESTS", "2")];
    let replicas = vec![chaos.replica(&vars), chaos.replica(&vars)];
    let grace = Duration::from_secs(6);
    let mut pauses = 0;
    while chaos.looping() {
        chaos.create_wave().await;
        let leader = chaos.single_leader(&replicas).await;
        // A random moment, often right after a wave, when intents are being recorded.
        let before = chaos.pause(0..=1500);
        tokio::time::sleep(before).await;
        replicas[leader].pause();
        let frozen = lease_duration() + grace + chaos.pause(500..=3000);
        let resume_at = Instant::now() + frozen;
        // Objects keep coming while it is frozen: the standby takes them, and what the frozen one left half done.
        while Instant::now() < resume_at {
            chaos.create_wave().await;
            tokio::time::sleep(Duration::from_millis(500).min(resume_at - Instant::now())).await;
        }
        replicas[leader].resume();
        chaos.kills += 1;
        pauses += 1;
    }
    drop(replicas);
    println!("pause loop: {pauses} leaders paused past lease and grace");
    chaos.settle_and_check(None).await;
}
