//! The ad-hoc CLI (`endpoints`, `preview`, `dec`) as a process against tanium-sim over real HTTP: real output,
//! real exit codes, checked against the simulator's own state and audit.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use common::Run;
use serde_json::Value;
use tanium_operator::controller::preview::action_digest;
use tanium_operator::crd::TaniumAction;
use tanium_sim::{
    AuditOutcome, EndpointSpec, FleetSource, Platform, SimConfig, SimServer, TokenUser,
};

const TOKEN: &str = "token-cli-test-5d2a8e41";
const BAD_TOKEN: &str = "token-revoked-77c1b90e";

async fn sim(fleet: usize, time_scale: f64) -> SimServer {
    tanium_sim::start(SimConfig {
        fleet: FleetSource::Generated {
            size: fleet,
            seed: 11,
        },
        tokens: vec![TokenUser::new(TOKEN, "cli")],
        // A new Direct Connect connection reports CONNECTING for 2 sim-seconds; at 10x that is 0.2 s.
        time_scale,
        ..SimConfig::default()
    })
    .await
    .expect("sim starts")
}

fn command(sim: &SimServer, token: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tanium-operator"));
    cmd.args(args)
        .env("TANIUM_GATEWAY_URL", sim.url())
        .env("TANIUM_TOKEN", token)
        .env_remove("TANIUM_TOKEN_FILE")
        .env_remove("TANIUM_CA_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Run the binary while this test's runtime keeps serving the sim.
async fn cli(sim: &SimServer, args: &[&str]) -> Run {
    cli_as(sim, TOKEN, args).await
}

async fn cli_as(sim: &SimServer, token: &str, args: &[&str]) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(60), command(sim, token, args).output())
        .await
        .expect("the command finishes within 60 s")
        .expect("the binary runs");
    Run::from(out)
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{run}"))
}

/// Every endpoint the sim holds: the fixtures and the generated ids (1000001 on).
fn fleet(sim: &SimServer) -> Vec<EndpointSpec> {
    let mut out: Vec<EndpointSpec> = ["12323", "54321", "21212", "274177"]
        .iter()
        .filter_map(|id| sim.sim().endpoint(id))
        .collect();
    let mut id = 1_000_001u64;
    while let Some(e) = sim.sim().endpoint(&id.to_string()) {
        out.push(e);
        id += 1;
    }
    assert_eq!(
        out.len(),
        sim.sim().endpoint_count(),
        "the walk saw every endpoint"
    );
    out
}

fn audit_ops(sim: &SimServer, operation: &str) -> Vec<Vec<String>> {
    sim.sim()
        .audit()
        .into_iter()
        .filter(|e| e.operation == operation)
        .map(|e| match e.outcome {
            AuditOutcome::Ok { ids } | AuditOutcome::Dropped { ids } => ids,
            AuditOutcome::Error { message } => vec![format!("error: {message}")],
        })
        .collect()
}

/// Every connection opened was closed, each once.
fn assert_connections_closed(sim: &SimServer) {
    let opened: Vec<String> = audit_ops(sim, "directConnectOpen").concat();
    let mut closed: Vec<String> = audit_ops(sim, "directConnectClose").concat();
    let mut opened_sorted = opened.clone();
    opened_sorted.sort();
    closed.sort();
    assert_eq!(opened_sorted, closed, "opened vs closed connections");
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}.yaml", env!("CARGO_MANIFEST_DIR"))
}

fn spec_of(path: &str) -> TaniumAction {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("example"))
        .expect("a TaniumAction")
}

