//! etcd + kube-apiserver on loopback, torn down on drop.

use std::ffi::OsString;
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use kube::{Api, Client, Config};
use tempfile::TempDir;

use crate::pki::Pki;
use crate::process::Supervised;
use crate::{Binaries, Error, control_plane_required};

/// How often a start that lost a port race is retried on fresh ports.
const START_ATTEMPTS: u32 = 5;
/// Default start-up timeout per process; `TANIUM_TESTENV_TIMEOUT_SECS` overrides it (slow or loaded machines).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Set to keep the temporary directory (certificates, kubeconfig, logs, etcd data) after teardown.
const KEEP_DIR_ENV: &str = "TANIUM_TESTENV_KEEP_DIR";
const CLUSTER_NAME: &str = "tanium-testenv";
/// Temporary directories are `$TMPDIR/tanium-testenv-XXXXXX`, holding the owning process id in `owner.pid`.
const DIR_PREFIX: &str = "tanium-testenv-";
const OWNER_FILE: &str = "owner.pid";

/// Who a client or kubeconfig acts as.
///
/// Every identity authenticates with the admin client certificate; any other identity is then *impersonated*
/// (`Impersonate-User`/`Impersonate-Group` headers; `as`/`as-groups` in a kubeconfig, which kubectl, helm and kube-rs
/// honour). RBAC evaluates the impersonated user and groups exactly as if they had authenticated, so this is how
/// tests check what a ServiceAccount or user may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    user: String,
    groups: Vec<String>,
}

impl Identity {
    /// `admin` in `system:masters` (cluster-admin through the client certificate, no impersonation).
    pub fn admin() -> Self {
        Identity {
            user: "admin".into(),
            groups: vec!["system:masters".into()],
        }
    }

    /// A user with no groups (the apiserver adds `system:authenticated`); add some with [`Identity::with_group`].
    pub fn user(name: impl Into<String>) -> Self {
        Identity {
            user: name.into(),
            groups: Vec::new(),
        }
    }

