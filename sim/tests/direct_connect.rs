//! Direct Connect, both families, including the idle timeout.

mod common;

use common::{Harness, config};
use serde_json::{Value, json};
use tanium_sim::AuditOutcome;

const OPEN: &str =
    "mutation($e: ID!) { directConnectOpen(input: {endpointID: $e}) { connectionID status } }";
const STATUS: &str =
    "query($c: ID!) { directConnectConnectionStatus(input: {connectionID: $c}) { status } }";
const PING: &str = "mutation($c: ID!) { directConnectPing(input: {connectionID: $c}) { result } }";
const READ: &str = "query($c: ID!) { directConnectEndpoint(input: {connectionID: $c}) {
    performance { cpuUsagePercent memoryUsedPercent }
    processes { all { pid ppid name commandLine userName groupName cpuUserTimeSeconds cpuKernelTimeSeconds cpuUsagePercent memoryResidentBytes } }
    alerts { all { schema key type ref topProcessesExpr labels pendingAt start resolvedAt leadup value firing } } } }";
const TERMINATE: &str = "mutation($c: ID!, $pid: Int!, $n: String!) {
    directConnectProcessTerminate(input: {connectionID: $c, pid: $pid, name: $n, signal: SIGKILL}) { result } }";

async fn status(h: &Harness, c: &str) -> Value {
    h.data(STATUS, json!({"c": c})).await["directConnectConnectionStatus"]["status"].clone()
}

#[tokio::test]
async fn current_family_connects_reads_terminates_and_closes() {
    let h = Harness::start(config()).await;
    let o = h.data(OPEN, json!({"e": "12323"})).await["directConnectOpen"].clone();
    assert_eq!(o["status"], "CONNECTING");
    let c = o["connectionID"].as_str().unwrap().to_string();
    assert_eq!(c.len(), 36, "uuid-shaped: {c}");
    let early = h.error(READ, json!({"c": c})).await;
    assert!(early.contains("not ready"), "{early}");
    h.advance(2);
    assert_eq!(status(&h, &c).await, "READY");

    let d = h.data(READ, json!({"c": c})).await["directConnectEndpoint"].clone();
    assert!(
        (d["performance"]["cpuUsagePercent"].as_f64().unwrap() - 28.751501243887798).abs() < 1e-9
    );
    let procs = d["processes"]["all"].as_array().unwrap();
    let receiver = procs.iter().find(|p| p["pid"] == 2092).unwrap();
    assert_eq!(receiver["name"], "TaniumReceiver.exe");
    assert_eq!(receiver["memoryResidentBytes"], 59842560);
    assert!(
        procs
            .iter()
            .any(|p| p["pid"] == 7056 && p["name"] == "notepad.exe")
    );
    let alert = &d["alerts"]["all"][0];
    assert_eq!(alert["type"], "available-mem");
    assert_eq!(alert["labels"], json!({"heuristic": "available-mem"}));
    assert_eq!(alert["leadup"], 300000000000i64);

    let wrong_name = h
        .data(TERMINATE, json!({"c": c, "pid": 7056, "n": "calc.exe"}))
        .await;
    assert_eq!(wrong_name["directConnectProcessTerminate"]["result"], false);
    let t = h
        .data(TERMINATE, json!({"c": c, "pid": 7056, "n": "notepad.exe"}))
        .await;
    assert_eq!(t["directConnectProcessTerminate"]["result"], true);
    let again = h
        .data(TERMINATE, json!({"c": c, "pid": 7056, "n": "notepad.exe"}))
        .await;
    assert_eq!(again["directConnectProcessTerminate"]["result"], false);
    let ep = h.server.sim().endpoint("12323").unwrap();
    assert!(ep.processes.iter().all(|p| p.pid != 7056));

    let close = h
        .data(
            "mutation($c: ID!) { directConnectClose(input: {connectionID: $c}) { result } }",
            json!({"c": c}),
        )
        .await;
    assert_eq!(close["directConnectClose"]["result"], true);
    assert_eq!(status(&h, &c).await, "NOT_FOUND");
    let ops: Vec<String> = h
        .server
        .sim()
        .audit()
        .iter()
        .map(|e| e.operation.clone())
        .collect();
    assert_eq!(
        ops,
        [
            "directConnectOpen",
            "directConnectProcessTerminate",
            "directConnectProcessTerminate",
            "directConnectProcessTerminate",
            "directConnectClose"
        ]
    );
}

