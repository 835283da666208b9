//! tanium-sim binary: serve a simulated Tanium API Gateway.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tanium_sim::{
    AfterCommit, Faults, FleetSource, ListingModes, SimConfig, SourceModes, TokenUser,
};

#[derive(Debug, Parser)]
#[command(
    name = "tanium-sim",
    about = "A stateful simulator of the Tanium API Gateway"
)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to bind; the admin API is served there too, without a token.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Number of endpoints to generate (fixtures included).
    #[arg(long, default_value_t = 100)]
    fleet: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// JSON file with an array of endpoints; replaces the generated fleet.
    #[arg(long)]
    fleet_file: Option<PathBuf>,
    /// Accepted `session` token, as TOKEN or TOKEN:USER (default user "admin"); repeatable.
    #[arg(long = "token", hide_env_values = true)]
    tokens: Vec<String>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Which Gateway to play: `current` (both Direct Connect families, CLOSED) or `legacy` (an older Gateway: only
    /// openDirectConnection and its family, no CLOSED).
    #[arg(long, default_value = "current", value_parser = ["current", "legacy"])]
    generation: String,
    /// Actions wait for a different user's approval.
    #[arg(long)]
    approval_required: bool,
    /// Direct Connect idle timeout in simulated seconds.
    #[arg(long, default_value_t = 120.0)]
    dc_idle_timeout: f64,
    /// Per-endpoint action failure probability.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 0.0)]
    http_500_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    graphql_error_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    retryable_error_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    drop_after_commit_rate: f64,
    /// How a committed mutation's answer fails (comma separated: drop, retryable_payload, execution_error,
    /// http502, http504; default: drop).
    #[arg(long, value_delimiter = ',', value_parser = parse_after_commit)]
    after_commit: Vec<AfterCommit>,
    /// Reads of an action or scheduled action answered null though it exists.
    #[arg(long, default_value_t = 0.0)]
    null_read_rate: f64,
    /// Reads answered with an error carrying the alias's path.
    #[arg(long, default_value_t = 0.0)]
    read_error_rate: f64,
    /// Action reads reporting a status the client's schema does not know (QUEUED).
    #[arg(long, default_value_t = 0.0)]
    unknown_status_rate: f64,
    /// Refuse documents with more top-level fields than this (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_top_level_fields: usize,
    /// Top-level fields answered HTTP 403 (comma separated).
    #[arg(long, value_delimiter = ',')]
    forbidden_fields: Vec<String>,
    /// Schedule deletions refused (non-retryable) while the schedule stays.
    #[arg(long, default_value_t = 0.0)]
    delete_refused_rate: f64,
    /// Deleting an already deleted schedule is refused ("not found").
    #[arg(long)]
    delete_again_refused: bool,
    /// A new scheduled action matches a name filter only this long after it was created.
    #[arg(long, default_value_t = 0)]
    name_filter_lag_ms: u64,
    /// Filters list only the caller's own scheduled actions unless they say restrictOwner: false.
    #[arg(long)]
    restrict_owner: bool,
    /// TDS holds only sensors registered for collection (harvested).
    #[arg(long)]
    tds_registered_only: bool,
    /// TDS readings are up to this old.
    #[arg(long, default_value_t = 0)]
    tds_max_age_ms: u64,
    /// Online endpoints answer live questions after a delay of up to this; slower than maxWaitTime: missing.
    #[arg(long, default_value_t = 0)]
    live_answer_spread_ms: u64,
}

fn parse_after_commit(s: &str) -> Result<AfterCommit, String> {
    serde_json::from_value(serde_json::Value::String(s.trim().to_owned())).map_err(|_| {
        format!("{s:?}: one of drop, retryable_payload, execution_error, http502, http504")
    })
}

fn parse_token(s: &str) -> Option<TokenUser> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    Some(match s.split_once(':') {
        Some((t, u)) if !u.is_empty() => TokenUser::new(t, u),
        Some((t, _)) => TokenUser::new(t, "admin"),
        None => TokenUser::new(s, "admin"),
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    // Tokens from the environment keep them off the command line (and out of `ps`).
    let mut tokens: Vec<TokenUser> = args.tokens.iter().filter_map(|t| parse_token(t)).collect();
    if let Ok(env) = std::env::var("TANIUM_SIM_TOKENS") {
        tokens.extend(env.split(',').filter_map(parse_token));
    }
    let mut config = SimConfig {
        bind: SocketAddr::new(args.bind, args.port),
        fleet: match args.fleet_file {
            Some(p) => FleetSource::File(p),
            None => FleetSource::Generated {
                size: args.fleet,
                seed: args.seed,
            },
        },
        time_scale: args.time_scale,
        generation: if args.generation == "legacy" {
            tanium_sim::Generation::Legacy
        } else {
            tanium_sim::Generation::Current
        },
        approval_required: args.approval_required,
        dc_idle_timeout: Duration::try_from_secs_f64(args.dc_idle_timeout)
            .unwrap_or(Duration::from_secs(120)),
        action_failure_rate: args.failure_rate,
        faults: Faults {
            latency_ms: args.latency_ms,
            http_500_rate: args.http_500_rate,
            graphql_error_rate: args.graphql_error_rate,
            retryable_error_rate: args.retryable_error_rate,
            drop_after_commit_rate: args.drop_after_commit_rate,
            after_commit: args.after_commit,
            null_read_rate: args.null_read_rate,
            read_error_rate: args.read_error_rate,
            unknown_status_rate: args.unknown_status_rate,
            max_top_level_fields: args.max_top_level_fields,
            forbidden_fields: args.forbidden_fields,
            delete_refused_rate: args.delete_refused_rate,
            delete_again_refused: args.delete_again_refused,
            seed: args.seed,
            ..Faults::default()
        },
        listing: ListingModes {
            name_filter_lag_ms: args.name_filter_lag_ms,
            restrict_owner: args.restrict_owner,
        },
        sources: SourceModes {
            tds_registered_only: args.tds_registered_only,
            tds_max_age_ms: args.tds_max_age_ms,
            live_answer_spread_ms: args.live_answer_spread_ms,
        },
        ..SimConfig::default()
    };
    if tokens.is_empty() {
        tracing::warn!(
            "no --token or TANIUM_SIM_TOKENS given: accepting the default development token"
        );
    } else {
        config.tokens = tokens;
    }

    let server = match tanium_sim::start(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "tanium-sim failed to start");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "tanium-sim listening on {}", server.url());
    let _ = out.flush();
    drop(out);

    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