    /// ServiceAccount `namespace/name`: user `system:serviceaccount:<ns>:<name>` in groups
    /// `system:serviceaccounts` and `system:serviceaccounts:<ns>`, as its token would authenticate. RoleBindings to
    /// a ServiceAccount subject match it; the ServiceAccount object need not exist.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Identity {
            user: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
            ],
        }
    }

    /// Adds a group.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.user
    }

    /// The groups (besides `system:authenticated`, which the apiserver adds).
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    fn is_admin(&self) -> bool {
        *self == Identity::admin()
    }

    /// A file-name-safe rendering of the user name.
    fn slug(&self) -> String {
        self.user
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// A running etcd + kube-apiserver. Dropping it kills both (process groups, `SIGKILL`), waits for them and removes
/// its temporary directory; that also happens while a panicking test unwinds.
pub struct ControlPlane {
    apiserver: Supervised,
    /// How it was started, to start it again ([`ControlPlane::restart_apiserver`]).
    apiserver_args: Vec<OsString>,
    apiserver_restarts: u32,
    etcd: Supervised,
    client: Client,
    server_url: String,
    version: Info,
    pki: Pki,
    kubeconfig_path: PathBuf,
    binaries: Binaries,
    /// `None` only after it was kept at drop.
    dir: Option<TempDir>,
    dir_path: PathBuf,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server_url", &self.server_url)
            .field("version", &self.version.git_version)
            .field("dir", &self.dir_path)
            .field("etcd_pid", &self.etcd.pid())
            .field("apiserver_pid", &self.apiserver.pid())
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts a control plane with the binaries [`Binaries::locate`] finds.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(Binaries::locate()?).await
    }

    /// Starts a control plane, or returns `None` after printing a loud `SKIPPED` line when the binaries are
    /// missing. Panics when they are missing and [`control_plane_required`] (`CI=true`, `TANIUM_REQUIRE_K8S=1`),
    /// and on any other start-up failure: those are test failures, not skips.
    pub async fn start_or_skip() -> Option<Self> {
        match Self::start().await {
            Ok(cp) => Some(cp),
            Err(e) if e.is_binary_missing() && !control_plane_required() => {
                // Straight to the stderr file descriptor: the test harness captures eprintln!.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n==== SKIPPED: this test needs a real kube-apiserver: {e}\n==== (./scripts/test provides the \
                     binaries; with CI=true or TANIUM_REQUIRE_K8S=1 this is a failure, not a skip)\n"
                );
                None
            }
            Err(e) if e.is_binary_missing() => {
                panic!(
                    "a real kube-apiserver is required here (CI=true or TANIUM_REQUIRE_K8S=1) but {e}"
                )
            }
            Err(e) => panic!("starting the test control plane failed: {e}"),
        }
    }

    /// Starts a control plane with the given binaries; retries on fresh ports when a port race is lost.
    pub async fn start_with(binaries: Binaries) -> Result<Self, Error> {
        let timeout = start_timeout();
        let mut attempt = 1;
        loop {
            match Self::try_start(&binaries, timeout).await {
                Ok(cp) => return Ok(cp),
                Err(e) if e.is_port_clash() && attempt < START_ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "lost a port race; retrying on fresh ports");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_start(binaries: &Binaries, timeout: Duration) -> Result<Self, Error> {
        let started = Instant::now();
        remove_abandoned_dirs();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        let root = dir.path().to_path_buf();
        write_private(&root.join(OWNER_FILE), &std::process::id().to_string())?;
        let [etcd_port, peer_port, api_port] = free_ports()?;

        let pki = Pki::generate()?;
        let file = |name: &str, contents: &str| -> Result<PathBuf, Error> {
            let path = root.join(name);
            write_private(&path, contents)?;
            Ok(path)
        };
        let ca = file("ca.crt", &pki.ca_pem)?;
        let serving_cert = file("apiserver.crt", &pki.serving.cert_pem)?;
        let serving_key = file("apiserver.key", &pki.serving.key_pem)?;
        let sa_key = file("sa.key", &pki.sa_key_pem)?;
        let sa_pub = file("sa.pub", &pki.sa_pub_pem)?;

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args: Vec<OsString> = vec![
            "--name=default".into(),
            arg("--data-dir=", &root.join("etcd")),
            format!("--listen-client-urls={etcd_url}").into(),
            format!("--advertise-client-urls={etcd_url}").into(),
            format!("--listen-peer-urls={peer_url}").into(),
            format!("--initial-advertise-peer-urls={peer_url}").into(),
            format!("--initial-cluster=default={peer_url}").into(),
            "--unsafe-no-fsync=true".into(),
        ];
        let mut etcd = Supervised::start(
            "etcd",
            &binaries.etcd,
            &etcd_args,
            &root,
            root.join("etcd.log"),
        )?;
        wait_for_port("etcd", &mut etcd, etcd_port, timeout).await?;

        let server_url = format!("https://127.0.0.1:{api_port}");
        let apiserver_args: Vec<OsString> = vec![
            format!("--etcd-servers={etcd_url}").into(),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}").into(),
            arg("--cert-dir=", &root.join("apiserver-certs")),
            arg("--tls-cert-file=", &serving_cert),
            arg("--tls-private-key-file=", &serving_key),
            arg("--client-ca-file=", &ca),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            format!("--service-account-issuer={server_url}").into(),
            arg("--service-account-key-file=", &sa_pub),
            arg("--service-account-signing-key-file=", &sa_key),
            // nothing in a test needs the `kubernetes` Service's endpoints (and 127.0.0.1 is not a valid one)
            "--endpoint-reconciler-type=none".into(),
        ];
        let mut apiserver = Supervised::start(
            "kube-apiserver",
            &binaries.kube_apiserver,
            &apiserver_args,
            &root,
            root.join("kube-apiserver.log"),
        )?;

        let admin_kubeconfig = kubeconfig(&server_url, &pki, &Identity::admin());
        let kubeconfig_path = root.join("kubeconfig");
        write_kubeconfig_file(&kubeconfig_path, &admin_kubeconfig)?;

        let client =
            wait_until_ready(&admin_kubeconfig, &mut etcd, &mut apiserver, timeout).await?;
        let version = client.apiserver_version().await?;
        wait_for_default_namespace(&client, &mut etcd, &mut apiserver, timeout).await?;

        let _ = writeln!(
            std::io::stderr(),
            "tanium-testenv: kube-apiserver {} (etcd at {etcd_url}) ready at {server_url} in {:.1}s [{}]",
            version.git_version,
            started.elapsed().as_secs_f64(),
            root.display()
        );
        tracing::info!(%server_url, version = %version.git_version, dir = %root.display(), "control plane ready");

        Ok(ControlPlane {
            apiserver,
            apiserver_args,
            apiserver_restarts: 0,
            etcd,
            client,
            server_url,
            version,
            pki,
            kubeconfig_path,
            binaries: binaries.clone(),
            dir: Some(dir),
            dir_path: root,
        })
    }

    /// A client acting as `admin` (`system:masters`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A client acting as `identity` (see [`Identity`]).
    pub async fn client_for(&self, identity: &Identity) -> Result<Client, Error> {
        let config = Config::from_custom_kubeconfig(
            self.kubeconfig(identity),
            &KubeConfigOptions::default(),
        )
        .await?;
        Ok(Client::try_from(config)?)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The apiserver's `gitVersion`, e.g. `v1.36.3`.
    pub fn version(&self) -> &str {
        &self.version.git_version
    }

    /// The apiserver's whole `/version` answer.
    pub fn version_info(&self) -> &Info {
        &self.version
    }

    /// An admin kubeconfig file (for kubectl, helm, or a process under test via `KUBECONFIG`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// A kubeconfig for `identity`; serialise it anywhere, or use [`ControlPlane::kubeconfig_path_for`].
    pub fn kubeconfig(&self, identity: &Identity) -> Kubeconfig {
        kubeconfig(&self.server_url, &self.pki, identity)
    }

    /// Writes a kubeconfig for `identity` into this plane's directory and returns its path.
    pub fn kubeconfig_path_for(&self, identity: &Identity) -> Result<PathBuf, Error> {
        if identity.is_admin() {
            return Ok(self.kubeconfig_path.clone());
        }
        let path = self
            .dir_path
            .join(format!("kubeconfig-{}", identity.slug()));
        self.write_kubeconfig(identity, &path)?;
        Ok(path)
    }

    /// Writes a kubeconfig for `identity` to `path` (mode 0600).
    pub fn write_kubeconfig(&self, identity: &Identity, path: &Path) -> Result<(), Error> {
        write_kubeconfig_file(path, &self.kubeconfig(identity))
    }

    /// The binaries in use (kubectl and helm are usually beside them).
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// The temporary directory: certificates, kubeconfigs, `etcd.log`, `kube-apiserver.log`, etcd's data.
    /// Removed at teardown unless `TANIUM_TESTENV_KEEP_DIR=1`.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// Process ids of etcd and kube-apiserver (each also its process group id).
    pub fn pids(&self) -> [u32; 2] {
        [self.etcd.pid(), self.apiserver.pid()]
    }

    /// Whether both processes still run.
    pub fn is_running(&mut self) -> bool {
        self.etcd.exited().is_none() && self.apiserver.exited().is_none()
    }

    /// Kills kube-apiserver (`SIGKILL`) and starts it again with the same flags, port, certificates and etcd, as an
    /// upgrade or a crash of a real control plane would; returns once it is ready. Clients keep their URL and
    /// credentials; their connections and watches break meanwhile. Its log is `kube-apiserver-<n>.log`.
    pub async fn restart_apiserver(&mut self) -> Result<(), Error> {
        self.apiserver.kill();
        self.apiserver_restarts += 1;
        let log = self
            .dir_path
            .join(format!("kube-apiserver-{}.log", self.apiserver_restarts));
        self.apiserver = Supervised::start(
            "kube-apiserver",
            &self.binaries.kube_apiserver,
            &self.apiserver_args,
            &self.dir_path,
            log,
        )?;
        let admin = kubeconfig(&self.server_url, &self.pki, &Identity::admin());
        wait_until_ready(&admin, &mut self.etcd, &mut self.apiserver, start_timeout()).await?;
        Ok(())
    }

    /// Kills both processes and removes the directory now (what drop does).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.apiserver.kill();
        self.etcd.kill();
        let keep = std::env::var(KEEP_DIR_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        if let Some(dir) = self.dir.take() {
            if keep {
                let kept = dir.keep();
                let _ = writeln!(std::io::stderr(), "tanium-testenv: kept {}", kept.display());
            } else if let Err(e) = dir.close() {
                tracing::warn!(dir = %self.dir_path.display(), error = %e, "removing the control plane's directory");
            }
        }
        tracing::debug!(server_url = %self.server_url, "control plane stopped");
    }
}

fn start_timeout() -> Duration {
    std::env::var("TANIUM_TESTENV_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
}

/// Removes the directories of control planes whose process died without tearing down (SIGKILL: its etcd and
/// kube-apiserver died with it through the parent-death signal, but nobody removed the directory).
fn remove_abandoned_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let path = entry.path();
        // No owner file: just being created by someone else; leave it.
        let Ok(owner) = std::fs::read_to_string(path.join(OWNER_FILE)) else {
            continue;
        };
        // An empty or partial owner file is one being written right now by a starting plane: leave it too.
        let Ok(pid) = owner.trim().parse::<u32>() else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::debug!(dir = %path.display(), "removing an abandoned control plane directory");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn arg(flag: &str, path: &Path) -> OsString {
    let mut s = OsString::from(flag);
    s.push(path.as_os_str());
    s
}

/// Three distinct free loopback ports (they are free now; a lost race is retried by the caller).
fn free_ports() -> Result<[u16; 3], Error> {
    let bind = || {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io("finding a free loopback port", e))
    };
    let listeners = [bind()?, bind()?, bind()?];
    let mut ports = [0u16; 3];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(|e| Error::io("finding a free loopback port", e))?
            .port();
    }
    Ok(ports)
}

fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Kubeconfig files are written as JSON, which is YAML: kubectl, helm and kube-rs all read it.
fn write_kubeconfig_file(path: &Path, config: &Kubeconfig) -> Result<(), Error> {
    let mut text = serde_json::to_string_pretty(config)?;
    text.push('\n');
    write_private(path, &text)
}

fn kubeconfig(server_url: &str, pki: &Pki, identity: &Identity) -> Kubeconfig {
    let user_name = identity.username().to_owned();
    let impersonate = !identity.is_admin();
    Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: CLUSTER_NAME.into(),
            cluster: Some(Cluster {
                server: Some(server_url.into()),
                certificate_authority_data: Some(BASE64.encode(&pki.ca_pem)),
                ..Default::default()
            }),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user_name.clone(),
            auth_info: Some(AuthInfo {
                client_certificate_data: Some(BASE64.encode(&pki.admin.cert_pem)),
                client_key_data: Some(BASE64.encode(&pki.admin.key_pem).into()),
                impersonate: impersonate.then(|| user_name.clone()),
                impersonate_groups: (impersonate && !identity.groups().is_empty())
                    .then(|| identity.groups().to_vec()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: CLUSTER_NAME.into(),
            context: Some(Context {
                cluster: CLUSTER_NAME.into(),
                user: Some(user_name),
                namespace: Some("default".into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        current_context: Some(CLUSTER_NAME.into()),
        ..Default::default()
    }
}

async fn wait_for_port(
    name: &'static str,
    process: &mut Supervised,
    port: u16,
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        process.ensure_running()?;
        let probe = match tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::NotReady {
                process: name,
                waited_secs: timeout.as_secs(),
                last_probe: probe,
                log_tail: process.log_tail(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/readyz` until it answers 200 (every post-start hook done: RBAC bootstrap roles, CRD informers, ...).
async fn wait_until_ready(
    admin: &Kubeconfig,
    etcd: &mut Supervised,
    apiserver: &mut Supervised,
    timeout: Duration,
) -> Result<Client, Error> {
    let config =
        Config::from_custom_kubeconfig(admin.clone(), &KubeConfigOptions::default()).await?;
    let mut probe_config = config.clone();
    probe_config.connect_timeout = Some(Duration::from_secs(2));
    probe_config.read_timeout = Some(Duration::from_secs(5));
    probe_config.default_retry = false;
    let probe = Client::try_from(probe_config)?;

    let deadline = Instant::now() + timeout;
    loop {
        etcd.ensure_running()?;
        apiserver.ensure_running()?;
        let request = http::Request::get("/readyz").body(Vec::new())?;
        let last_probe = match probe.request_text(request).await {
            Ok(_) => return Ok(Client::try_from(config)?),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::NotReady {
                process: "kube-apiserver",
                waited_secs: timeout.as_secs(),
                last_probe,
                log_tail: apiserver.log_tail(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `default` namespace is created by a controller shortly after readiness; tests use it at once.
async fn wait_for_default_namespace(
    client: &Client,
    etcd: &mut Supervised,
    apiserver: &mut Supervised,
    timeout: Duration,
) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        etcd.ensure_running()?;
        apiserver.ensure_running()?;
        let last_probe = match namespaces.get_opt("default").await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => "namespace default does not exist yet".to_owned(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::NotReady {
                process: "kube-apiserver",
                waited_secs: timeout.as_secs(),
                last_probe,
                log_tail: apiserver.log_tail(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        let sa = Identity::service_account("tanium", "operator");
        assert_eq!(sa.username(), "system:serviceaccount:tanium:operator");
        assert_eq!(
            sa.groups(),
            ["system:serviceaccounts", "system:serviceaccounts:tanium"]
        );
        assert_eq!(sa.slug(), "system_serviceaccount_tanium_operator");
        assert!(Identity::admin().is_admin());
        assert!(!Identity::user("admin").is_admin());
        assert_eq!(
            Identity::user("alice").with_group("devs").groups(),
            ["devs"]
        );
    }

    #[test]
    fn kubeconfig_impersonates_everyone_but_admin() {
        let pki = Pki::generate().expect("pki");
        let admin = kubeconfig("https://127.0.0.1:1", &pki, &Identity::admin());
        let user = |k: &Kubeconfig| k.auth_infos[0].auth_info.clone().expect("auth info");
        assert_eq!(user(&admin).impersonate, None);
        let sa = kubeconfig(
            "https://127.0.0.1:1",
            &pki,
            &Identity::service_account("ns", "sa"),
        );
        assert_eq!(
            user(&sa).impersonate.as_deref(),
            Some("system:serviceaccount:ns:sa")
        );
        assert_eq!(user(&sa).impersonate_groups.map(|g| g.len()), Some(2));
        let json = serde_json::to_string(&sa).expect("json");
        assert!(
            json.contains("\"as\":\"system:serviceaccount:ns:sa\""),
            "{json}"
        );
        assert!(json.contains("client-key-data"), "{json}");
    }
}