#[tokio::test]
async fn endpoints_lists_exactly_what_the_filter_selects() {
    let sim = sim(300, 10.0).await;
    let expected: BTreeSet<String> = fleet(&sim)
        .into_iter()
        .filter(|e| e.platform == Platform::Linux && e.name.starts_with("host-0001"))
        .map(|e| e.id)
        .collect();
    assert!(
        expected.len() > 3,
        "the fleet has a few matches: {expected:?}"
    );
    let filter = "{filters: [{sensor: {name: OS Platform}, op: EQ, value: Linux}, \
                  {sensor: {name: Computer Name}, op: STARTS_WITH, value: host-0001}]}";

    let run = cli(&sim, &["endpoints", "--filter", filter, "-o", "json"]).await;
    assert_eq!(run.code, 0, "{run}");
    let out = json(&run);
    assert_eq!(out["total"], expected.len() as u64, "{run}");
    let got: BTreeSet<String> = out["endpoints"]
        .as_array()
        .expect("endpoints[]")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(got, expected);
    let first = &out["endpoints"][0];
    let spec = sim
        .sim()
        .endpoint(first["id"].as_str().unwrap_or_default())
        .expect("known");
    assert_eq!(first["computerName"], spec.name.as_str());
    assert_eq!(first["platform"], "Linux");
    assert_eq!(first["ipAddress"], spec.ip.as_str());

    // The same filter as JSON from a file; a table with a footer, cut by --limit.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("filter.json");
    let as_json: Value = serde_yaml_ng::from_str(filter).expect("yaml");
    std::fs::write(&file, as_json.to_string()).expect("write");
    let file = file.display().to_string();
    let run = cli(&sim, &["endpoints", "--filter-file", &file, "--limit", "3"]).await;
    assert_eq!(run.code, 0, "{run}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "header, 3 rows, footer:\n{run}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("COMPUTER NAME") && lines[0].contains("IP")
    );
    for row in &lines[1..4] {
        let id = row.split_whitespace().next().unwrap_or_default();
        assert!(expected.contains(id), "{id} is not a match:\n{run}");
    }
    assert_eq!(lines[4], format!("showing 3 of {}", expected.len()));

    // An invalid filter is refused before anything is sent (the Gateway URL is not even reachable).
    let mut cmd = command(
        &sim,
        TOKEN,
        &[
            "endpoints",
            "--filter",
            "{sensor: {name: OS Platform}, op: EQ}",
        ],
    );
    cmd.env("TANIUM_GATEWAY_URL", "http://127.0.0.1:1");
    let out = cmd.output().await.expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a sensor comparison needs a value"),
        "{stderr}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn preview_prints_the_controllers_digest_and_deploys_nothing() {
    let sim = sim(200, 10.0).await;
    let linux = fleet(&sim)
        .iter()
        .filter(|e| e.platform == Platform::Linux)
        .count() as u64;
    let windows = fleet(&sim)
        .iter()
        .filter(|e| e.platform == Platform::Windows)
        .count() as u64;

    // Held for approval: the count, the digest the controller computes, and the command that approves it.
    let path = example("needs-preview-approval");
    let obj = spec_of(&path);
    let digest = action_digest(&obj.spec, linux);
    let run = cli(&sim, &["preview", "-f", &path]).await;
    assert_eq!(run.code, 1, "held back means exit 1:\n{run}");
    assert!(
        run.stdout
            .contains(&format!("Matches:      {linux} endpoint(s)")),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!("Digest:       {digest}")),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!(
            "kubectl annotate taniumaction needs-preview-approval --overwrite \
             tanium-operator.dev/approved-preview={digest}"
        )),
        "{run}"
    );

    // With that digest in the annotation, the same manifest would deploy.
    let dir = tempfile::tempdir().expect("tempdir");
    let approved = dir.path().join("approved.yaml");
    let text = std::fs::read_to_string(&path)
        .expect("example")
        .replace(
            "  name: needs-preview-approval\n",
            &format!(
                "  name: needs-preview-approval\n  annotations:\n    tanium-operator.dev/approved-preview: \"{digest}\"\n"
            ),
        );
    std::fs::write(&approved, text).expect("write");
    let run = cli(
        &sim,
        &[
            "preview",
            "-f",
            &approved.display().to_string(),
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    let out = json(&run);
    assert_eq!(out["allWouldDeploy"], true);
    assert_eq!(out["actions"][0]["digest"], digest.as_str());
    assert_eq!(out["actions"][0]["heldBy"], Value::Null);

    // Several documents on stdin, another kind among them: each action on its own, the other kind skipped.
    let blocked = example("blocked-by-max-targets");
    let by_id = example("tag-by-endpoint-id");
    let tag = example("tag-linux-servers");
    let mut all = String::new();
    for p in [&blocked, &tag, &by_id] {
        all.push_str(&std::fs::read_to_string(p).expect("example"));
        all.push_str("\n---\n");
    }
    let mut cmd = command(&sim, TOKEN, &["preview", "-f", "-", "-o", "json"]);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(all.as_bytes()).await.expect("write stdin");
    }
    let out = child.wait_with_output().await.expect("runs");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("skipping TaniumTag"), "{run}");
    let out = json(&run);
    let actions = out["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 2, "{run}");
    assert_eq!(actions[0]["name"], "blocked-by-max-targets");
    assert_eq!(actions[0]["count"], windows);
    assert_eq!(actions[0]["heldBy"]["reason"], "TooManyTargets");
    assert_eq!(
        actions[0]["digest"],
        action_digest(&spec_of(&blocked).spec, windows).as_str()
    );
    assert_eq!(actions[0]["sample"].as_array().map(Vec::len), Some(10));
    assert_eq!(actions[1]["name"], "tag-by-endpoint-id");
    assert_eq!(actions[1]["count"], 1);
    assert_eq!(actions[1]["wouldDeploy"], true);
    assert_eq!(
        actions[1]["sample"][0]["id"], "274177",
        "the example's one endpoint"
    );

    // Nothing was deployed, nor changed at all.
    assert!(audit_ops(&sim, "actionPerform").is_empty());
    assert_eq!(sim.sim().audit().len(), 0, "{:?}", sim.sim().audit());
    sim.shutdown().await;
}

