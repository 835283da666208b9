//! A real, throwaway Kubernetes control plane for tests and the local demo.
//!
//! [`ControlPlane::start`] runs `etcd` and `kube-apiserver` (the binaries `scripts/k8s-test-bins.sh` provides) on
//! free loopback ports, with a fresh CA, serving certificate, service-account key pair and an admin client
//! certificate (`CN=admin, O=system:masters`), RBAC authorization on, and waits until `/readyz` answers. It is what
//! controller-runtime's envtest does, without the download: CRD structural-schema and CEL validation, the status
//! subresource, finalizers, watches and RBAC all behave as in a cluster. There is no controller-manager, scheduler
//! or kubelet: nothing creates pods, default ServiceAccounts or garbage-collects owned objects.
//!
//! ```no_run
//! # async fn demo() {
//! // Skips the test (loudly) when the binaries are missing, unless CI=true or TANIUM_REQUIRE_K8S=1.
//! let Some(cp) = tanium_testenv::ControlPlane::start_or_skip().await else { return };
//! println!("kube-apiserver {}", cp.version());
//! let client = cp.client();
//! # let _ = client;
//! # }
//! ```
//!
//! # Finding the binaries
//! [`Binaries::locate`]: `$KUBEBUILDER_ASSETS` if set (the envtest convention; `scripts/test` exports it), else the
//! pinned build in `${XDG_CACHE_HOME:-~/.cache}/tanium-operator/k8s-v1.36.3/` that `scripts/k8s-test-bins.sh`
//! makes. The library never builds them itself: a missing binary is [`Error::BinaryNotFound`], which
//! [`ControlPlane::start_or_skip`] turns into a skip (or, in CI, a failure). The test tools (kstatus, promtool,
//! helm-docs) are found the same way by [`TestTool::locate_or_skip`]: `$TANIUM_KSTATUS`, `$TANIUM_PROMTOOL`,
//! `$TANIUM_HELM_DOCS`, else `scripts/test-tools.sh`'s cache; [`helm_or_skip`] finds helm beside the Kubernetes binaries.
//!
//! # No orphans
//! Each process starts in its own process group and is ended with `SIGKILL` on the group, then reaped, when the
//! [`ControlPlane`] is dropped (also while a panicking test unwinds). For the cases where no destructor runs (the
//! test binary is killed, `std::process::exit`, an abort) every child is spawned with
//! `prctl(PR_SET_PDEATHSIG, SIGKILL)` from one long-lived spawner thread, so the kernel kills it when this process
//! dies. (The parent-death signal fires when the *thread* that forked exits, hence the dedicated thread rather than
//! whichever test or runtime thread happens to call `start`.) The temporary directory of a plane whose process
//! died that way is removed by the next [`ControlPlane::start`] (each directory records its owner's pid).
//!
//! # Running several at once
//! Ports come from the kernel (bind to port 0), every plane has its own temporary directory, and a start that
//! loses a port race (`address already in use`) is retried on new ports.

mod binaries;
mod controlplane;
mod pki;
mod process;
mod tools;

/// For `#[kube(crates(schemars = "::tanium_testenv::schemars"))]` in crates that do not depend on schemars.
pub use schemars;

pub use binaries::{Binaries, ETCD_VERSION, HELM_VERSION, K8S_VERSION, default_cache_dir};
pub use controlplane::{ControlPlane, Identity};
pub use tools::{TestTool, helm_or_skip, test_tools_dir};

/// Environment variables that make a missing binary a test failure instead of a skip.
pub const REQUIRE_ENV: [&str; 2] = ["CI", "TANIUM_REQUIRE_K8S"];

