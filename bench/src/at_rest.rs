//! `--at-rest N`: N TaniumActions that are already over (their status written directly, shaped as the operator
//! writes a one-off action's end), then one operator process starts, lists and watches them. Measured: its peak
//! resident memory, how long until it is ready (every watch cache filled), and the Gateway requests it makes for
//! them, which must be none: a finished object costs no Gateway request.

use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Serialize;
use tanium_operator::crd::action::{Phase, TaniumActionStatus};
use tanium_operator::crd::{
    Deployment, EndpointCounts, EndpointSample, Preview, PreviewRead, ResultCounts,
    ScheduledActionStatus, TaniumAction,
};
use tanium_testenv::ControlPlane;

use crate::{Args, BenchError, Launch, PROCESS_OPERATIONS, proc_figures, start_sim};

/// Writers creating the objects at once.
const WRITERS: usize = 64;
/// How long the operator is watched after it is ready.
const SETTLE: Duration = Duration::from_secs(20);
/// Where the finished objects live.
const NAMESPACE: &str = "bench-at-rest";
/// The target: one replica holds this many finished objects in less.
pub const TARGET_MIB: f64 = 250.0;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AtRest {
    pub objects: usize,
    pub create_s: f64,
    pub ready_s: f64,
    /// Start → every object counted under its phase (`tanium_operator_objects`): reconciled once, or, when it has
    /// nothing left to do, counted as it is listed.
    pub counted_s: f64,
    pub peak_rss_mib: f64,
    pub rss_settled_mib: f64,
    pub cpu_s: f64,
    /// Gateway requests other than the process's own (readiness, feature detection).
    pub requests: u64,
}

/// A one-off action's end as the operator writes it: one endpoint previewed live, one scheduled action closed,
/// every condition set.
fn finished_status(i: usize, now: &Time) -> TaniumActionStatus {
    let condition = |type_: &str, status: &str, reason: &str, message: &str| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: now.clone(),
        observed_generation: Some(1),
    };
    let done = "1 of 1 targeted endpoint(s) finished: 1 completed, 0 failed, 0 expired; 0 waiting, 0 running";
    TaniumActionStatus {
        phase: Some(Phase::Completed),
        observed_generation: Some(1),
        preview: Some(Preview {
            count: 1,
            source: Some(PreviewRead::Live),
            source_reason: Some("the targets name endpoints by id".into()),
            answered: Some(1),
            expected: Some(1),
            sample: vec![EndpointSample {
                id: format!("{}", 1_000_001 + i % 5000),
                name: format!("host-{:06}", 1 + i % 5000),
            }],
            digest: format!(
                "sha256:{:016x}",
                (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ),
            observed_at: now.clone(),
        }),
        package: Some(tanium_operator::crd::action::PackageStatus {
            id: "101".into(),
            name: "Custom Tagging - Add Tags".into(),
        }),
        deployment: Deployment {
            action_name: Some(format!(
                "bench-at-rest/bench-{i:06} [{:016x}]",
                i as u64 * 31
            )),
            deploy_attempted_at: Some(now.clone()),
            scheduled_actions: vec![ScheduledActionStatus {
                id: format!("{}", 500_000 + i),
                platforms: Vec::new(),
                last_action_id: Some(format!("{}", 900_000 + i)),
                status: Some("CLOSED".into()),
            }],
            deployed_at: Some(now.clone()),
        },
        results: Some(ResultCounts {
            targeted: 1,
            counts: EndpointCounts {
                completed: 1,
                ..EndpointCounts::default()
            },
            waiting_when_stopped: None,
        }),
        results_written_at: Some(now.clone()),
        expires_at: Some(now.clone()),
        completed_at: Some(now.clone()),
        stopped_at: None,
        conditions: vec![
            condition("Ready", "True", "Completed", done),
            condition(
                "Previewed",
                "True",
                "Previewed",
                "1 endpoint(s) match; digest sha256:0123456789abcdef",
            ),
            condition(
                "Deployed",
                "True",
                "Deployed",
                "deployed as scheduled action(s) 500000 (\"bench-at-rest/bench [0123456789abcdef]\")",
            ),
            condition("Completed", "True", "Completed", done),
        ],
    }
}

/// Create `n` finished objects once, then start each of `operators` in turn on them (one at a time, each from
/// scratch, so that two builds compare on the same objects).
pub async fn run(
    cp: &ControlPlane,
    args: &Args,
    operators: &[&std::path::PathBuf],
    n: usize,
) -> Result<Vec<AtRest>, BenchError> {
    let sim = start_sim(args).await?;
    let client = cp.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await?;
    let api: Api<TaniumAction> = Api::namespaced(client.clone(), NAMESPACE);

    eprintln!("[at rest] creating {n} finished TaniumActions…");
    let started = Instant::now();
    let now = Time(jiff::Timestamp::now());
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let now = now.clone();
            async move {
                let name = format!("bench-{i:06}");
                let obj: TaniumAction = serde_json::from_value(serde_json::json!({
                    "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
                    // As the operator left it: its finalizer on (a finished one still stops what is open when
                    // deleted).
                    "metadata": {"name": name, "finalizers": [tanium_operator::controller::action::FINALIZER]},
                    "spec": {
                        "package": {"name": "Custom Tagging - Add Tags", "params": ["bench"]},
                        "targets": {"endpoints": [format!("{}", 1_000_001 + i % 5000)]},
                    }
                }))?;
                api.create(&PostParams::default(), &obj).await?;
                let status = serde_json::json!({"status": finished_status(i, &now)});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await?;
                if i > 0 && i % 10_000 == 0 {
                    eprintln!("[at rest] {i} created");
                }
                Ok::<_, BenchError>(())
            }
        })
        .buffer_unordered(WRITERS)
        .try_collect::<Vec<()>>()
        .await?;
    let create_s = started.elapsed().as_secs_f64();
    eprintln!("[at rest] {n} created in {create_s:.0}s; starting the operator");
    let mut figures = Vec::new();
    for (i, operator) in operators.iter().enumerate() {
        let label = format!("operator-at-rest-{i}");
        figures.push(measure(cp, args, &sim, operator, n, create_s, &label).await?);
    }
    sim.shutdown().await;
    Ok(figures)
}

