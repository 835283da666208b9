//! `tanium-bench`: hold the operator to its scale and cost targets (docs/performance.md), beside the naive way of polling.
//!
//! One run: a real control plane (etcd + kube-apiserver), tanium-sim with a sped-up clock, and the operator as a
//! separate process (so that its memory and CPU are its own). N TaniumActions are created and followed to the end;
//! figures come from the sim's request log and audit, a watch on the objects, and the operator's /proc entry. The
//! same workload then runs against an operator that polls one action per request (`TANIUM_POLL_BATCH=1`), and the
//! two are printed side by side with a verdict per target.

mod at_rest;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde::Serialize;
use tanium_operator::crd::TaniumAction;
use tanium_sim::{FleetSource, SimConfig, SimServer, TokenUser};
use tanium_testenv::ControlPlane;

const TOKEN: &str = "token-bench-0123456789abcdef";
/// The process's own requests, not work for any object: the readiness probe's `now`, and the one introspection
/// at start that tells what the Gateway offers.
const PROCESS_OPERATIONS: [&str; 2] = ["now", "gatewayFeatures"];

#[derive(Parser, Debug, Clone)]
#[command(
    name = "tanium-bench",
    about = "Scale-and-cost benchmark of tanium-operator"
)]
struct Args {
    /// TaniumActions to create (10000 for the full run).
    #[arg(long, default_value_t = 1000)]
    actions: usize,
    /// Simulated endpoints.
    #[arg(long, default_value_t = 5000)]
    fleet: usize,
    /// Sim seconds per real second.
    #[arg(long, default_value_t = 20.0)]
    time_scale: f64,
    /// Each action's distribution window in sim seconds (keeps it open a while, so that polling shows).
    #[arg(long, default_value_t = 600)]
    distribute_seconds: u64,
    /// The operator binary (default: `tanium-operator` beside this binary).
    #[arg(long, env = "TANIUM_OPERATOR_BIN")]
    operator: Option<PathBuf>,
    /// Skip the naive run.
    #[arg(long)]
    no_naive: bool,
    /// Instead of the naive run, run the same workload against this other operator binary (e.g. one built with
    /// `--features mimalloc`) and print the two side by side: `./scripts/bench --allocator`. With `--at-rest`,
    /// both start in turn on the same finished objects.
    #[arg(long)]
    compare_operator: Option<PathBuf>,
    /// What the other binary is, for the table's header.
    #[arg(long, default_value = "other binary")]
    compare_label: String,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Create this many objects a second instead of all at once (a latency run without queueing).
    #[arg(long)]
    rate: Option<f64>,
    /// Keep the operator's logs under this directory (one folder per run) instead of discarding them.
    #[arg(long)]
    keep_logs: Option<PathBuf>,
    /// The operator's RUST_LOG (e.g. `tanium_operator=debug` with --keep-logs, to see where a deploy's time goes).
    #[arg(long, default_value = "warn")]
    operator_log_level: String,
    /// Run the operator under this command (split on spaces; the operator's command line follows it), to profile
    /// it: `heaptrack -o DIR/heap` or `perf record -e cpu-clock -F 499 -o DIR/perf.data --`. Figures are still
    /// taken from the operator's own process, which the wrapper slows down.
    #[arg(long)]
    operator_wrapper: Option<String>,
    /// Instead of the burst: this many TaniumActions already over (100000 for the target), then one operator
    /// starts, lists and watches them; its peak RSS and the Gateway requests it makes (none).
    #[arg(long)]
    at_rest: Option<usize>,
    /// Every object names a TaniumConnection (to the same sim, its token in a Secret) instead of using the
    /// operator's own connection: the same figures through a connection object.
    #[arg(long)]
    through_connection: bool,
    /// Give up on a run after this long.
    #[arg(long, default_value_t = 1800)]
    timeout_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("control plane: {0}")]
    ControlPlane(#[from] tanium_testenv::Error),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("sim: {0}")]
    Sim(String),
    #[error("operator: {0}")]
    Operator(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("watch: {0}")]
    Watch(#[from] watcher::Error),
}

/// A TaniumConnection named `bench` in `namespace` to `sim`, with its token in a Secret beside it, once Ready: the
/// name objects give in `spec.connectionRef`.
async fn connect(
    client: &kube::Client,
    namespace: &str,
    sim: &SimServer,
) -> Result<String, BenchError> {
    use k8s_openapi::api::core::v1::Secret;
    use tanium_operator::crd::TaniumConnection;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench-token"}, "stringData": {"token": TOKEN}
    }))?;
    secrets.create(&PostParams::default(), &secret).await?;
    let conns: Api<TaniumConnection> = Api::namespaced(client.clone(), namespace);
    let conn: TaniumConnection = serde_json::from_value(serde_json::json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumConnection",
        "metadata": {"name": "bench"},
        "spec": {"gatewayUrl": sim.url(), "tokenSecretRef": {"name": "bench-token"}}
    }))?;
    conns.create(&PostParams::default(), &conn).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = conns.get("bench").await?.status.is_some_and(|s| {
            tanium_operator::crd::condition(&s.conditions, "Ready")
                .is_some_and(|c| c.status == "True")
        });
        if ready {
            return Ok("bench".into());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Timeout(
                "the bench TaniumConnection to be Ready".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Figures {
    run: String,
    /// Which connection the objects used: `own`, or the TaniumConnection's name (`--through-connection`).
    connection: String,
    poll_batch: usize,
    actions: usize,
    completed: usize,
    /// apply (the create call) → actionPerform at the Gateway, milliseconds.
    apply_to_perform_ms: Percentiles,
    /// Gateway requests of the deploy path (preview, packages, perform, look-ups) per deployed object.
    gateway_requests_per_deploy: f64,
    /// Writes to each object after its create (finalizer and status), from a watch: per object.
    writes_per_object: f64,
    /// The burst's deploys per second: objects performed / (last actionPerform − first create).
    deploys_per_s: f64,
    /// Events the operator published per object, counted in the namespace at the end.
    events_per_object: f64,
    /// What the apiserver took, measured in the same run before the operator started: probe objects created,
    /// given a finalizer and a status as fast as it answers (writes per second).
    apiserver_writes_per_s: f64,
    /// First create → every object terminal, seconds.
    time_to_all_done_s: f64,
    /// Poll requests (documents asking for `action`), and the action reads they carried.
    poll_requests: u64,
    actions_polled: u64,
    /// Poll requests per 50 action reads (each cycle reads each open action once).
    poll_requests_per_50_open_per_cycle: f64,
    /// Poll cycles seen (requests closer than a second to each other belong to one cycle), and the requests
    /// beyond ⌈reads in the cycle / batch⌉ across all of them: 0 when every cycle used as few requests as it could.
    poll_cycles: u64,
    poll_requests_beyond_minimum: u64,
    /// Gateway requests per minute by operation, while actions were open.
    requests_per_minute: BTreeMap<String, f64>,
    peak_rss_mib: f64,
    cpu_seconds: f64,
    /// Gateway requests (other than the readiness probe) in the first seconds after a restart, all objects
    /// terminal.
    requests_after_restart: u64,
    restart_window_s: f64,
    /// Round trips measured directly, milliseconds (medians): the floor an apply → perform cannot beat.
    floor: Floor,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Floor {
    /// From the create call to the watch event that tells the operator (latency is timed from the same point).
    create_and_watch_event_ms: f64,
    finalizer_write_ms: f64,
    /// The intent, in status (a merge patch: the cheapest write there is).
    status_write_ms: f64,
    gateway_endpoints_ms: f64,
    /// The look-up by name before an object's first deployment (a re-created object adopts what it finds).
    gateway_lookup_ms: f64,
    gateway_perform_ms: f64,
    /// All of the above: what one apply → perform needs when nothing waits.
    sum_ms: f64,
}

/// Samples per floor figure (the median is kept).
const ROUNDS: usize = 7;

/// Writes to the apiserver an object needs before its actionPerform: its create, the finalizer, the intent.
const WRITES_BEFORE_PERFORM: f64 = 3.0;

/// Concurrent writers of the throughput probe: enough to keep the apiserver busy on two cores.
const PROBE_WRITERS: usize = 64;

fn percentiles(mut xs: Vec<f64>) -> Percentiles {
    if xs.is_empty() {
        return Percentiles::default();
    }
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    }
}

fn median(xs: Vec<f64>) -> f64 {
    percentiles(xs).p50
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match bench(&args).await {
        Ok(met) if met => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tanium-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// `Ok(true)` when every target was met.
async fn bench(args: &Args) -> Result<bool, BenchError> {
    let operator = match &args.operator {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("tanium-operator"))
            .ok_or_else(|| BenchError::Operator("cannot locate the operator binary".into()))?,
    };
    if !operator.is_file() {
        return Err(BenchError::Operator(format!(
            "{} not found (build it: cargo build --release -p tanium-operator, or pass --operator)",
            operator.display()
        )));
    }
    eprintln!("starting the control plane…");
    let cp = ControlPlane::start().await?;
    install_crds(&cp.client()).await?;
    if let Some(n) = args.at_rest {
        let mut operators = vec![&operator];
        let mut labels = vec!["ours"];
        if let Some(other) = &args.compare_operator {
            operators.push(other);
            labels.push(&args.compare_label);
        }
        let figures = at_rest::run(&cp, args, &operators, n).await?;
        let met = at_rest::report(&figures, &labels);
        if let Some(path) = &args.json {
            let all = serde_json::json!({
                "atRest": figures.first(), "other": figures.get(1), "allTargetsMet": met
            });
            std::fs::write(path, serde_json::to_vec_pretty(&all)?)?;
        }
        return Ok(met);
    }
    let ours = run(&cp, args, &operator, "ours", 50).await?;
    if let Some(other) = &args.compare_operator {
        let theirs = run(&cp, args, other, "other", 50).await?;
        let met = report(args, &ours, Beside::Other(&theirs));
        if let Some(path) = &args.json {
            let all = serde_json::json!({"ours": ours, "other": theirs, "allTargetsMet": met});
            std::fs::write(path, serde_json::to_vec_pretty(&all)?)?;
        }
        return Ok(met);
    }
    let naive = if args.no_naive {
        None
    } else {
        Some(run(&cp, args, &operator, "naive", 1).await?)
    };
    let met = report(
        args,
        &ours,
        naive.as_ref().map_or(Beside::Nothing, Beside::Naive),
    );
    if let Some(path) = &args.json {
        let all = serde_json::json!({"ours": ours, "naive": naive, "allTargetsMet": met});
        std::fs::write(path, serde_json::to_vec_pretty(&all)?)?;
    }
    Ok(met)
}

/// The simulated Gateway a run speaks to: the fleet and clock the arguments say, the bench's token.
async fn start_sim(args: &Args) -> Result<SimServer, BenchError> {
    tanium_sim::start(SimConfig {
        fleet: FleetSource::Generated {
            size: args.fleet,
            seed: 7,
        },
        tokens: vec![TokenUser::new(TOKEN, "bench")],
        time_scale: args.time_scale,
        ..SimConfig::default()
    })
    .await
    .map_err(|e| BenchError::Sim(e.to_string()))
}

async fn install_crds(client: &kube::Client) -> Result<(), BenchError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in tanium_operator::crd::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply("tanium-bench").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        let established = kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(60), established)
            .await
            .map_err(|_| BenchError::Timeout(format!("CRD {name} established")))?
            .map_err(|e| BenchError::Operator(e.to_string()))?;
    }
    Ok(())
}

