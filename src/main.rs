//! `tanium-operator`: run the operator, or print what it serves.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tanium_operator::cli;
use tanium_operator::controller::rotation::RotationConfig;
use tanium_operator::controller::{Config, Context, Policy, Shard, Timing};
use tanium_operator::crd;
use tanium_operator::gateway::{GatewayClient, TlsVerification};
use tanium_operator::runtime::lease::{Leadership, LeaseSettings};
use tanium_operator::runtime::{self, leader, readiness, token_file};
use tanium_operator::telemetry::{self, Readiness};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tanium-operator",
    version,
    about = "Drive the Tanium platform from Kubernetes manifests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once at start-up; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the controllers against the cluster in KUBECONFIG (or the in-cluster config).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML, or write them into directories (one file per CRD) and into
    /// Helm charts (templates/crds/, behind the values crds.enabled and crds.keep).
    Crd {
        #[arg(long)]
        dir: Vec<PathBuf>,
        /// A chart directory: the CRDs become its templates/crds/<plural>.yaml.
        #[arg(long)]
        chart: Vec<PathBuf>,
    },
    /// List the endpoints a filter selects (the filter shape of a TaniumAction's spec.targets.filter).
    Endpoints(cli::endpoints::Args),
    /// Show what the operator would find and decide for each TaniumAction in a manifest, deploying nothing.
    Preview(cli::preview::Args),
    /// Direct Endpoint Connect to one endpoint: CPU, processes, alerts, or end a process.
    Dec(cli::dec::Args),
    /// Print the version.
    Version,
    /// Print the shell completion script, e.g. `source <(tanium-operator completion bash)`.
    Completion(cli::CompletionArgs),
}

/// A number of endpoints, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Threshold(Option<u64>);