/// One operator process started on the finished objects: until every object is counted, then a settle.
async fn measure(
    cp: &ControlPlane,
    args: &Args,
    sim: &tanium_sim::SimServer,
    operator: &std::path::PathBuf,
    n: usize,
    create_s: f64,
    label: &str,
) -> Result<AtRest, BenchError> {
    let dir = tempfile::tempdir()?;
    let dir = match &args.keep_logs {
        Some(keep) => {
            let d = keep.join(label);
            std::fs::create_dir_all(&d)?;
            d
        }
        None => dir.path().to_owned(),
    };
    let launch = Launch {
        binary: operator,
        cp,
        sim,
        dir,
        namespace: NAMESPACE,
        batch: 50,
        log_level: &args.operator_log_level,
        wrapper: args
            .operator_wrapper
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        ready_within: Duration::from_secs(args.timeout_seconds),
    };
    let before = sim.sim().requests().len();
    let starting = Instant::now();
    let op = launch.start(&format!("{label}.log"), true).await?;
    let ready_s = starting.elapsed().as_secs_f64();
    // Ready means listed; by then a settled object is counted, and any other is once its reconcile has read it.
    let deadline = starting + Duration::from_secs(args.timeout_seconds);
    let http = reqwest::Client::new();
    loop {
        let done = counted(&http, &op.metrics).await;
        if done >= n as u64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Timeout(format!(
                "{done} of {n} finished objects counted"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let counted_s = starting.elapsed().as_secs_f64();
    let settle_until = Instant::now() + SETTLE;
    while Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (peak_rss_mib, rss_settled_mib, cpu_s) = proc_figures(op.pid);
    let requests = sim.sim().requests()[before..]
        .iter()
        .filter(|r| {
            !r.operation_name
                .as_deref()
                .is_some_and(|op| PROCESS_OPERATIONS.contains(&op))
        })
        .count() as u64;
    op.stop().await?;
    Ok(AtRest {
        objects: n,
        create_s,
        ready_s,
        counted_s,
        peak_rss_mib,
        rss_settled_mib,
        cpu_s,
        requests,
    })
}

/// TaniumActions the operator counts under a phase, from its `tanium_operator_objects` gauge.
async fn counted(http: &reqwest::Client, metrics: &str) -> u64 {
    let Ok(answer) = http
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
    else {
        return 0;
    };
    let text = answer.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("tanium_operator_objects{") && l.contains("kind=\"TaniumAction\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The figures and their verdicts, one column per operator (the first is the shipped build, whose verdicts
/// count); `true` when both targets are met by the first.
pub fn report(figures: &[AtRest], labels: &[&str]) -> bool {
    let Some(first) = figures.first() else {
        return false;
    };
    println!(
        "\ntanium-bench --at-rest: {} finished TaniumActions (created in {:.0}s), one operator process at a time\n",
        first.objects, first.create_s
    );
    let row = |name: &str, value: &dyn Fn(&AtRest) -> String| {
        let cells: Vec<String> = figures
            .iter()
            .map(|f| format!("{:>12}", value(f)))
            .collect();
        println!("{name:<44}{}", cells.join(""));
    };
    let header: Vec<String> = labels.iter().map(|l| format!("{l:>12}")).collect();
    println!("{:<44}{}", "", header.join(""));
    row("start → ready (every watch cache filled), s", &|f| {
        format!("{:.1}", f.ready_s)
    });
    row("start → every object counted, s", &|f| {
        format!("{:.1}", f.counted_s)
    });
    row("peak RSS, MiB", &|f| format!("{:.1}", f.peak_rss_mib));
    row(
        &format!("RSS {}s after ready, MiB", SETTLE.as_secs()),
        &|f| format!("{:.1}", f.rss_settled_mib),
    );
    row("CPU, s", &|f| format!("{:.1}", f.cpu_s));
    row("Gateway requests for the objects", &|f| {
        f.requests.to_string()
    });
    println!();
    let met: Vec<bool> = figures
        .iter()
        .zip(labels)
        .map(|(f, label)| {
            let rss = f.peak_rss_mib < TARGET_MIB;
            let quiet = f.requests == 0;
            println!(
                "{} [{label}] peak RSS < {TARGET_MIB} MiB with {} objects: {:.1} MiB",
                if rss { "MET    " } else { "NOT MET" },
                f.objects,
                f.peak_rss_mib
            );
            println!(
                "{} [{label}] 0 Gateway requests for finished objects at start: {}",
                if quiet { "MET    " } else { "NOT MET" },
                f.requests
            );
            rss && quiet
        })
        .collect();
    met.first().copied().unwrap_or(false)
}