/// The operator process, with its log in a file.
struct Operator {
    /// The operator's process, or the wrapper it runs under.
    child: tokio::process::Child,
    /// The operator's own process.
    pid: u32,
    /// Base URL of its `/metrics` and `/readyz`.
    metrics: String,
}

/// How this run starts its operator (twice: once, and again for the restart).
struct Launch<'a> {
    binary: &'a PathBuf,
    cp: &'a ControlPlane,
    sim: &'a SimServer,
    /// The token file and the operator's logs.
    dir: PathBuf,
    namespace: &'a str,
    batch: usize,
    log_level: &'a str,
    /// A command the operator runs under (a profiler), e.g. `heaptrack -o FILE`.
    wrapper: Vec<String>,
    /// How long it may take to become ready (to list every object).
    ready_within: Duration,
}

impl Launch<'_> {
    /// The operator, under the wrapper when `wrapped` (the restart runs without it, so that the profile is the
    /// workload's).
    async fn start(&self, log: &str, wrapped: bool) -> Result<Operator, BenchError> {
        let wrapper: &[String] = if wrapped { &self.wrapper } else { &[] };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let token = self.dir.join("token");
        std::fs::write(&token, TOKEN)?;
        let log = std::fs::File::create(self.dir.join(log))?;
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = tokio::process::Command::new(program);
                c.args(args).arg(self.binary);
                c
            }
            None => tokio::process::Command::new(self.binary),
        };
        let mut child = command
            .arg("run")
            .env("KUBECONFIG", self.cp.kubeconfig_path())
            .env("TANIUM_GATEWAY_URL", self.sim.url())
            .env("TANIUM_TOKEN_FILE", &token)
            .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("WATCH_NAMESPACE", self.namespace)
            .env("TANIUM_POLL_BATCH", self.batch.to_string())
            .env("RUST_LOG", self.log_level)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let metrics = format!("http://127.0.0.1:{port}");
        wait_ready(&metrics, self.ready_within).await?;
        // Under a wrapper (a profiler), the operator is the wrapper's descendant running our binary.
        let pid = match (wrapper.is_empty(), child.id()) {
            (true, pid) => pid,
            (false, Some(root)) => descendant_running(root, self.binary),
            (false, None) => None,
        };
        let Some(pid) = pid else {
            let _ = child.start_kill();
            return Err(BenchError::Operator(
                "cannot find the operator's process".into(),
            ));
        };
        Ok(Operator {
            child,
            pid,
            metrics,
        })
    }
}

