//! `tanium-operator`: run the operator, or print what it serves.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use secrecy::SecretString;
use tanium_operator::controller::{self, Config, Context, Policy, Timing};
use tanium_operator::crd;
use tanium_operator::gateway::{GatewayClient, GatewayConfig};

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
enum Command {
    /// Run the controllers against the cluster in KUBECONFIG (or the in-cluster config).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML, or write them into a directory (one file per CRD).
    Crd {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Base URL of the Tanium server (the Gateway is at <url>/plugin/products/gateway/graphql).
    #[arg(long, env = "TANIUM_GATEWAY_URL")]
    gateway_url: String,
    /// File holding the API token (e.g. a mounted Secret). The token is never taken from a flag.
    #[arg(long, env = "TANIUM_TOKEN_FILE")]
    token_file: PathBuf,
    /// PEM bundle of extra CA certificates for the Gateway's TLS certificate.
    #[arg(long, env = "TANIUM_CA_FILE")]
    ca_file: Option<PathBuf>,
    #[arg(long, env = "TANIUM_REQUEST_TIMEOUT_SECONDS", default_value_t = 30)]
    request_timeout_seconds: u64,
    /// Gateway requests in flight at once, across all objects.
    #[arg(long, env = "TANIUM_MAX_CONCURRENT_REQUESTS", default_value_t = 16)]
    max_concurrent_requests: usize,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Namespaces whose objects may deploy (comma separated; default: all).
    #[arg(long, env = "TANIUM_ALLOWED_NAMESPACES", value_delimiter = ',')]
    allowed_namespaces: Vec<String>,
    /// Packages that may be deployed (comma separated; default: all).
    #[arg(long, env = "TANIUM_ALLOWED_PACKAGES", value_delimiter = ',')]
    allowed_packages: Vec<String>,
    /// No object may target more endpoints than this.
    #[arg(long, env = "TANIUM_MAX_TARGETS_CEILING")]
    max_targets_ceiling: Option<u64>,
    /// First results poll after a deployment; later polls slow down with the action's age.
    #[arg(long, env = "TANIUM_POLL_MIN_SECONDS", default_value_t = 2)]
    poll_min_seconds: u64,
    #[arg(long, env = "TANIUM_POLL_MAX_SECONDS", default_value_t = 60)]
    poll_max_seconds: u64,
    /// Objects reconciled at once.
    #[arg(long, env = "TANIUM_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
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
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Yaml(#[from] serde_yaml_ng::Error),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        Command::Crd { dir } => print_crds(dir),
        Command::Version => {
            println!("tanium-operator {}", env!("CARGO_PKG_VERSION"));
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

fn print_crds(dir: Option<PathBuf>) -> Result<(), MainError> {
    let files = crd::crd_files()?;
    match dir {
        Some(dir) => {
            for (name, text) in files {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .map_err(|e| MainError::File(path.display().to_string(), e))?;
            }
        }
        None => {
            for text in files.values() {
                print!("---\n{text}");
            }
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
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| MainError::File(path.display().to_string(), e))
    };
    let token = String::from_utf8_lossy(&read(&args.token_file)?)
        .trim()
        .to_owned();
    let mut gateway = GatewayConfig::new(&args.gateway_url, SecretString::from(token));
    gateway.ca_bundle_pem = args.ca_file.as_ref().map(read).transpose()?;
    gateway.request_timeout = Duration::from_secs(args.request_timeout_seconds);
    gateway.max_concurrent_requests = args.max_concurrent_requests;
    let gateway = GatewayClient::new(gateway)?;
    let client = kube::Client::try_default().await?;
    let config = Config {
        policy: Policy {
            allowed_namespaces: args.allowed_namespaces,
            allowed_packages: args.allowed_packages,
            max_targets_ceiling: args.max_targets_ceiling,
        },
        timing: Timing {
            poll_min: Duration::from_secs(args.poll_min_seconds),
            poll_max: Duration::from_secs(args.poll_max_seconds),
            ..Timing::default()
        },
        namespace: args.namespace,
        concurrency: args.concurrency,
    };
    tracing::info!(gateway = %gateway.endpoint(), policy = ?config.policy, "starting tanium-operator");
    let ctx = Arc::new(Context::new(client, gateway, config));
    controller::run(ctx, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        () = term => {},
    }
}
