//! `tanium-testenv up --kubeconfig PATH`: a throwaway control plane for the local demo (`scripts/demo`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tanium_testenv::{Binaries, ControlPlane, Identity};

#[derive(Parser)]
#[command(
    name = "tanium-testenv",
    version,
    about = "A real etcd + kube-apiserver on loopback, for demos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a control plane, write an admin kubeconfig, and run until SIGINT/SIGTERM (then tear down).
    Up {
        /// Where to write the admin kubeconfig.
        #[arg(long)]
        kubeconfig: PathBuf,
    },
    /// Print the directory holding kube-apiserver and etcd (KUBEBUILDER_ASSETS, else the binaries cache).
    Bins,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(
                |_| // the readiness probe's failures until the apiserver is up are expected
                tracing_subscriber::EnvFilter::new("info,kube_client::client::builder=off"),
            ),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up { kubeconfig } => up(kubeconfig).await,
        Command::Bins => Binaries::locate().map(|b| println!("{}", b.dir.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn up(kubeconfig: PathBuf) -> Result<(), tanium_testenv::Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let io = |what: &str| {
        let what = what.to_owned();
        move |e| tanium_testenv::Error::Io {
            context: what,
            source: e,
        }
    };
    // Listen before starting, so a signal during start-up still tears down cleanly.
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(io("installing a SIGTERM handler"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(io("installing a SIGINT handler"))?;

    let cp = tokio::select! {
        cp = ControlPlane::start() => cp?,
        _ = sigterm.recv() => return Ok(()),
        _ = sigint.recv() => return Ok(()),
    };
    cp.write_kubeconfig(&Identity::admin(), &kubeconfig)?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "server: {}", cp.server_url());
        let _ = writeln!(out, "version: {}", cp.version());
        let _ = writeln!(out, "kubeconfig: {}", kubeconfig.display());
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: tearing down"),
        _ = sigint.recv() => tracing::info!("SIGINT: tearing down"),
    }
    drop(cp);
    let _ = std::fs::remove_file(&kubeconfig);
    Ok(())
}