async fn wait_ready(metrics: &str, within: Duration) -> Result<(), BenchError> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        let ok = http
            .get(format!("{metrics}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Timeout("operator /readyz".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The process under `root` (itself included) whose executable is `binary`, from /proc.
fn descendant_running(root: u32, binary: &std::path::Path) -> Option<u32> {
    let binary = std::fs::canonicalize(binary).ok()?;
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let descends = |mut pid: u32| {
        for _ in 0..16 {
            if pid == root {
                return true;
            }
            match parent_of(pid) {
                Some(p) if p > 1 => pid = p,
                _ => return false,
            }
        }
        false
    };
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary)
                && descends(*pid)
        })
}

impl Operator {
    /// SIGTERM, then wait for it to exit.
    async fn stop(mut self) -> Result<(), BenchError> {
        let _ = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        // A wrapper (a profiler) may take a while to write its report once the operator is gone.
        if tokio::time::timeout(Duration::from_secs(300), self.child.wait())
            .await
            .is_err()
        {
            self.child.start_kill()?;
        }
        Ok(())
    }
}

/// Peak and current resident memory and CPU time of a process, from /proc.
fn proc_figures(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let ticks: f64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse::<f64>().ok())
                .sum()
        })
        .unwrap_or(0.0);
    (
        kib("VmHWM:") / 1024.0,
        kib("VmRSS:") / 1024.0,
        ticks / clock_ticks(),
    )
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Objects seen by a watch: writes per object and when each became terminal.
#[derive(Default)]
struct Seen {
    writes: HashMap<String, u64>,
    done: HashMap<String, Instant>,
}

