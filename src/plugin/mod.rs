//! `kubectl tanium` (the `kubectl-tanium` binary): the operator's objects and the Gateway, for a person at a
//! terminal. `preview` and `endpoints` are the operator binary's ad-hoc commands (against the Gateway in
//! `TANIUM_GATEWAY_URL`, or with `--from-cluster` the one the cluster's operator uses); `approve` and `status`
//! work on TaniumActions in the cluster of the current kubeconfig context.
//!
//! Exit codes as the ad-hoc CLI's ([`crate::cli`]): 0 success; 1 an error or a held action (`preview`); 2 a
//! refused command line; 130 interrupted.

mod approve;
pub mod argocd;
mod cluster;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{self, CliError, GatewayArgs, OutputArgs};

#[derive(clap::Parser, Debug)]
#[command(
    name = "kubectl-tanium",
    bin_name = "kubectl tanium",
    version,
    about = "Preview, approve and follow Tanium actions driven by tanium-operator"
)]
pub struct Plugin {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: Command,
}

/// Which cluster, as kubectl's own flags say it (every subcommand takes them).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
// Parsed once at start-up; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// What the TaniumActions in a manifest would target and whether they would deploy now, deploying nothing.
    Preview(PreviewArgs),
    /// Approve a TaniumAction's preview (shows its count, sample and digest and asks first, unless --yes).
    Approve(approve::Args),
    /// A TaniumAction's scheduled actions, per-platform ids and result counts; -w follows it to the end.
    Status(status::Args),
    /// The endpoints a filter selects.
    Endpoints(cli::endpoints::Args),
    /// Argo CD health checks for the five kinds, as a patch for the argocd-cm ConfigMap.
    #[command(name = "argocd-health")]
    ArgocdHealth(argocd::Args),
    /// Print the shell completion script, e.g. `source <(kubectl tanium completion bash)`.
    Completion(cli::CompletionArgs),
}

#[derive(clap::Args, Debug)]
struct PreviewArgs {
    /// Manifest with TaniumAction documents (multi-document YAML); `-` reads stdin.
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    /// Use the Gateway, CA bundle and token of the operator installed in the cluster (read from its Deployment and
    /// its token Secret, which your kubeconfig must be allowed to read), instead of TANIUM_GATEWAY_URL; an object
    /// naming a connection (spec.connectionRef) is previewed against that connection's server and token.
    #[arg(long)]
    from_cluster: bool,
    #[command(flatten)]
    operator: cluster::OperatorRef,
    #[command(flatten)]
    gateway: GatewayArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(plugin: Plugin) -> Result<ExitCode, CliError> {
    let on = &plugin.cluster;
    match plugin.command {
        Command::Preview(args) => {
            if !args.from_cluster {
                let gateway = args.gateway.client()?;
                return cli::preview::run_with(
                    async |_| Ok(gateway.clone()),
                    &args.file,
                    args.output.format,
                )
                .await;
            }
            // As the operator would: its own server, or the one the object's connection names.
            let client = on.client().await?;
            let own = cluster::gateway(&client, &args.operator).await?;
            let pick = async |obj: &crate::crd::TaniumAction| match &obj.spec.connection_ref {
                None => Ok(own.clone()),
                Some(wanted) => {
                    let namespace = obj
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| client.default_namespace().to_owned());
                    cluster::connection_gateway(&client, &args.operator, &namespace, wanted).await
                }
            };
            cli::preview::run_with(pick, &args.file, args.output.format).await
        }
        Command::Approve(args) => approve::run(on, args).await,
        Command::Status(args) => status::run(on, args).await,
        Command::Endpoints(args) => cli::endpoints::run(args).await,
        Command::ArgocdHealth(args) => argocd::run(args),
        Command::Completion(args) => {
            args.print::<Plugin>("kubectl-tanium");
            Ok(ExitCode::SUCCESS)
        }
    }
}

impl ClusterArgs {
    /// A client for the chosen kubeconfig and context, or the in-cluster config when there is no kubeconfig, as
    /// kubectl does.
    async fn client(&self) -> Result<kube::Client, CliError> {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path).map_err(|e| {
                    CliError::Config(format!("--kubeconfig {}: {e}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| e.to_string())
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| e.to_string()),
            None => kube::Config::infer().await.map_err(|e| e.to_string()),
        }
        .map_err(|e| CliError::Config(format!("no cluster to talk to: {e}")))?;
        kube::Client::try_from(config)
            .map_err(|e| CliError::Config(format!("no cluster to talk to: {e}")))
    }

    /// `-n`, else the context's namespace, as kubectl chooses.
    async fn namespace(&self, given: Option<String>) -> Result<(kube::Client, String), CliError> {
        let client = self.client().await?;
        let ns = given.unwrap_or_else(|| client.default_namespace().to_owned());
        Ok((client, ns))
    }
}