impl std::str::FromStr for Threshold {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "off" => Ok(Self(None)),
            n => n
                .parse()
                .map(|n| Self(Some(n)))
                .map_err(|_| format!("{s:?}: a number of endpoints, or off")),
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("off"),
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    gateway: cli::GatewayArgs,
    /// After an actionPerform whose answer was lost (or a crash during it), how long a look-up by name that finds
    /// nothing is not trusted before the action may be deployed again. Default and minimum: three request
    /// timeouts; the default is at least 90 s.
    #[arg(long, env = "TANIUM_LOOKUP_GRACE_SECONDS")]
    lookup_grace_seconds: Option<u64>,
    /// An actionPerform is written to the wire only this soon after its intent was recorded; later (a reconcile
    /// that waited, a paused process) it is not sent, and the action is looked up by name instead. Default: the
    /// look-up grace minus the request timeout minus the lease duration. Settings whose sum exceeds the grace are
    /// refused at start.
    #[arg(long, env = "TANIUM_INTENT_MAX_AGE_SECONDS")]
    intent_max_age_seconds: Option<u64>,
    /// Gateway requests in flight at once, across all objects.
    #[arg(long, env = "TANIUM_MAX_CONCURRENT_REQUESTS", default_value_t = 16)]
    max_concurrent_requests: usize,
    /// Reconcile only the objects in these namespaces (comma separated; default: all). With one, only that
    /// namespace is watched (a namespaced Role is enough); with several, the watch is cluster-wide and the other
    /// namespaces' objects are dropped before anything is cached.
    #[arg(
        long = "watch-namespaces",
        alias = "namespace",
        env = "WATCH_NAMESPACE",
        value_delimiter = ','
    )]
    watch_namespaces: Vec<String>,
    /// Reconcile only the objects whose labels match this Kubernetes label selector: one shard of the objects,
    /// each shard with its own Lease (README "Sharding"), e.g. `tanium-operator.dev/shard=blue`, or for the rest
    /// `tanium-operator.dev/shard notin (blue)`. Give each shard its own LEASE_NAME.
    #[arg(long, env = "TANIUM_SHARD_SELECTOR")]
    shard_selector: Option<String>,
    /// Namespaces whose objects may deploy (comma separated; default: all).
    #[arg(long, env = "TANIUM_ALLOWED_NAMESPACES", value_delimiter = ',')]
    allowed_namespaces: Vec<String>,
    /// Packages that may be deployed (comma separated; default: all).
    #[arg(long, env = "TANIUM_ALLOWED_PACKAGES", value_delimiter = ',')]
    allowed_packages: Vec<String>,
    /// No object may target more endpoints than this.
    #[arg(long, env = "TANIUM_MAX_TARGETS_CEILING")]
    max_targets_ceiling: Option<u64>,
    /// A deployment (a TaniumAction, or a TaniumTag round) to more endpoints than this waits for an approved
    /// preview (`kubectl tanium approve`), whatever its spec says; `off` turns this off, leaving approval to
    /// `safety.requirePreviewApproval`.
    #[arg(
        long,
        env = "TANIUM_APPROVAL_THRESHOLD",
        default_value_t = Threshold(Some(tanium_operator::controller::DEFAULT_APPROVAL_THRESHOLD))
    )]
    approval_threshold: Threshold,
    /// Let a TaniumEndpointInspection end the Tanium client's own processes (TaniumClient, TaniumCX,
    /// TaniumDriverSvc) or one with a pid below 10; refused (reason ProtectedProcess) otherwise.
    #[arg(long, env = "TANIUM_ALLOW_PROTECTED_PROCESS_KILLS")]
    allow_protected_process_kills: bool,
    /// Tags a TaniumTag may claim only from some namespaces: `PREFIX=NAMESPACE[,NAMESPACE...]`, several separated
    /// by `;` (e.g. `team-a-*=team-a;pci-*=security`). Tags no prefix matches may be claimed from any namespace.
    #[arg(long, env = "TANIUM_TAG_BINDINGS", value_delimiter = ';')]
    tag_bindings: Vec<tanium_operator::controller::TagBinding>,
    /// First results poll after a deployment; later polls slow down with the action's age.
    #[arg(long, env = "TANIUM_POLL_MIN_SECONDS", default_value_t = 2)]
    poll_min_seconds: u64,
    #[arg(long, env = "TANIUM_POLL_MAX_SECONDS", default_value_t = 60)]
    poll_max_seconds: u64,
    /// While an action runs, write its result counts to status at most this often (a change of phase and the
    /// final counts are written at once). Lower shows progress sooner; higher spares the apiserver under a burst.
    #[arg(long, env = "TANIUM_RESULTS_WRITE_SECONDS", default_value_t = 30)]
    results_write_seconds: u64,
    /// Publish every event, also those that only repeat what status says (Previewed, RoundStarted, Reconnected).
    /// By default a one-off action raises two (Deployed and its end), plus one for each hold a person must act on.
    #[arg(long, env = "TANIUM_ALL_EVENTS")]
    all_events: bool,
    /// Re-check of objects held by an error a person must fix (e.g. a rejected token) or by a gate.
    #[arg(long, env = "TANIUM_RETRY_HELD_SECONDS", default_value_t = 300)]
    retry_held_seconds: u64,
    /// How long the Gateway keeps an unused Direct Endpoint Connect connection (two minutes in older Tanium
    /// releases, five in newer ones).
    #[arg(long, env = "TANIUM_DC_IDLE_TIMEOUT_SECONDS", default_value_t = 120)]
    dc_idle_timeout_seconds: u64,
    /// Take part in leader election on a coordination.k8s.io Lease: one replica reconciles, the others stand by.
    #[arg(long, env = "LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the Lease (in a pod: its own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[arg(long, env = "LEASE_NAME", default_value = "tanium-operator")]
    lease_name: String,
    /// A leader that has not renewed its lease for this long is replaced.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// The leader sends a once-only mutation (actionPerform, a process kill, a token rotation) only while its last
    /// successful renewal, on its own clock, is younger than the lease duration minus this: the clock skew and
    /// stall tolerated.
    #[arg(long, env = "LEASE_GRACE_SECONDS", default_value_t = 5)]
    lease_grace_seconds: u64,
    /// After SIGTERM, how long in-flight reconciles may take before they are abandoned (keep it below the pod's
    /// terminationGracePeriodSeconds, so that the lease is released for a standby).
    #[arg(long, env = "SHUTDOWN_DRAIN_SECONDS", default_value_t = 20)]
    shutdown_drain_seconds: u64,
    /// Actions per results-poll request (GraphQL aliases, at most 50). 1 polls the way scripts do, one request
    /// per action: only for comparisons such as the benchmark's.
    #[arg(long, env = "TANIUM_POLL_BATCH", default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=50))]
    poll_batch: u16,
    /// Objects reconciled at once.
    #[arg(long, env = "TANIUM_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// How often to re-read the token file (a rotated Secret is picked up without a restart).
    #[arg(long, env = "TANIUM_TOKEN_RELOAD_SECONDS", default_value_t = 10)]
    token_reload_seconds: u64,
    /// Rotate the Gateway token with apiTokenRotate before it expires, writing the new one into the token Secret
    /// (TANIUM_TOKEN_SECRET in POD_NAMESPACE; the leader does it).
    #[arg(long, env = "TANIUM_TOKEN_ROTATION")]
    token_rotation: bool,
    /// The Secret the token file is mounted from (needed with TANIUM_TOKEN_ROTATION).
    #[arg(long, env = "TANIUM_TOKEN_SECRET")]
    token_secret: Option<String>,
    #[arg(long, env = "TANIUM_TOKEN_SECRET_KEY", default_value = "token")]
    token_secret_key: String,
    /// How long before the token expires it is rotated, e.g. 72h.
    #[arg(long, env = "TANIUM_TOKEN_ROTATION_LEAD", default_value = "72h", value_parser = crd::parse_duration)]
    token_rotation_lead: Duration,
    /// How often the operator's own token rotation looks at the Secret and the Gateway's clock, at most (a
    /// connection object's rotation looks every minute, with its status).
    #[arg(long, env = "TANIUM_TOKEN_CHECK_INTERVAL", default_value = "10m", value_parser = crd::parse_duration)]
    token_check_interval: Duration,
    /// Rotate the tokens of TaniumConnection and ClusterTaniumConnection objects whose spec.rotation asks, writing
    /// the new token back into their Secrets (needs `patch` on them; one process of a sharded install only).
    #[arg(long, env = "TANIUM_CONNECTION_TOKEN_ROTATION")]
    connection_token_rotation: bool,
    /// Use connection objects without writing their status or rotating their tokens (a shard: the main
    /// Deployment's leader does both).
    #[arg(long, env = "TANIUM_CONNECTIONS_READ_ONLY")]
    connections_read_only: bool,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "LOG_JSON")]
    log_json: bool,
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("{0}: {1}")]
    File(String, std::io::Error),
    #[error(transparent)]
    Gateway(#[from] tanium_operator::gateway::GatewayError),
    #[error(transparent)]
    Cli(#[from] cli::CliError),
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("{0}")]
    Config(String),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Endpoints(args) => return finish(cli::endpoints::run(args).await),
        Command::Preview(args) => return finish(cli::preview::run(args).await),
        Command::Dec(args) => return finish(cli::dec::run(args).await),
        Command::Run(args) => run(args).await,
        Command::Crd { dir, chart } => print_crds(dir, chart),
        Command::Version => {
            println!("tanium-operator {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Completion(args) => {
            args.print::<Cli>("tanium-operator");
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tanium-operator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The ad-hoc subcommands choose their own exit status (e.g. `preview` exits 1 when an action would be held).
fn finish(result: Result<std::process::ExitCode, cli::CliError>) -> std::process::ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("tanium-operator: {e}");
        e.exit_code()
    })
}