async fn run(
    cp: &ControlPlane,
    args: &Args,
    operator: &PathBuf,
    name: &str,
    batch: usize,
) -> Result<Figures, BenchError> {
    eprintln!(
        "[{name}] {} TaniumActions, fleet {}, poll batch {batch}",
        args.actions, args.fleet
    );
    let sim = start_sim(args).await?;
    let client = cp.client();
    let namespace = format!("bench-{name}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let floor = measure_floor(&client, &namespace, &sim).await?;
    let apiserver_writes_per_s =
        measure_write_throughput(&client, &namespace, args.actions.clamp(200, 2000)).await?;
    let tmp = tempfile::tempdir()?;
    let dir = match &args.keep_logs {
        Some(keep) => {
            let dir = keep.join(name);
            std::fs::create_dir_all(&dir)?;
            dir
        }
        None => tmp.path().to_owned(),
    };
    let launch = Launch {
        binary: operator,
        cp,
        sim: &sim,
        dir,
        namespace: &namespace,
        batch,
        log_level: &args.operator_log_level,
        wrapper: args
            .operator_wrapper
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        ready_within: Duration::from_secs(120),
    };
    let mut op = launch.start("operator.log", true).await?;
    let pid = op.pid;
    let connection = match args.through_connection {
        true => Some(connect(&client, &namespace, &sim).await?),
        false => None,
    };
    let requests_before = sim.sim().requests().len();

    // Watch the objects: every write, and when each is over.
    let api: Api<TaniumAction> = Api::namespaced(client.clone(), &namespace);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watch = {
        let seen = seen.clone();
        let api = api.clone();
        let (listed, is_listed) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            let mut listed = Some(listed);
            while let Ok(Some(event)) = events.try_next().await {
                if matches!(event, watcher::Event::InitDone)
                    && let Some(tell) = listed.take()
                {
                    let _ = tell.send(());
                }
                let watcher::Event::Apply(obj) = event else {
                    continue;
                };
                let Some(name) = obj.metadata.name.clone() else {
                    continue;
                };
                let terminal = obj
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p.is_terminal());
                if let Ok(mut s) = seen.lock() {
                    *s.writes.entry(name.clone()).or_insert(0) += 1;
                    if terminal {
                        s.done.entry(name).or_insert_with(Instant::now);
                    }
                }
            }
        });
        // Every create must reach the watch as one (the writes after it are counted from there).
        tokio::time::timeout(Duration::from_secs(60), is_listed)
            .await
            .map_err(|_| BenchError::Timeout("the objects' watch to list".into()))?
            .map_err(|_| BenchError::Timeout("the objects' watch ended".into()))?;
        task
    };
    let peak_sampled = Arc::new(Mutex::new(0.0_f64));
    let sampler = {
        let peak = peak_sampled.clone();
        tokio::spawn(async move {
            loop {
                let (_, rss, _) = proc_figures(pid);
                if let Ok(mut p) = peak.lock() {
                    *p = p.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Apply, many at once as a GitOps sync would.
    let started = Instant::now();
    let endpoints = endpoint_ids(&sim);
    let created: Vec<(String, jiff::Timestamp)> = futures::stream::iter(0..args.actions)
        .map(|i| {
            let api = api.clone();
            let target = endpoints[i % endpoints.len()].clone();
            let distribute = args.distribute_seconds;
            let connection = connection.clone();
            let slot = args
                .rate
                .filter(|r| *r > 0.0)
                .map(|r| started + Duration::from_secs_f64(i as f64 / r));
            async move {
                if let Some(slot) = slot {
                    tokio::time::sleep_until(slot.into()).await;
                }
                let mut spec = serde_json::json!({
                    "package": {"name": "Custom Tagging - Add Tags", "params": ["bench"]},
                    "targets": {"endpoints": [target]},
                    "schedule": {"distributeSeconds": distribute}
                });
                if let Some(name) = connection {
                    spec["connectionRef"] =
                        serde_json::json!({"kind": "TaniumConnection", "name": name});
                }
                let obj: TaniumAction = serde_json::from_value(serde_json::json!({
                    "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
                    "metadata": {"name": format!("bench-{i:05}")},
                    "spec": spec
                }))?;
                let at = jiff::Timestamp::now();
                let made = api.create(&PostParams::default(), &obj).await?;
                Ok::<_, BenchError>((made.metadata.name.unwrap_or_default(), at))
            }
        })
        .buffer_unordered(if args.rate.is_some() { 1024 } else { 32 })
        .try_collect()
        .await?;
    eprintln!(
        "[{name}] created {} objects in {:.1}s",
        created.len(),
        started.elapsed().as_secs_f64()
    );

    // Until every object is over.
    let deadline = started + Duration::from_secs(args.timeout_seconds);
    loop {
        let done = seen.lock().map(|s| s.done.len()).unwrap_or(0);
        if done >= args.actions {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Timeout(format!(
                "[{name}] {done} of {} objects terminal",
                args.actions
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_done = seen
        .lock()
        .ok()
        .and_then(|s| s.done.values().max().copied())
        .unwrap_or_else(Instant::now);
    let (peak_rss, _, cpu) = proc_figures(pid);
    let peak_rss = peak_rss.max(peak_sampled.lock().map(|p| *p).unwrap_or(0.0));
    eprintln!(
        "[{name}] all terminal after {:.1}s",
        all_done.duration_since(started).as_secs_f64()
    );

    // The Gateway's side of it.
    let requests = sim.sim().requests();
    let requests = &requests[requests_before.min(requests.len())..];
    let audit = sim.sim().audit();
    let by_name: HashMap<&str, (&str, jiff::Timestamp)> = created
        .iter()
        .map(|(name, at)| (name.as_str(), (name.as_str(), *at)))
        .collect();
    let mut latencies = Vec::new();
    let mut timeline = String::from("object\tcreate_called\taction_performed\tms\n");
    let mut first_perform: Option<jiff::Timestamp> = None;
    let mut last_perform: Option<jiff::Timestamp> = None;
    for entry in audit.iter().filter(|e| e.operation == "actionPerform") {
        // The operator names each action "<namespace>/<name> [<digest of the manifest>]".
        let found = entry
            .input
            .pointer("/input/name")
            .and_then(|n| n.as_str())
            .and_then(|n| n.split_once(" [").map(|(prefix, _)| prefix))
            .and_then(|prefix| prefix.rsplit_once('/').map(|(_, name)| name))
            .and_then(|name| by_name.get(name));
        if let Some((name, at)) = found {
            let ms = entry.wall.duration_since(*at).as_secs_f64() * 1000.0;
            latencies.push(ms);
            timeline.push_str(&format!("{name}\t{at}\t{}\t{ms:.1}\n", entry.wall));
            first_perform = Some(first_perform.map_or(entry.wall, |f| f.min(entry.wall)));
            last_perform = Some(last_perform.map_or(entry.wall, |l| l.max(entry.wall)));
        }
    }
    if args.keep_logs.is_some() {
        std::fs::write(launch.dir.join("deploys.tsv"), timeline)?;
    }
    // A poll read is an instance by id, or a scheduled action's newest instance (`gateway::poll::Polled`).
    let reads_in = |r: &tanium_sim::RequestRecord| {
        ["action", "scheduledAction"]
            .iter()
            .map(|f| u64::from(r.fields.get(*f).copied().unwrap_or(0)))
            .sum::<u64>()
    };
    let is_poll = |r: &tanium_sim::RequestRecord| {
        r.operation_name.as_deref() == Some("pollActions") || r.fields.contains_key("action")
    };
    let is_readiness = |r: &tanium_sim::RequestRecord| {
        r.operation_name
            .as_deref()
            .is_some_and(|op| PROCESS_OPERATIONS.contains(&op))
    };
    let polls: Vec<&tanium_sim::RequestRecord> = requests.iter().filter(|r| is_poll(r)).collect();
    let actions_polled: u64 = polls.iter().map(|r| reads_in(r)).sum();
    let (poll_cycles, beyond) = {
        let mut cycles: Vec<(u64, u64)> = Vec::new();
        let mut last: Option<jiff::Timestamp> = None;
        for r in &polls {
            let reads = reads_in(r);
            let new_cycle = last.is_none_or(|l| r.wall.duration_since(l).as_secs_f64() > 1.0);
            if new_cycle {
                cycles.push((0, 0));
            }
            if let Some(c) = cycles.last_mut() {
                c.0 += 1;
                c.1 += reads;
            }
            last = Some(r.wall);
        }
        let beyond: u64 = cycles
            .iter()
            .map(|(requests, reads)| requests.saturating_sub(reads.div_ceil(batch as u64)))
            .sum();
        (cycles.len() as u64, beyond)
    };
    let deploy_path = requests
        .iter()
        .filter(|r| !is_poll(r) && !is_readiness(r))
        .count();
    let window_start = first_perform.unwrap_or_else(jiff::Timestamp::now);
    let window_end = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::try_from(all_done.elapsed()).unwrap_or_default())
        .unwrap_or(window_start);
    let minutes = (window_end.duration_since(window_start).as_secs_f64() / 60.0).max(1.0 / 60.0);
    let mut per_minute: BTreeMap<String, f64> = BTreeMap::new();
    for r in requests
        .iter()
        .filter(|r| r.wall >= window_start && r.wall <= window_end)
    {
        let op = r
            .operation_name
            .clone()
            .unwrap_or_else(|| "(anonymous)".into());
        *per_minute.entry(op).or_insert(0.0) += 1.0 / minutes;
    }
    // The first version a watch sees of an object is its create.
    let writes: u64 = seen
        .lock()
        .map(|s| s.writes.values().map(|w| w.saturating_sub(1)).sum())
        .unwrap_or(0);
    let first_create = created.iter().map(|(_, at)| *at).min();
    let deploys_per_s = match (first_create, last_perform) {
        (Some(from), Some(to)) => {
            latencies.len() as f64 / to.duration_since(from).as_secs_f64().max(1e-3)
        }
        _ => 0.0,
    };

    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), &namespace);
    let events_published = events
        .list_metadata(&kube::api::ListParams::default())
        .await?
        .items
        .len();

    // A restart with every object over: no Gateway request for any of them.
    op.stop().await?;
    let before_restart = sim.sim().requests().len();
    let restarted = Instant::now();
    op = launch.start("operator-restarted.log", false).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after_restart = sim.sim().requests()[before_restart..]
        .iter()
        .filter(|r| !is_readiness(r))
        .count() as u64;
    let restart_window_s = restarted.elapsed().as_secs_f64();
    op.stop().await?;
    watch.abort();
    sampler.abort();
    sim.shutdown().await;

    let n = args.actions.max(1) as f64;
    Ok(Figures {
        run: name.into(),
        connection: connection.clone().unwrap_or_else(|| "own".into()),
        poll_batch: batch,
        actions: args.actions,
        completed: seen.lock().map(|s| s.done.len()).unwrap_or(0),
        apply_to_perform_ms: percentiles(latencies),
        gateway_requests_per_deploy: deploy_path as f64 / n,
        writes_per_object: writes as f64 / n,
        deploys_per_s,
        events_per_object: events_published as f64 / n,
        apiserver_writes_per_s,
        time_to_all_done_s: all_done.duration_since(started).as_secs_f64(),
        poll_requests: polls.len() as u64,
        actions_polled,
        poll_requests_per_50_open_per_cycle: if actions_polled == 0 {
            0.0
        } else {
            50.0 * polls.len() as f64 / actions_polled as f64
        },
        poll_cycles,
        poll_requests_beyond_minimum: beyond,
        requests_per_minute: per_minute,
        peak_rss_mib: peak_rss,
        cpu_seconds: cpu,
        requests_after_restart: after_restart,
        restart_window_s,
        floor,
    })
}

/// Ids of the endpoints online (an action for an offline one would wait for it until it expires).
fn endpoint_ids(sim: &SimServer) -> Vec<String> {
    sim.sim().online_endpoint_ids()
}

/// The round trips an apply → perform cannot avoid, timed directly on probe TaniumActions before the operator
/// starts: the create and its watch event (the operator cannot act sooner), the finalizer write and the intent
/// write to the object (both must be durable before the side effect), the preview and actionPerform.
async fn measure_floor(
    client: &kube::Client,
    namespace: &str,
    sim: &SimServer,
) -> Result<Floor, BenchError> {
    let api: Api<TaniumAction> = Api::namespaced(client.clone(), namespace);
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    // The watch is open once its initial list is over.
    while let Some(event) = events.try_next().await? {
        if matches!(event, watcher::Event::InitDone) {
            break;
        }
    }
    let (mut seen, mut finalizer, mut status) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let name = format!("floor-probe-{i}");
        let probe: TaniumAction = serde_json::from_value(serde_json::json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
            "metadata": {"name": name},
            "spec": {
                "package": {"name": "Custom Tagging - Add Tags", "params": ["rtt"]},
                "targets": {"endpoints": ["probe"]}
            }
        }))?;
        let at = Instant::now();
        api.create(&PostParams::default(), &probe).await?;
        loop {
            match events.try_next().await? {
                Some(watcher::Event::Apply(obj)) if obj.metadata.name.as_deref() == Some(&name) => {
                    break;
                }
                Some(_) => {}
                None => return Err(BenchError::Timeout("the probe watch ended".into())),
            }
        }
        seen.push(at.elapsed().as_secs_f64() * 1000.0);

        let at = Instant::now();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": ["bench/probe"]}})),
        )
        .await?;
        finalizer.push(at.elapsed().as_secs_f64() * 1000.0);

        let at = Instant::now();
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"phase": "Deploying"}})),
        )
        .await?;
        status.push(at.elapsed().as_secs_f64() * 1000.0);

        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await?;
        api.delete(&name, &Default::default()).await?;
    }
    drop(events);

    let gateway =
        tanium_operator::gateway::GatewayClient::new(tanium_operator::gateway::GatewayConfig::new(
            sim.url(),
            secrecy::SecretString::from(TOKEN.to_owned()),
        ))
        .map_err(|e| BenchError::Sim(e.to_string()))?;
    let ids = endpoint_ids(sim);
    let mut endpoints = Vec::new();
    let mut lookup = Vec::new();
    let mut perform = Vec::new();
    for i in 0..ROUNDS {
        let target = tanium_operator::gateway::EndpointId(ids[i % ids.len()].clone());
        let query = tanium_operator::gateway::EndpointQuery {
            ids: vec![target.clone()],
            page_size: 10,
            ..Default::default()
        };
        let at = Instant::now();
        gateway
            .endpoints_page(&query, None)
            .await
            .map_err(|e| BenchError::Sim(e.to_string()))?;
        endpoints.push(at.elapsed().as_secs_f64() * 1000.0);
        use tanium_operator::gateway::{GroupRef, PackageRef, PerformRequest, Target, Targets};
        let request = PerformRequest {
            name: format!("bench-rtt-{i}"),
            comment: String::new(),
            package: PackageRef {
                id: None,
                name: Some("Custom Tagging - Add Tags".into()),
                params: vec!["rtt".into()],
                sensor_sourced_params: Vec::new(),
            },
            targets: Targets {
                action_group: GroupRef {
                    id: None,
                    name: Some("All Computers".into()),
                },
                target: Target::Endpoints(vec![target]),
                platforms: Vec::new(),
            },
            schedule: Default::default(),
        };
        let at = Instant::now();
        gateway
            .find_scheduled_actions(&request.name)
            .await
            .map_err(|e| BenchError::Sim(e.to_string()))?;
        lookup.push(at.elapsed().as_secs_f64() * 1000.0);
        let at = Instant::now();
        gateway
            .perform(&request)
            .await
            .map_err(|e| BenchError::Sim(e.to_string()))?;
        perform.push(at.elapsed().as_secs_f64() * 1000.0);
    }
    let floor = Floor {
        create_and_watch_event_ms: median(seen),
        finalizer_write_ms: median(finalizer),
        status_write_ms: median(status),
        gateway_endpoints_ms: median(endpoints),
        gateway_lookup_ms: median(lookup),
        gateway_perform_ms: median(perform),
        sum_ms: 0.0,
    };
    Ok(Floor {
        sum_ms: floor.create_and_watch_event_ms
            + floor.finalizer_write_ms
            + floor.status_write_ms
            + floor.gateway_endpoints_ms
            + floor.gateway_lookup_ms
            + floor.gateway_perform_ms,
        ..floor
    })
}