#[tokio::test]
async fn preview_names_an_unknown_package_and_exits_1() {
    let sim = sim(50, 10.0).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("unknown.yaml");
    std::fs::write(
        &path,
        "apiVersion: tanium-operator.dev/v1alpha1\nkind: TaniumAction\nmetadata: {name: nope, namespace: ops}\n\
         spec:\n  package: {name: No Such Package 42}\n  targets: {endpoints: [\"12323\"]}\n",
    )
    .expect("write");
    let path = path.display().to_string();
    let run = cli(&sim, &["preview", "-f", &path]).await;
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stdout.contains(
            "held back: UnknownPackage: Tanium has no package named \"No Such Package 42\""
        ),
        "{run}"
    );
    assert!(run.stdout.contains("TaniumAction: ops/nope"), "{run}");
    assert!(
        run.stdout.contains("0 of 1 TaniumAction(s) would deploy"),
        "{run}"
    );
    let out = json(&cli(&sim, &["preview", "-f", &path, "-o", "json"]).await);
    assert_eq!(out["actions"][0]["heldBy"]["reason"], "UnknownPackage");
    assert_eq!(
        out["actions"][0]["count"],
        Value::Null,
        "no preview after a failed check"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn dec_reads_and_ends_a_process_and_closes_every_connection() {
    let sim = sim(50, 10.0).await;
    let server = sim.sim().endpoint("12323").expect("the seed's endpoint");

    let run = cli(&sim, &["dec", "cpu", "--endpoint", "12323", "-o", "json"]).await;
    assert_eq!(run.code, 0, "{run}");
    let out = json(&run);
    assert_eq!(out["endpoint"]["id"], "12323");
    assert_eq!(out["endpoint"]["computerName"], server.name.as_str());
    // The Gateway's Float may lose the last digits on the way; the value is the endpoint's own.
    let close = |v: &Value, want: f64| v.as_f64().is_some_and(|g| (g - want).abs() < 1e-9);
    assert!(close(&out["cpuUsagePercent"], server.cpu_percent), "{run}");
    assert!(
        close(&out["memoryUsedPercent"], server.memory_percent),
        "{run}"
    );
    let run = cli(&sim, &["dec", "cpu", "--computer-name", &server.name]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains("CPU%") && run.stdout.contains("MEMORY%"),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!("{:.1}", server.cpu_percent)),
        "{run}"
    );

    let run = cli(
        &sim,
        &[
            "dec",
            "processes",
            "--endpoint",
            "12323",
            "--name-contains",
            "NOTEPAD",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "header, one process, footer:\n{run}");
    for col in ["PID", "PPID", "NAME", "USER", "MEMORY", "CPU%"] {
        assert!(lines[0].contains(col), "{run}");
    }
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &cells[..4],
        &["7056", "4120", "notepad.exe", "admin"],
        "{run}"
    );
    assert!(lines[1].contains("4.1 MiB"), "{run}");
    let out = json(
        &cli(
            &sim,
            &[
                "dec",
                "processes",
                "--endpoint",
                "12323",
                "--top",
                "2",
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(out["matched"], server.processes.len());
    let mems: Vec<i64> = out["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|p| p["memoryResidentBytes"].as_i64().unwrap_or(-1))
        .collect();
    let mut largest: Vec<i64> = server.processes.iter().map(|p| p.memory).collect();
    largest.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(mems, largest[..2].to_vec());

    let run = cli(
        &sim,
        &["dec", "alerts", "--endpoint", "12323", "--since", "20000d"],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains("available-mem") && run.stdout.contains("FIRING"),
        "{run}"
    );

    // Without --yes: says what it would end, sends nothing, exit 2.
    let opened_before = audit_ops(&sim, "directConnectOpen").len();
    let run = cli(
        &sim,
        &[
            "dec",
            "kill",
            "--endpoint",
            "12323",
            "--pid",
            "7056",
            "--name",
            "notepad.exe",
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains("7056")
            && run.stderr.contains("notepad.exe")
            && run.stderr.contains("--yes")
    );
    assert_eq!(audit_ops(&sim, "directConnectOpen").len(), opened_before);
    assert!(audit_ops(&sim, "directConnectProcessTerminate").is_empty());
    assert!(
        sim.sim()
            .endpoint("12323")
            .expect("known")
            .processes
            .iter()
            .any(|p| p.pid == 7056)
    );

    let run = cli(
        &sim,
        &[
            "dec",
            "kill",
            "--endpoint",
            "12323",
            "--pid",
            "7056",
            "--name",
            "notepad.exe",
            "--yes",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout
            .starts_with("ended: process 7056 \"notepad.exe\""),
        "{run}"
    );
    assert!(
        !sim.sim()
            .endpoint("12323")
            .expect("known")
            .processes
            .iter()
            .any(|p| p.pid == 7056)
    );
    assert_eq!(
        audit_ops(&sim, "directConnectProcessTerminate").len(),
        1,
        "terminate sent once"
    );

    // Again: the process is gone.
    let run = cli(
        &sim,
        &[
            "dec",
            "kill",
            "--endpoint",
            "12323",
            "--pid",
            "7056",
            "--name",
            "notepad.exe",
            "--yes",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(json(&run)["outcome"], "noSuchProcess");

    assert!(audit_ops(&sim, "directConnectOpen").len() >= 7);
    assert_connections_closed(&sim);
    sim.shutdown().await;
}

#[tokio::test]
async fn dec_says_clearly_when_the_endpoint_is_not_one() {
    let sim = sim(50, 10.0).await;
    let run = cli(&sim, &["dec", "cpu", "--endpoint", "424242424"]).await;
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr
            .contains("Tanium knows no endpoint with id 424242424"),
        "{run}"
    );
    let mut twin = EndpointSpec::new("twin-host", Platform::Linux);
    twin.ip = "10.9.9.1".into();
    let mut twin2 = twin.clone();
    twin2.ip = "10.9.9.2".into();
    sim.sim().add_endpoints(vec![twin, twin2]);
    let run = cli(&sim, &["dec", "cpu", "--computer-name", "twin-host"]).await;
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("2 endpoints are named \"twin-host\""),
        "{run}"
    );
    assert!(
        run.stderr.contains("10.9.9.1") && run.stderr.contains("--endpoint"),
        "{run}"
    );
    assert!(
        audit_ops(&sim, "directConnectOpen").is_empty(),
        "nothing opened"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_rejected_token_is_named_never_printed() {
    let sim = sim(50, 10.0).await;
    for args in [
        &["endpoints"][..],
        &["dec", "cpu", "--endpoint", "12323"][..],
        &["preview", "-f", &example("tag-by-endpoint-id")][..],
    ] {
        let run = cli_as(&sim, BAD_TOKEN, args).await;
        assert_eq!(run.code, 1, "{run}");
        assert!(run.stderr.contains("rejected the API token"), "{run}");
        assert!(
            !run.stdout.contains(BAD_TOKEN) && !run.stderr.contains(BAD_TOKEN),
            "{run}"
        );
    }
    // The token file is read (and trimmed) too; it is not printed either.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).expect("write");
    let mut cmd = command(&sim, BAD_TOKEN, &["endpoints", "--limit", "1"]);
    cmd.env("TANIUM_TOKEN_FILE", &file);
    let out = cmd.output().await.expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(TOKEN));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(TOKEN));
    // No token at all: a clear message.
    let mut cmd = command(&sim, "", &["endpoints"]);
    cmd.env_remove("TANIUM_TOKEN");
    let out = cmd.output().await.expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API token"));
    sim.shutdown().await;
}

#[tokio::test]
async fn ctrl_c_while_connecting_still_closes_the_connection() {
    // Slow clock: the connection stays CONNECTING for 40 s, so the interrupt lands in the wait.
    let sim = sim(50, 0.05).await;
    let child = command(
        &sim,
        TOKEN,
        &["dec", "cpu", "--endpoint", "12323", "--ready-timeout", "5m"],
    )
    .spawn()
    .expect("spawn");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while audit_ops(&sim, "directConnectOpen").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never opened a connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().expect("running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits after Ctrl-C")
        .expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(audit_ops(&sim, "directConnectOpen").len(), 1);
    assert_connections_closed(&sim);
    sim.shutdown().await;
}