#[tokio::test]
async fn unknown_and_offline_endpoints() {
    let h = Harness::start(config()).await;
    let o = h.data(OPEN, json!({"e": "424242"})).await["directConnectOpen"].clone();
    assert_eq!(o["status"], "NOT_FOUND");
    h.server.sim().set_online("54321", false);
    let o = h.data(OPEN, json!({"e": "54321"})).await["directConnectOpen"].clone();
    assert_eq!(o["status"], "ERROR");
    h.advance(5);
    assert_eq!(
        status(&h, o["connectionID"].as_str().unwrap()).await,
        "ERROR"
    );
}

#[tokio::test]
async fn idle_connections_close_and_pings_keep_them_alive() {
    let h = Harness::start(config()).await;
    let c = h.data(OPEN, json!({"e": "12323"})).await["directConnectOpen"]["connectionID"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..5 {
        h.advance(100);
        let p = h.data(PING, json!({"c": c})).await;
        assert_eq!(p["directConnectPing"]["result"], true);
    }
    h.advance(121);
    let msg = h.error(PING, json!({"c": c})).await;
    assert!(
        msg.contains("connection") && msg.contains("not found"),
        "{msg}"
    );
    let msg = h.error(READ, json!({"c": c})).await;
    assert!(msg.contains("connection"), "{msg}");
    assert_eq!(status(&h, &c).await, "NOT_FOUND");
    let audit = h.server.sim().audit();
    assert!(matches!(
        audit.last().unwrap().outcome,
        AuditOutcome::Error { .. }
    ));
}

#[tokio::test]
async fn older_family_by_endpoint() {
    let h = Harness::start(config()).await;
    let read =
        r#"{ directEndpoint (input : {endpointID: "12323"}) { performance { cpuUsagePercent } } }"#;
    let msg = h.error(read, json!({})).await;
    assert!(msg.contains("connection"), "{msg}");
    let o = h
        .data(
            "mutation { openDirectConnection(input: { endpointID: 12323 }) { connectionID } }",
            json!({}),
        )
        .await;
    let c = o["openDirectConnection"]["connectionID"]
        .as_str()
        .unwrap()
        .to_string();
    let d = h.data(read, json!({})).await;
    assert!(
        (d["directEndpoint"]["performance"]["cpuUsagePercent"]
            .as_f64()
            .unwrap()
            - 28.751501243887798)
            .abs()
            < 1e-9
    );
    let k = h
        .data(
            "mutation($c: ID) { killProcess(input: {connectionID: $c, name: \"notepad.exe\", pid: 7056, signal: SIGKILL}) { result } }",
            json!({"c": c}),
        )
        .await;
    assert_eq!(k["killProcess"]["result"], true);
    let by_endpoint = h
        .data(
            "mutation { killProcess(input: {endpoint: {endpointID: \"12323\"}, name: \"TaniumBlobService.exe\", pid: 1036, signal: SIGTERM}) { result } }",
            json!({}),
        )
        .await;
    assert_eq!(by_endpoint["killProcess"]["result"], true);
    let p = h
        .data(
            "mutation($c: ID!) { pingDirectConnection(input: {connectionID: $c}) { result } }",
            json!({"c": c}),
        )
        .await;
    assert_eq!(p["pingDirectConnection"]["result"], true);
    let cl = h
        .data(
            "mutation($c: ID!) { closeDirectConnection(input: {connectionID: $c}) { result } }",
            json!({"c": c}),
        )
        .await;
    assert_eq!(cl["closeDirectConnection"]["result"], true);
    let msg = h.error(read, json!({})).await;
    assert!(msg.contains("not found") || msg.contains("closed"), "{msg}");
}