/// The apiserver's write throughput for the writes an object needs before its deploy: `n` probe TaniumActions
/// each created, given a finalizer and a status, by many writers at once, as fast as it answers. Measured before
/// the operator starts (the probes are gone by then), on the same control plane as the burst.
async fn measure_write_throughput(
    client: &kube::Client,
    namespace: &str,
    n: usize,
) -> Result<f64, BenchError> {
    let api: Api<TaniumAction> = Api::namespaced(client.clone(), namespace);
    let name = |i: usize| format!("write-probe-{i:05}");
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let probe: TaniumAction = serde_json::from_value(serde_json::json!({
                    "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
                    "metadata": {"name": name(i)},
                    "spec": {
                        "package": {"name": "Custom Tagging - Add Tags", "params": ["rtt"]},
                        "targets": {"endpoints": ["probe"]}
                    }
                }))?;
                api.create(&PostParams::default(), &probe).await?;
                api.patch(
                    &name(i),
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"metadata": {"finalizers": ["bench/probe"]}})),
                )
                .await?;
                // As the operator writes an intent: server-side apply of a whole status with its preview.
                api.patch_status(
                    &name(i),
                    &PatchParams::apply("bench-probe").force(),
                    &Patch::Apply(intent_like_status(i)),
                )
                .await?;
                Ok::<_, BenchError>(())
            }
        })
        .buffer_unordered(PROBE_WRITERS)
        .try_collect::<Vec<()>>()
        .await?;
    let per_s = n as f64 * WRITES_BEFORE_PERFORM / started.elapsed().as_secs_f64().max(1e-3);
    // Gone before the operator starts: it must not see them.
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                api.patch(
                    &name(i),
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
                )
                .await?;
                api.delete(&name(i), &Default::default()).await?;
                Ok::<_, BenchError>(())
            }
        })
        .buffer_unordered(PROBE_WRITERS)
        .try_collect::<Vec<()>>()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !api
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await?
        .items
        .is_empty()
    {
        if Instant::now() > deadline {
            return Err(BenchError::Timeout("write probes deleted".into()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("apiserver: {per_s:.0} writes/s ({n} probes × 3 writes, {PROBE_WRITERS} writers)");
    Ok(per_s)
}

/// What the second column holds.
#[derive(Clone, Copy)]
enum Beside<'a> {
    Nothing,
    /// The same binary polling one action per request.
    Naive(&'a Figures),
    /// Another binary (`--compare-operator`), same settings.
    Other(&'a Figures),
}

/// A status the size and shape of an intent write: phase, preview with a sample, the action's name, two conditions.
fn intent_like_status(i: usize) -> serde_json::Value {
    let now = jiff::Timestamp::now().to_string();
    let condition = |type_: &str, reason: &str, message: &str| {
        serde_json::json!({"type": type_, "status": if type_ == "Ready" { "False" } else { "True" },
            "reason": reason, "message": message, "lastTransitionTime": now, "observedGeneration": 1})
    };
    serde_json::json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
        "status": {
            "phase": "Deploying", "observedGeneration": 1,
            "preview": {"count": 1, "source": "Live", "sourceReason": "the targets name endpoints by id",
                "answered": 1, "expected": 1, "sample": [{"id": format!("{}", 1_000_001 + i), "name": format!("host-{i:06}")}],
                "digest": format!("sha256:{:016x}", i), "observedAt": now},
            "package": {"id": "101", "name": "Custom Tagging - Add Tags"},
            "actionName": format!("bench/write-probe-{i:05} [{:016x}]", i), "deployAttemptedAt": now,
            "conditions": [
                condition("Ready", "Deploying", "deploying through actionPerform"),
                condition("Previewed", "Previewed", "1 endpoint(s) match; digest sha256:0123456789abcdef"),
            ],
        }
    })
}

/// The table, the ratio and a verdict per target. `true` when every target was met.
fn report(args: &Args, ours: &Figures, beside: Beside<'_>) -> bool {
    let (second, second_label) = match beside {
        Beside::Nothing => (None, "-".to_owned()),
        Beside::Naive(f) => (Some(f), "naive (batch 1)".to_owned()),
        Beside::Other(f) => (Some(f), args.compare_label.clone()),
    };
    let naive = match beside {
        Beside::Naive(f) => Some(f),
        _ => None,
    };
    let col =
        |f: &dyn Fn(&Figures) -> String| (f(ours), second.map(f).unwrap_or_else(|| "-".into()));
    let rows: Vec<(&str, (String, String))> = vec![
        (
            "objects completed",
            col(&|f| format!("{}/{}", f.completed, f.actions)),
        ),
        (
            "apply → actionPerform p50 (ms)",
            col(&|f| format!("{:.0}", f.apply_to_perform_ms.p50)),
        ),
        (
            "apply → actionPerform p95 (ms)",
            col(&|f| format!("{:.0}", f.apply_to_perform_ms.p95)),
        ),
        (
            "apply → actionPerform p99 (ms)",
            col(&|f| format!("{:.0}", f.apply_to_perform_ms.p99)),
        ),
        (
            "Gateway requests per deploy",
            col(&|f| format!("{:.2}", f.gateway_requests_per_deploy)),
        ),
        (
            "writes per object after its create",
            col(&|f| format!("{:.2}", f.writes_per_object)),
        ),
        (
            "apiserver writes/s (probe, same run)",
            col(&|f| format!("{:.0}", f.apiserver_writes_per_s)),
        ),
        (
            "deploys/s (burst)",
            col(&|f| format!("{:.1}", f.deploys_per_s)),
        ),
        (
            "deploys/s ÷ writes/s ÷ 3",
            col(&|f| format!("{:.2}", budget_ratio(f))),
        ),
        (
            "events per object",
            col(&|f| format!("{:.2}", f.events_per_object)),
        ),
        (
            "deploys/s ÷ writes/s ÷ every write an object costs",
            col(&|f| format!("{:.2}", full_budget_ratio(f))),
        ),
        (
            "time until all terminal (s)",
            col(&|f| format!("{:.1}", f.time_to_all_done_s)),
        ),
        ("poll requests", col(&|f| f.poll_requests.to_string())),
        (
            "action reads in them",
            col(&|f| f.actions_polled.to_string()),
        ),
        (
            "poll requests per 50 action reads",
            col(&|f| format!("{:.2}", f.poll_requests_per_50_open_per_cycle)),
        ),
        ("poll cycles", col(&|f| f.poll_cycles.to_string())),
        (
            "requests beyond ⌈open/batch⌉ per cycle",
            col(&|f| f.poll_requests_beyond_minimum.to_string()),
        ),
        ("peak RSS (MiB)", col(&|f| format!("{:.1}", f.peak_rss_mib))),
        ("CPU (s)", col(&|f| format!("{:.1}", f.cpu_seconds))),
        (
            "requests for terminal objects after restart",
            col(&|f| format!("{} in {:.0}s", f.requests_after_restart, f.restart_window_s)),
        ),
        (
            "floor: create→event + 2 writes + preview + perform (ms)",
            col(&|f| format!("{:.1}", f.floor.sum_ms)),
        ),
        (
            "  create→event / finalizer / status (ms)",
            col(&|f| {
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    f.floor.create_and_watch_event_ms,
                    f.floor.finalizer_write_ms,
                    f.floor.status_write_ms
                )
            }),
        ),
        (
            "  preview / look-up / perform (ms)",
            col(&|f| {
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    f.floor.gateway_endpoints_ms,
                    f.floor.gateway_lookup_ms,
                    f.floor.gateway_perform_ms
                )
            }),
        ),
    ];
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    println!(
        "\ntanium-bench: {} TaniumActions, fleet {}, sim time ×{}, connection {}\n",
        args.actions, args.fleet, args.time_scale, ours.connection
    );
    println!(
        "{:width$}  {:>14}  {:>14}",
        "", "ours (batch 50)", second_label
    );
    for (k, (a, b)) in &rows {
        println!("{k:width$}  {a:>14}  {b:>14}");
    }
    println!("\nGateway requests per minute while actions were open (ours):");
    for (op, n) in &ours.requests_per_minute {
        println!("  {op:30} {n:>10.1}");
    }
    if let Beside::Other(other) = beside {
        let change = |a: f64, b: f64| 100.0 * (b - a) / a.max(1e-9);
        println!(
            "\n{} against ours: CPU {:+.1}%, peak RSS {:+.1}%, apply → perform p50 {:+.1}%",
            args.compare_label,
            change(ours.cpu_seconds, other.cpu_seconds),
            change(ours.peak_rss_mib, other.peak_rss_mib),
            change(ours.apply_to_perform_ms.p50, other.apply_to_perform_ms.p50),
        );
    }
    let ratio = naive.map(|n| n.poll_requests as f64 / ours.poll_requests.max(1) as f64);
    if let Some(r) = ratio {
        println!("\nnaive / ours poll requests: {r:.1}×");
    }

    let mut all = true;
    let mut verdict = |name: &str, met: bool, detail: String| {
        all &= met;
        println!(
            "{} {name}: {detail}",
            if met { "MET    " } else { "NOT MET" }
        );
    };
    println!();
    verdict(
        "peak RSS < 150 MiB",
        ours.peak_rss_mib < 150.0,
        format!("{:.1} MiB with {} objects", ours.peak_rss_mib, ours.actions),
    );
    verdict(
        "≤ 1 poll request per 50 open actions per cycle",
        ours.poll_requests_beyond_minimum == 0,
        format!(
            "{} request(s) beyond ⌈open/50⌉ in {} cycles; {:.2} requests per 50 reads overall (a cycle with fewer \
             than 50 open actions still needs one)",
            ours.poll_requests_beyond_minimum,
            ours.poll_cycles,
            ours.poll_requests_per_50_open_per_cycle
        ),
    );
    if let Some(r) = ratio {
        verdict("naive / ours ≥ 25", r >= 25.0, format!("{r:.1}×"));
    }
    let p50 = ours.apply_to_perform_ms.p50;
    verdict(
        "apply → perform p50 within 2× the round trips it needs",
        p50 <= 2.0 * ours.floor.sum_ms,
        format!("{p50:.0} ms against a floor of {:.1} ms", ours.floor.sum_ms),
    );
    if args.rate.is_none() {
        let r = budget_ratio(ours);
        verdict(
            "a burst deploys ≥ 0.7 of what the apiserver's write budget allows",
            r >= 0.7,
            format!(
                "{:.1} deploys/s against {:.0} writes/s ÷ {WRITES_BEFORE_PERFORM} writes before each perform = {:.1}: \
                 {r:.2}",
                ours.deploys_per_s,
                ours.apiserver_writes_per_s,
                ours.apiserver_writes_per_s / WRITES_BEFORE_PERFORM
            ),
        );
    }
    verdict(
        "apply → perform p50 < 250 ms",
        p50 < 250.0,
        format!("{p50:.0} ms"),
    );
    verdict(
        "0 Gateway requests for terminal objects after a restart",
        ours.requests_after_restart == 0,
        ours.requests_after_restart.to_string(),
    );
    all
}

/// The burst's deploys per second against what the apiserver's measured write rate allows, with
/// [`WRITES_BEFORE_PERFORM`] writes before each deploy.
fn budget_ratio(f: &Figures) -> f64 {
    if f.apiserver_writes_per_s <= 0.0 {
        return 0.0;
    }
    f.deploys_per_s / (f.apiserver_writes_per_s / WRITES_BEFORE_PERFORM)
}

/// The same against every write an object costs while the burst lasts (its create, the operator's writes, its
/// events): what the apiserver's rate allows when nothing but this workload writes.
fn full_budget_ratio(f: &Figures) -> f64 {
    let per_object = 1.0 + f.writes_per_object + f.events_per_object;
    if f.apiserver_writes_per_s <= 0.0 {
        return 0.0;
    }
    f.deploys_per_s / (f.apiserver_writes_per_s / per_object)
}
