//! Ad-hoc subcommands against a Gateway: `endpoints`, `preview`, `dec`. They share one set of connection
//! arguments ([`GatewayArgs`]) and one output switch ([`OutputArgs`]); `main.rs` only dispatches.
//!
//! Exit codes: 0 success; 1 an error, or (for `preview`) an action that would be held back; 2 a refused
//! command-line (usage errors, `dec kill` without `--yes`); 130 interrupted by Ctrl-C.

pub mod dec;
pub mod endpoints;
pub mod output;
pub mod preview;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use secrecy::SecretString;

use crate::gateway::{GatewayClient, GatewayConfig, GatewayError, TlsVerification};

/// Where the token may come from, besides `TANIUM_TOKEN_FILE`. Deliberately not a flag: a token typed on the
/// command line lands in shell history and in every `ps` listing.
pub const TOKEN_ENV: &str = "TANIUM_TOKEN";

/// `completion <shell>`: both binaries print their shell completion script (clap_complete), e.g.
/// `source <(tanium-operator completion bash)`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

impl CompletionArgs {
    /// The script for the command `C`, invoked as `bin_name`, on stdout.
    pub fn print<C: clap::CommandFactory>(&self, bin_name: &str) {
        clap_complete::generate(
            self.shell,
            &mut C::command(),
            bin_name,
            &mut std::io::stdout(),
        );
    }
}

/// How to reach the Gateway: the same flags for `run` and every subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Base URL of the Tanium server (the Gateway is at <url>/plugin/products/gateway/graphql).
    #[arg(long, env = "TANIUM_GATEWAY_URL")]
    pub gateway_url: Option<String>,
    /// File holding the API token (e.g. a mounted Secret; `run` needs it and re-reads it). Without it, the
    /// subcommands read the token from the TANIUM_TOKEN environment variable; never from a flag.
    #[arg(long, env = "TANIUM_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM bundle of extra CA certificates for the Gateway's TLS certificate.
    #[arg(long, env = "TANIUM_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Do not check the Gateway's TLS certificate. A lab only: anyone on the network path could read the token
    /// and answer for the Gateway. Warned about at start (and, for `run`, on every object: condition
    /// GatewayTLSVerified).
    #[arg(long, env = "TANIUM_INSECURE_SKIP_TLS_VERIFY")]
    pub insecure_skip_tls_verify: bool,
    #[arg(long, env = "TANIUM_REQUEST_TIMEOUT_SECONDS", default_value_t = 30)]
    pub request_timeout_seconds: u64,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document on stdout; field names are camelCase and stable.
    Json,
    /// The same document as YAML.
    Yaml,
}

#[derive(clap::Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// Input a person gave that cannot be used (a filter, a manifest, a duration).
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Endpoint(String),
    #[error("interrupted by Ctrl-C{0}")]
    Interrupted(String),
    #[error("cannot write the output: {0}")]
    Output(String),
    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Interrupted(_) => ExitCode::from(130),
            _ => ExitCode::FAILURE,
        }
    }
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::File {
        path: path.display().to_string(),
        source,
    })
}

impl GatewayArgs {
    /// A client for the Gateway these arguments name. Nothing is sent yet.
    pub fn client(&self) -> Result<GatewayClient, CliError> {
        let config = self.config()?;
        if config.tls == TlsVerification::Insecure {
            eprintln!(
                "WARNING: not checking the Gateway's TLS certificate (--insecure-skip-tls-verify): {}",
                TlsVerification::INSECURE_RISK
            );
        }
        Ok(GatewayClient::new(config)?)
    }

    /// What these arguments say about the Gateway, with the token read; `run` adds its own limits.
    pub fn config(&self) -> Result<GatewayConfig, CliError> {
        let url = self.url()?;
        let token = self.token()?;
        let mut config = GatewayConfig::new(url, token);
        config.ca_bundle_pem = self.ca_file.as_deref().map(read_file).transpose()?;
        if self.insecure_skip_tls_verify {
            config.tls = TlsVerification::Insecure;
        }
        config.request_timeout = Duration::from_secs(self.request_timeout_seconds.max(1));
        Ok(config)
    }

    pub fn url(&self) -> Result<&str, CliError> {
        self.gateway_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                CliError::Config(
                    "no Gateway URL: set TANIUM_GATEWAY_URL or pass --gateway-url".into(),
                )
            })
    }

    fn token(&self) -> Result<SecretString, CliError> {
        let (token, source) = match &self.token_file {
            Some(path) => {
                let bytes = read_file(path)?;
                (
                    String::from_utf8_lossy(&bytes).trim().to_owned(),
                    path.display().to_string(),
                )
            }
            None => match std::env::var(TOKEN_ENV) {
                Ok(t) => (t.trim().to_owned(), TOKEN_ENV.to_owned()),
                Err(_) => {
                    return Err(CliError::Config(format!(
                        "no API token: set TANIUM_TOKEN_FILE (or --token-file) to a file holding it, or {TOKEN_ENV}"
                    )));
                }
            },
        };
        if token.is_empty() {
            return Err(CliError::Config(format!(
                "the API token in {source} is empty"
            )));
        }
        Ok(SecretString::from(token))
    }
}

/// Ctrl-C, caught from the moment it is installed (not from the first poll, as `tokio::signal::ctrl_c()` would),
/// so that an interrupt between opening a connection and waiting on it still lets the connection be closed.
pub(crate) struct Interrupt {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupt {
    pub(crate) fn install() -> Result<Self, CliError> {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| CliError::Config(format!("cannot handle Ctrl-C: {e}")))?;
            Ok(Self { signal })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        {
            if self.signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_token_file_is_named() {
        let args = GatewayArgs {
            gateway_url: Some("http://127.0.0.1:1".into()),
            token_file: Some(PathBuf::from("/nonexistent/token")),
            ca_file: None,
            insecure_skip_tls_verify: false,
            request_timeout_seconds: 1,
        };
        let e = args.client().map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/token"), "{e}");
    }
}
