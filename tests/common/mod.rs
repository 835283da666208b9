//! An operator test environment: a real kube-apiserver + etcd, tanium-sim over HTTP, the CRDs, and the
//! controllers running in-process (stoppable and restartable, as a crashed and restarted operator would be).

#![allow(dead_code)] // each test binary uses its own part of this

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use secrecy::SecretString;
use tanium_operator::controller::{Config, Context, Policy, Timing};
use tanium_operator::crd::{self, TaniumAction};
use tanium_operator::gateway::{GatewayClient, GatewayConfig, RetryPolicy};
use tanium_sim::{AuditOutcome, FleetSource, SimConfig, SimServer, TokenUser};
use tanium_testenv::ControlPlane;

pub const TOKEN: &str = "token-operator-integration-7f3a9c";
pub const OPENSSH_MD5: &str = "4bf0d5083604b3f8c67c6d0dd310e355";
pub const KILL_PACKAGE: &str = "Kill Process - ||Running Processes with MD5 Hash_MD5 Hash||";

pub struct Env {
    pub cp: ControlPlane,
    pub sim: SimServer,
    pub client: kube::Client,
    pub policy: Policy,
    controller: Option<(Arc<Context>, tokio::task::JoinHandle<()>)>,
}

/// What an object's Tanium action names carry: a TaniumAction's name comes from its manifest (namespace, name and
/// a digest of the spec: the same for a re-created object), a TaniumTag round's carries the object's uid.
pub fn action_name_needle(obj: &(impl kube::Resource + serde::Serialize)) -> String {
    let value = serde_json::to_value(obj).expect("object as JSON");
    let meta = obj.meta();
    if value["kind"] == "TaniumAction" {
        let spec: crd::TaniumActionSpec =
            serde_json::from_value(value["spec"].clone()).expect("a TaniumAction spec");
        spec.tanium_action_name(
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        )
    } else {
        meta.uid.clone().expect("uid")
    }
}

/// Timing for tests: the same logic, shorter waits.
pub fn fast_timing() -> Timing {
    Timing {
        poll_min: Duration::from_millis(300),
        poll_max: Duration::from_secs(1),
        blocked: Duration::from_secs(1),
        permanent_error: Duration::from_secs(2),
        deletion_timeout: Duration::from_secs(30),
        error_backoff_max: Duration::from_secs(2),
        lookup_grace: Duration::from_secs(1),
        // In-process, with no lease: half the grace.
        intent_max_age: Duration::from_millis(500),
        gone_after: Duration::from_secs(5),
        // The sim's two-minute idle timeout at its time scale of 20.
        dc_idle_timeout: Duration::from_secs(6),
        dc_ready_timeout: Duration::from_secs(10),
        // As in production: a test's actions end well inside it, so their counts are written with their end.
        results_write: Duration::from_secs(30),
        connection_recheck: Duration::from_secs(2),
    }
}

impl Env {
    /// `None` (after a loud SKIPPED line) when the Kubernetes binaries are missing outside CI.
    pub async fn start(policy: Policy, tweak: impl FnOnce(&mut SimConfig)) -> Option<Self> {
        let cp = ControlPlane::start_or_skip().await?;
        let mut config = SimConfig {
            fleet: FleetSource::Generated { size: 200, seed: 7 },
            tokens: vec![
                TokenUser::new(TOKEN, "operator"),
                TokenUser::new("token-second-person", "approver"),
            ],
            // Sim seconds per real second: actions finish in a second or two, expiry in a few.
            time_scale: 20.0,
            ..SimConfig::default()
        };
        tweak(&mut config);
        let sim = tanium_sim::start(config).await.expect("sim starts");
        let client = cp.client();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for c in crd::crds() {
            let name = c.metadata.name.clone().expect("CRD name");
            crds.patch(
                &name,
                &PatchParams::apply("tests").force(),
                &Patch::Apply(&c),
            )
            .await
            .expect("CRD applies");
            tokio::time::timeout(
                Duration::from_secs(30),
                await_condition(crds.clone(), &name, conditions::is_crd_established()),
            )
            .await
            .expect("CRD established in time")
            .expect("CRD watch");
        }
        Some(Self {
            cp,
            sim,
            client,
            policy,
            controller: None,
        })
    }