/// Everything that can go wrong starting or using a [`ControlPlane`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary is missing: the caller may skip (see [`ControlPlane::start_or_skip`]).
    #[error(
        "{binary} not found ({detail}); run ./scripts/k8s-test-bins.sh, or set KUBEBUILDER_ASSETS to a \
         directory holding kube-apiserver and etcd"
    )]
    BinaryNotFound {
        /// The binary's file name, e.g. `kube-apiserver`.
        binary: &'static str,
        /// Where it was looked for.
        detail: String,
    },
    /// A test tool (kstatus, promtool, helm-docs) is missing: the caller may skip (see [`TestTool::locate_or_skip`]).
    #[error(
        "{tool} not found ({detail}); run ./scripts/test-tools.sh, or set {env} to the executable"
    )]
    ToolNotFound {
        /// The tool's file name, e.g. `promtool`.
        tool: &'static str,
        /// The variable that names it, e.g. `TANIUM_PROMTOOL`.
        env: &'static str,
        /// Where it was looked for.
        detail: String,
    },
    /// Generating keys or certificates failed.
    #[error("generating certificates: {0}")]
    Pki(#[from] rcgen::Error),
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `etcd` or `kube-apiserver` exited while starting.
    #[error("{process} exited during start-up ({status}); the end of its log:\n{log_tail}")]
    ProcessExited {
        /// Which process.
        process: &'static str,
        /// Its exit status.
        status: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A process did not become ready in time.
    #[error(
        "{process} not ready after {waited_secs}s (last probe: {last_probe}); the end of its log:\n{log_tail}"
    )]
    NotReady {
        /// Which process.
        process: &'static str,
        /// How long we waited.
        waited_secs: u64,
        /// The last readiness probe's result.
        last_probe: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// Building a client configuration from the generated kubeconfig failed.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// A request to the apiserver failed.
    #[error("kube-apiserver request: {0}")]
    Kube(#[from] kube::Error),
    /// Serialising the kubeconfig failed.
    #[error("serialising kubeconfig: {0}")]
    Json(#[from] serde_json::Error),
    /// Building an HTTP request failed.
    #[error("building request: {0}")]
    Http(#[from] http::Error),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether the binaries are missing (a skip outside CI), as opposed to a real start-up failure.
    pub fn is_binary_missing(&self) -> bool {
        matches!(
            self,
            Error::BinaryNotFound { .. } | Error::ToolNotFound { .. }
        )
    }

    /// Whether a process lost a race for its port (start is retried on fresh ports).
    pub(crate) fn is_port_clash(&self) -> bool {
        match self {
            Error::ProcessExited { log_tail, .. } | Error::NotReady { log_tail, .. } => {
                log_tail.contains("address already in use")
            }
            _ => false,
        }
    }
}

/// Whether a missing control plane must fail the run (`CI=true` or `TANIUM_REQUIRE_K8S=1`).
pub fn control_plane_required() -> bool {
    REQUIRE_ENV.iter().any(|name| {
        std::env::var(name).is_ok_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            !v.is_empty() && v != "0" && v != "false" && v != "no"
        })
    })
}

/// Starts a [`ControlPlane`] or returns from the enclosing (async, unit-returning) test after printing
/// `SKIPPED: ...` when the binaries are missing. Panics instead when [`control_plane_required`] (CI).
///
/// ```no_run
/// # async fn t() {
/// let cp = tanium_testenv::require_control_plane!();
/// # let _ = cp;
/// # }
/// ```
#[macro_export]
macro_rules! require_control_plane {
    () => {
        match $crate::ControlPlane::start_or_skip().await {
            ::std::option::Option::Some(cp) => cp,
            ::std::option::Option::None => return,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The versions the library expects are the ones the script builds.
    #[test]
    fn versions_match_the_binaries_script() {
        let script = include_str!("../../scripts/k8s-test-bins.sh");
        assert!(script.contains(&format!("\nK8S_VERSION={K8S_VERSION}\n")));
        assert!(script.contains(&format!("\nETCD_VERSION={ETCD_VERSION}\n")));
        assert!(script.contains(&format!("\nHELM_VERSION={HELM_VERSION}\n")));
    }

    #[test]
    fn port_clash_is_recognised() {
        let e = Error::ProcessExited {
            process: "etcd",
            status: "exit status: 1".into(),
            log_tail: "listen tcp 127.0.0.1:1234: bind: address already in use".into(),
        };
        assert!(e.is_port_clash());
        assert!(!e.is_binary_missing());
    }
}