fn print_crds(dirs: Vec<PathBuf>, charts: Vec<PathBuf>) -> Result<(), MainError> {
    let files = crd::crd_files()?;
    if dirs.is_empty() && charts.is_empty() {
        for text in files.values() {
            print!("---\n{text}");
        }
    }
    let write = |dir: PathBuf, files: &std::collections::BTreeMap<String, String>| {
        std::fs::create_dir_all(&dir).map_err(|e| MainError::File(dir.display().to_string(), e))?;
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(|e| MainError::File(path.display().to_string(), e))?;
        }
        Ok::<_, MainError>(())
    };
    for dir in dirs {
        write(dir, &files)?;
    }
    if !charts.is_empty() {
        let templated = crd::chart_crd_files()?;
        for chart in charts {
            write(chart.join(crd::CHART_CRD_DIR), &templated)?;
        }
    }
    Ok(())
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(args: RunArgs) -> Result<(), MainError> {
    init_logging(args.log_json);
    // The operator reads its token from a file only (a mounted Secret), and re-reads it while running.
    let token_path = args.gateway.token_file.clone().ok_or_else(|| {
        MainError::Config("no API token file: set TANIUM_TOKEN_FILE (or --token-file)".into())
    })?;
    let mut gateway = args.gateway.config()?;
    let token_loaded = secrecy::ExposeSecret::expose_secret(&gateway.token).to_owned();
    let url = args.gateway.url()?.to_owned();
    if gateway.tls == TlsVerification::Insecure {
        tracing::warn!(
            gateway = %url,
            "TLS verification of the Gateway is OFF (TANIUM_INSECURE_SKIP_TLS_VERIFY): {}; every object carries \
             GatewayTLSVerified=False",
            TlsVerification::INSECURE_RISK
        );
    } else if url.trim_start().to_ascii_lowercase().starts_with("http://") {
        tracing::warn!(
            gateway = %url,
            "the Gateway URL is plain HTTP: the API token travels unencrypted; use https outside a lab"
        );
    }
    gateway.max_concurrent_requests = args.max_concurrent_requests;
    let gateway = GatewayClient::new(gateway)?;
    let lease = args.leader_elect.then(|| LeaseSettings {
        name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        identity: leader::identity(),
        duration: Duration::from_secs(args.lease_duration_seconds),
        margin: Duration::from_secs(args.lease_grace_seconds),
    });
    if let Some(lease) = &lease {
        lease.check().map_err(MainError::Config)?;
    }
    let request_timeout = Duration::from_secs(args.gateway.request_timeout_seconds);
    // A lost answer may belong to a request still in flight: trust "not found" only well past the timeout.
    let lookup_grace = Duration::from_secs(
        args.lookup_grace_seconds.map_or(
            args.gateway
                .request_timeout_seconds
                .saturating_mul(3)
                .max(90),
            |g| g.max(args.gateway.request_timeout_seconds.saturating_mul(3)),
        ),
    );
    let lease_duration = lease.as_ref().map_or(Duration::ZERO, |l| l.duration);
    let config = Config {
        policy: Policy {
            allowed_namespaces: args.allowed_namespaces,
            allowed_packages: args.allowed_packages,
            max_targets_ceiling: args.max_targets_ceiling,
            approval_threshold: args.approval_threshold.0,
            allow_protected_kills: args.allow_protected_process_kills,
            tag_bindings: args.tag_bindings,
        },
        timing: Timing {
            poll_min: Duration::from_secs(args.poll_min_seconds),
            poll_max: Duration::from_secs(args.poll_max_seconds),
            permanent_error: Duration::from_secs(args.retry_held_seconds.max(1)),
            lookup_grace,
            intent_max_age: args.intent_max_age_seconds.map_or_else(
                || Timing::default_intent_max_age(lookup_grace, request_timeout, lease_duration),
                Duration::from_secs,
            ),
            blocked: Duration::from_secs(args.retry_held_seconds.clamp(1, 60)),
            dc_idle_timeout: Duration::from_secs(args.dc_idle_timeout_seconds.max(3)),
            results_write: Duration::from_secs(args.results_write_seconds),
            ..Timing::default()
        },
        shard: Shard {
            namespaces: args
                .watch_namespaces
                .into_iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
            label_selector: args
                .shard_selector
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
        },
        concurrency: args.concurrency,
        poll_batch: usize::from(args.poll_batch),
        token_rotation: match (args.token_rotation, args.token_secret) {
            (false, _) => None,
            (true, Some(secret)) => Some(RotationConfig {
                namespace: args.lease_namespace.clone(),
                secret,
                key: args.token_secret_key,
                lead: args.token_rotation_lead,
                check_every: args.token_check_interval.max(Duration::from_secs(1)),
            }),
            (true, None) => return Err(MainError::Config(
                "TANIUM_TOKEN_ROTATION needs TANIUM_TOKEN_SECRET: the Secret the token is mounted from".into(),
            )),
        },
        all_events: args.all_events,
        own_namespace: args.lease_namespace.clone(),
        rotate_connection_tokens: args.connection_token_rotation && !args.connections_read_only,
        connections_read_only: args.connections_read_only,
    };
    // Settings that cannot keep "never deploy twice" stop the start, before anything is contacted.
    config
        .timing
        .check_fencing(request_timeout, lease_duration)
        .map_err(MainError::Config)?;
    let client = kube::Client::try_default().await?;
    config
        .shard
        .check(&client)
        .await
        .map_err(MainError::Config)?;
    tracing::info!(gateway = %gateway.endpoint(), policy = ?config.policy, shard = %config.shard, lease = args.leader_elect.then_some(args.lease_name.as_str()), "starting tanium-operator");
    let client_for_lease = client.clone();
    let ctx = Arc::new(Context::new(client.clone(), gateway.clone(), config));
    let ready = Arc::new(Readiness::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(telemetry::serve(
        args.metrics_addr,
        ctx.metrics.clone(),
        ready.clone(),
        stopped,
    ));
    tokio::spawn(readiness::track_readiness(
        ctx.clone(),
        client,
        gateway.clone(),
        ready,
    ));
    tokio::spawn(token_file::reload(
        token_path,
        token_loaded,
        gateway.clone(),
        Duration::from_secs(args.token_reload_seconds.max(1)),
    ));
    let shutdown = futures::FutureExt::shared(Box::pin(async move {
        runtime::shutdown_signal().await;
        let _ = stop_tx.send(true);
    }));
    let drain = Duration::from_secs(args.shutdown_drain_seconds);
    if let Some(lease) = lease {
        let namespace = lease.namespace.clone();
        let leadership = Arc::new(Leadership::new(lease));
        // Every once-only mutation asks the Lease first, on this process's own clock.
        gateway.fence_with(leadership.clone());
        let api = kube::Api::namespaced(client_for_lease, &namespace);
        leader::run_as_leader(ctx, leadership, api, shutdown, drain).await;
    } else {
        ctx.metrics.leader.set(1);
        leader::run_with_deadline(ctx, shutdown.clone(), shutdown, drain).await;
    }
    match server.await {
        Ok(Err(e)) => tracing::error!(error = %e, "metrics server failed"),
        Err(e) => tracing::error!(error = %e, "metrics server task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("stopped");
    Ok(())
}