    pub fn gateway(&self, token: &str) -> GatewayClient {
        let mut config = GatewayConfig::new(self.sim.url(), SecretString::from(token.to_owned()));
        config.retry = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        };
        config.request_timeout = Duration::from_secs(5);
        GatewayClient::new(config).expect("gateway client")
    }

    /// Start the controllers with a fresh context (as a restarted process has).
    pub fn start_controller(&mut self) -> Arc<Context> {
        self.start_controller_with_token(TOKEN)
    }

    pub fn start_controller_with_token(&mut self, token: &str) -> Arc<Context> {
        let client = self.client.clone();
        self.start_controller_as(client, token)
    }

    /// Start the controllers with a given Kubernetes identity (e.g. the chart's ServiceAccount).
    pub fn start_controller_as(&mut self, client: kube::Client, token: &str) -> Arc<Context> {
        self.start_controller_with(client, token, |_| {})
    }

    /// Start the controllers with the test configuration, changed by `tweak`.
    pub fn start_controller_with(
        &mut self,
        client: kube::Client,
        token: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> Arc<Context> {
        self.stop_controller();
        let mut config = Config {
            policy: self.policy.clone(),
            timing: fast_timing(),
            concurrency: 8,
            ..Config::default()
        };
        tweak(&mut config);
        let ctx = Arc::new(Context::new(client, self.gateway(token), config));
        let task = tokio::spawn(tanium_operator::runtime::run(
            ctx.clone(),
            std::future::pending(),
        ));
        self.controller = Some((ctx.clone(), task));
        ctx
    }

    /// Kill the controllers mid-flight: the task is dropped wherever it is, as a SIGKILL would leave it.
    pub fn stop_controller(&mut self) {
        if let Some((_, task)) = self.controller.take() {
            task.abort();
        }
    }

    pub async fn namespace(&self, name: &str) -> Api<TaniumAction> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("namespace");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace created");
        Api::namespaced(self.client.clone(), name)
    }

    /// Create a TaniumAction from its manifest's JSON form.
    pub async fn create(
        &self,
        api: &Api<TaniumAction>,
        manifest: serde_json::Value,
    ) -> TaniumAction {
        let obj: TaniumAction =
            serde_json::from_value(manifest).expect("manifest is a TaniumAction");
        api.create(&PostParams::default(), &obj)
            .await
            .expect("created")
    }

    /// Wait until `done` holds for the TaniumAction.
    pub async fn wait_for(
        &self,
        api: &Api<TaniumAction>,
        name: &str,
        what: &str,
        done: impl Fn(&TaniumAction) -> bool,
    ) -> TaniumAction {
        self.wait_until(api, name, what, done).await
    }

    pub async fn wait_gone(&self, api: &Api<TaniumAction>, name: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while api.get_opt(name).await.expect("get").is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} was not deleted in time"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// actionPerform calls per action name, from the sim's audit: (committed, all attempts).
    pub fn performs(&self) -> HashMap<String, (usize, usize)> {
        performs_on(&self.sim)
    }

    /// Committed actionPerform calls under this object's Tanium action name(s).
    pub fn performs_for(&self, obj: &(impl kube::Resource + serde::Serialize)) -> usize {
        committed_for(&self.performs(), obj)
    }

    /// Every mutation the sim has recorded so far.
    pub fn mutation_count(&self) -> usize {
        self.sim.sim().audit().len()
    }

    /// Wait until `done` holds for an object of any kind.
    pub async fn wait_until<K>(
        &self,
        api: &Api<K>,
        name: &str,
        what: &str,
        done: impl Fn(&K) -> bool,
    ) -> K
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let obj = api.get(name).await.expect("get");
            if done(&obj) {
                return obj;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{name}: timed out waiting for {what}: {obj:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The suite-wide promise: no action name was ever deployed twice.
    pub fn assert_exactly_once(&self) {
        for (name, (committed, _)) in self.performs() {
            assert!(committed <= 1, "{name:?} was deployed {committed} times");
        }
    }

    /// Mutations of one kind whose input mentions `needle` (e.g. actionStop of an action id).
    pub fn mutations(&self, operation: &str, needle: &str) -> Vec<AuditOutcome> {
        self.sim
            .sim()
            .audit()
            .into_iter()
            .filter(|e| e.operation == operation && e.input.to_string().contains(needle))
            .map(|e| e.outcome)
            .collect()
    }

    /// (reason, note) of the events about one object.
    pub async fn events(&self, namespace: &str, name: &str) -> Vec<(String, String)> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), namespace);
        events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// The events about one object once one of them matches `wanted` (reason, note); events are published when
    /// the reconcile that raised them is over, so they may trail the status write a test waited for.
    pub async fn wait_for_event(
        &self,
        namespace: &str,
        name: &str,
        wanted: impl Fn(&str, &str) -> bool,
    ) -> Vec<(String, String)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events(namespace, name).await;
            if events.iter().any(|(r, n)| wanted(r, n)) {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{namespace}/{name}: no such event in {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kubectl <args>` against this control plane, stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        kubectl(&self.cp, args)
    }
}

/// `kubectl <args>` against a control plane (which must succeed), stdout.
pub fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let kubectl = cp.binaries().kubectl().expect("pinned kubectl");
    let out = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Helm chart's install namespace and release name in tests.
pub const CHART_NAMESPACE: &str = "tanium-system";
pub const CHART_RELEASE: &str = "tanium-operator";
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/tanium-operator");

impl Env {
    /// `helm <args>` with the pinned helm, stdout.
    pub fn helm(&self, args: &[&str]) -> String {
        let helm = self
            .cp
            .binaries()
            .helm()
            .expect("pinned helm (./scripts/k8s-test-bins.sh)");
        let out = std::process::Command::new(helm)
            .args(args)
            .output()
            .expect("helm runs");
        assert!(
            out.status.success(),
            "helm {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Render the chart for this environment's sim.
    pub fn render_chart(&self) -> String {
        self.render_chart_with(&[])
    }

    /// Render the chart for this environment's sim, with more `helm template` arguments (`--set=...`).
    pub fn render_chart_with(&self, extra: &[&str]) -> String {
        let gateway = format!("--set=gateway.url={}", self.sim.url());
        let kube_version = format!("--kube-version={}", tanium_testenv::K8S_VERSION);
        let mut args = vec![
            "template",
            CHART_RELEASE,
            CHART,
            "--namespace",
            CHART_NAMESPACE,
            &kube_version,
            &gateway,
        ];
        args.extend_from_slice(extra);
        self.helm(&args)
    }

    /// Render the chart and apply every object to the apiserver (server-side); returns kubectl's output.
    pub fn apply_chart(&self) -> String {
        self.kubectl(&["create", "namespace", CHART_NAMESPACE]);
        let rendered = self.render_chart();
        self.apply_yaml(&rendered)
    }

    /// Apply every object of a YAML stream (server-side); returns kubectl's output.
    pub fn apply_yaml(&self, yaml: &str) -> String {
        use std::io::Write as _;
        let kubectl = self.cp.binaries().kubectl().expect("pinned kubectl");
        let mut apply = std::process::Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(self.cp.kubeconfig_path())
            .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        apply
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("writes");
        let out = apply.wait_with_output().expect("kubectl exits");
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_controller();
    }
}

/// A manifest from `examples/`, as JSON.
pub fn example(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn phase(obj: &TaniumAction) -> Option<String> {
    obj.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| p.to_string())
}

/// "The TaniumAction is in `p`", for `Env::wait_for`.
pub fn phase_is(p: &'static str) -> impl Fn(&TaniumAction) -> bool {
    move |o| phase(o).as_deref() == Some(p)
}

pub fn ready_reason(obj: &TaniumAction) -> Option<String> {
    obj.status
        .as_ref()
        .and_then(|s| crd::condition(&s.conditions, crd::condition::READY))
        .map(|c| c.reason.clone())
}

/// The Ready condition's message.
pub fn ready_message(obj: &TaniumAction) -> Option<String> {
    obj.status
        .as_ref()
        .and_then(|s| crd::condition(&s.conditions, crd::condition::READY))
        .map(|c| c.message.clone())
}

/// The Deployed condition's reason: Deployed, Recovered (found by name after a lost answer) or Adopted (found by
/// name before the first deployment: the same manifest deployed it before).
pub fn deployed_reason(obj: &TaniumAction) -> Option<String> {
    obj.status
        .as_ref()
        .and_then(|s| crd::condition(&s.conditions, crd::condition::DEPLOYED))
        .map(|c| c.reason.clone())
}

/// Nothing the operator wrote about an object holds the token.
pub fn assert_no_token(obj: &TaniumAction) {
    let text = serde_json::to_string(obj).unwrap_or_default();
    assert!(
        !text.contains(TOKEN),
        "the token leaked into {}",
        obj.metadata.name.as_deref().unwrap_or("")
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The operator binary as its own process, as a Deployment would run it; its log goes to `<dir>/<name>.log`
/// (appended to, so that a restarted replica keeps one log).
/// Given among [`OperatorProcess::spawn`]'s vars: the binary's own policy defaults (the approval threshold on),
/// not the tests' (off).
pub const BINARY_DEFAULTS: (&str, &str) = ("", "binary defaults");

pub struct OperatorProcess {
    pub name: String,
    pub port: u16,
    pub child: std::process::Child,
    pub log: std::path::PathBuf,
}

impl OperatorProcess {
    /// `tanium-operator run` against `env`'s sim as `kubeconfig`'s identity, with the token in `<dir>/token`, fast
    /// polling, and `vars` on top (later ones win).
    pub fn spawn(
        env: &Env,
        kubeconfig: &std::path::Path,
        dir: &std::path::Path,
        name: &str,
        vars: &[(&str, &str)],
    ) -> Self {
        let token = dir.join("token");
        if !token.exists() {
            std::fs::write(&token, TOKEN).expect("token file");
        }
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tanium-operator"));
        command
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("TANIUM_GATEWAY_URL", env.sim.url())
            .env("TANIUM_TOKEN_FILE", &token)
            .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("TANIUM_POLL_MIN_SECONDS", "1")
            .env("TANIUM_POLL_MAX_SECONDS", "2")
            .env("POD_NAME", name)
            .stdout(std::process::Stdio::null())
            .stderr(file);
        // The tests of other promises deploy to whole fleets; the approval threshold (on by default) has tests of
        // its own, which pass `BINARY_DEFAULTS` to run the binary as installed.
        if !vars.contains(&BINARY_DEFAULTS) {
            command.env("TANIUM_APPROVAL_THRESHOLD", "off");
        }
        for (k, v) in vars.iter().filter(|v| **v != BINARY_DEFAULTS) {
            command.env(k, v);
        }
        let child = command.spawn().expect("the operator starts");
        Self {
            name: name.to_owned(),
            port,
            child,
            log,
        }
    }

    /// SIGKILL: no drain, no goodbye, wherever it is.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: frozen where it is, as a paused VM, a cgroup freeze or a long stall would leave it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`OperatorProcess::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {}", self.name);
    }

    /// Its `tanium_operator_leader` gauge, if it answers.
    pub async fn leading(&self) -> Option<bool> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with("tanium_operator_leader "))
            .map(|l| l.ends_with(" 1"))
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A finished command: exit code and what it printed (a CLI test's unit of evidence).
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Run {
    fn from(out: std::process::Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// actionPerform calls `sim` saw, by Tanium action name: (committed, attempts).
pub fn performs_on(sim: &tanium_sim::SimServer) -> HashMap<String, (usize, usize)> {
    let mut by_name: HashMap<String, (usize, usize)> = HashMap::new();
    for e in sim.sim().audit() {
        if e.operation != "actionPerform" {
            continue;
        }
        let name = e
            .input
            .pointer("/input/name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
        let entry = by_name.entry(name).or_default();
        entry.1 += 1;
        if e.outcome.is_committed() {
            entry.0 += 1;
        }
    }
    by_name
}

/// Committed actionPerform calls in `performs` (`performs_on`) under this object's Tanium action name(s).
pub fn committed_for(
    performs: &HashMap<String, (usize, usize)>,
    obj: &(impl kube::Resource + serde::Serialize),
) -> usize {
    let needle = action_name_needle(obj);
    performs
        .iter()
        .filter(|(name, _)| name.contains(&needle))
        .map(|(_, (c, _))| c)
        .sum()
}

/// Create the TaniumConnection `name` with `spec` where `api` points.
pub async fn create_connection(
    api: &Api<crd::TaniumConnection>,
    name: &str,
    spec: serde_json::Value,
) -> crd::TaniumConnection {
    let conn: crd::TaniumConnection = serde_json::from_value(serde_json::json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumConnection", "metadata": {"name": name},
        "spec": spec
    }))
    .expect("a TaniumConnection");
    api.create(&PostParams::default(), &conn)
        .await
        .unwrap_or_else(|e| panic!("TaniumConnection {name} created: {e}"))
}
