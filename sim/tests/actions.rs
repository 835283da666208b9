//! Action semantics over real HTTP: distribution, expiry, side effects, stop, approval, reissue,
//! validation.

mod common;

use common::{ACTION, BOB, Harness, config, last_action_id, scheduled_id, total};
use serde_json::{Value, json};
use tanium_sim::{AuditOutcome, EndpointSpec, Platform, SSHD_MD5, SimConfig};

fn batch(n: usize, tag: &str, platform: Platform) -> Vec<EndpointSpec> {
    (0..n)
        .map(|i| {
            let mut e = EndpointSpec::new(format!("{tag}-{i:03}"), platform);
            e.tags = vec![tag.to_string()];
            e
        })
        .collect()
}

fn tagged(tag: &str) -> Value {
    json!({"filter": {"sensor": {"name": "Custom Tags"}, "op": "EQ", "value": tag}})
}

#[tokio::test]
async fn distributed_action_on_50_endpoints_completes_and_counts_add_up() {
    let h = Harness::start(config()).await;
    h.server
        .sim()
        .add_endpoints(batch(50, "Batch", Platform::Windows));
    let p = h
        .perform(json!({
            "name": "distribute-50",
            "package": {"name": "Distribute Tanium Standard Utilities"},
            "targets": {"actionGroup": {"name": "All Computers"}, "targetGroup": tagged("Batch")},
            "schedule": {"distributeSeconds": 120}
        }))
        .await;
    assert_eq!(p["error"], Value::Null, "{p}");
    assert_eq!(p["scheduledActions"].as_array().unwrap().len(), 1);
    assert_eq!(p["scheduledActions"][0]["platforms"], json!(["Windows"]));
    let id = last_action_id(&p, 0);

    let a = h.action(&id).await;
    assert_eq!(a["status"], "OPEN");
    assert_eq!(a["results"]["waiting"], 50);
    let mut saw_partial = false;
    for _ in 0..14 {
        h.advance(10);
        let r = h.action(&id).await["results"].clone();
        assert_eq!(total(&r), 50, "{r}");
        let c = r["completed"].as_i64().unwrap();
        if c > 0 && c < 50 {
            saw_partial = true;
        }
    }
    assert!(saw_partial, "distribution spreads completions over time");
    let a = h.action(&id).await;
    assert_eq!(a["results"]["completed"], 50, "{a}");
    // Tanium keeps an action open until it expires, even when every endpoint is done.
    assert_eq!(a["status"], "OPEN");
    h.advance(3600 + 300);
    let a = h.action(&id).await;
    assert_eq!(a["status"], "EXPIRED");
    assert_eq!(a["results"]["completed"], 50);
    assert_eq!(a["results"]["expired"], 0);
}

#[tokio::test]
async fn offline_endpoints_expire_and_late_comers_before_expiry_run() {
    let h = Harness::start(config()).await;
    let sim = h.server.sim().clone();
    let ids = sim.add_endpoints(batch(4, "Exp", Platform::Linux));
    sim.set_online(&ids[0], false);
    sim.set_online(&ids[1], false);
    let p = h
        .perform(json!({
            "name": "expiry",
            "package": {"name": "Run Script", "params": ["echo hi", ""]},
            "targets": {"targetGroup": tagged("Exp")},
            "schedule": {"expireSeconds": 120}
        }))
        .await;
    let id = last_action_id(&p, 0);
    h.advance(30);
    let r = h.action(&id).await["results"].clone();
    assert_eq!(
        (r["completed"].as_i64(), r["waiting"].as_i64()),
        (Some(2), Some(2)),
        "{r}"
    );
    // One comes back before expiry and runs; the other never does.
    sim.set_online(&ids[1], true);
    h.advance(20);
    let r = h.action(&id).await["results"].clone();
    assert_eq!(r["completed"], 3, "{r}");
    h.advance(100);
    let a = h.action(&id).await;
    assert_eq!(a["status"], "EXPIRED");
    assert_eq!(a["results"]["expired"], 1);
    assert_eq!(a["results"]["completed"], 3);
    assert_eq!(total(&a["results"]), 4);
    // Online after expiry: still expired, never runs.
    sim.set_online(&ids[0], true);
    h.advance(60);
    assert_eq!(h.action(&id).await["results"]["expired"], 1);
}

#[tokio::test]
async fn tagging_packages_really_change_tags() {
    let h = Harness::start(config()).await;
    let add = h
        .perform(json!({
            "name": "tag-it",
            "package": {"name": "Custom Tagging - Add Tags", "params": ["Alpha, Beta"]},
            "targets": {"actionGroup": {"name": "All Computers"}, "endpoints": ["274177"]}
        }))
        .await;
    assert_eq!(add["scheduledActions"][0]["platforms"], json!(["Windows"]));
    let filter = json!({"sensor": {"name": "Custom Tags"}, "value": "alpha"});
    assert!(h.endpoint_ids(filter.clone()).await.is_empty());
    h.advance(30);
    let ep = h.server.sim().endpoint("274177").unwrap();
    assert!(
        ep.tags.contains(&"Alpha".into()) && ep.tags.contains(&"Beta".into()),
        "{:?}",
        ep.tags
    );
    assert_eq!(h.endpoint_ids(filter.clone()).await, vec!["274177"]);

    h.perform(json!({
        "name": "untag-it",
        "package": {"name": "Custom Tagging - Remove Tags", "params": ["Alpha"]},
        "targets": {"endpoints": ["274177"]}
    }))
    .await;
    h.advance(30);
    let ep = h.server.sim().endpoint("274177").unwrap();
    assert_eq!(ep.tags, vec!["Beta".to_string()]);
    assert!(h.endpoint_ids(filter).await.is_empty());
}

#[tokio::test]
async fn kill_process_removes_the_md5_process_everywhere_targeted() {
    let h = Harness::start(config()).await;
    let md5 = json!({"sensor": {"name": "Running Processes with MD5 Hash", "column": "MD5 Hash"}, "op": "EQ", "value": SSHD_MD5});
    let before = h.endpoint_ids(md5.clone()).await;
    assert!(
        before.len() >= 3 && before.contains(&"12323".to_string()),
        "{before:?}"
    );
    let p = h
        .perform(json!({
            "name": "Kill OpenSSH",
            "package": {"name": "Kill Process - ||Running Processes with MD5 Hash_MD5 Hash||",
                        "sensorSourcedParams": [{"name": "Running Processes with MD5 Hash_MD5 Hash", "value": SSHD_MD5}]},
            "targets": {"actionGroup": {"name": "All Computers"}, "targetGroup": {"filter": {"filters": [
                md5, {"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Windows"}]}}}
        }))
        .await;
    let id = last_action_id(&p, 0);
    let online_before = before
        .iter()
        .filter(|i| h.server.sim().endpoint(i).unwrap().online)
        .count();
    h.advance(30);
    let r = h.action(&id).await["results"].clone();
    assert_eq!(total(&r), before.len() as i64);
    assert_eq!(r["completed"], online_before as i64);
    let after = h.endpoint_ids(json!({"sensor": {"name": "Running Processes with MD5 Hash", "column": "MD5 Hash"}, "value": SSHD_MD5})).await;
    assert_eq!(after.len(), before.len() - online_before, "{after:?}");
    let server = h.server.sim().endpoint("12323").unwrap();
    assert!(server.processes.iter().all(|p| p.md5 != SSHD_MD5));
    assert!(
        server.processes.iter().any(|p| p.name == "notepad.exe"),
        "other processes stay"
    );
}

#[tokio::test]
async fn stop_freezes_counts_and_is_idempotent() {
    let h = Harness::start(config()).await;
    h.server
        .sim()
        .add_endpoints(batch(50, "Stop", Platform::Mac));
    let p = h
        .perform(json!({
            "name": "to-stop",
            "package": {"name": "Run Script", "params": ["x", "y"]},
            "targets": {"targetGroup": tagged("Stop")},
            "schedule": {"distributeSeconds": 200}
        }))
        .await;
    let id = last_action_id(&p, 0);
    h.advance(60);
    let at_stop = h.action(&id).await["results"].clone();
    let done = at_stop["completed"].as_i64().unwrap();
    assert!(done > 0 && done < 50, "{at_stop}");
    let stop =
        "mutation($id: ID!) { actionStop(ref: {id: $id}) { id error { message retryable } } }";
    let s = h.data(stop, json!({"id": id})).await;
    assert_eq!(s["actionStop"]["id"], id.as_str());
    assert_eq!(s["actionStop"]["error"], Value::Null);
    h.advance(600);
    let a = h.action(&id).await;
    assert_eq!(a["status"], "STOPPED");
    assert_eq!(a["stopped"], true);
    assert_eq!(a["results"], at_stop);
    let again = h.data(stop, json!({"id": id})).await;
    assert_eq!(again["actionStop"]["error"], Value::Null);
    let unknown = h.data(stop, json!({"id": "999999"})).await;
    assert_eq!(unknown["actionStop"]["error"]["retryable"], false);
}

#[tokio::test]
async fn approval_needs_a_different_user() {
    let h = Harness::start(SimConfig {
        approval_required: true,
        ..config()
    })
    .await;
    let p = h
        .perform(json!({
            "name": "needs-approval",
            "package": {"name": "Custom Tagging - Add Tags", "params": ["Approved"]},
            "targets": {"endpoints": ["274177", "12323"]}
        }))
        .await;
    assert_eq!(
        p["scheduledActions"][0]["scheduledAction"]["approved"],
        false
    );
    let sa = scheduled_id(&p, 0);
    let id = last_action_id(&p, 0);
    h.advance(120);
    let a = h.action(&id).await;
    assert_eq!(a["status"], "PENDING");
    assert_eq!(a["results"]["waiting"], 2);

    let approve = "mutation($id: ID!) { scheduledActionApprove(ref: {id: $id}) { id approved error { message retryable } } }";
    let own = h.data(approve, json!({"id": sa})).await;
    let msg = own["scheduledActionApprove"]["error"]["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("different user"), "{msg}");
    assert_eq!(h.action(&id).await["status"], "PENDING");

    let ok = h.data_as(BOB, approve, json!({"id": sa})).await;
    assert_eq!(ok["scheduledActionApprove"]["approved"], true, "{ok}");
    assert_eq!(ok["scheduledActionApprove"]["error"], Value::Null);
    h.advance(30);
    let a = h.action(&id).await;
    assert_eq!(a["status"], "OPEN");
    assert_eq!(a["results"]["completed"], 2);
    let q = h
        .data("query($id: ID!) { scheduledAction(ref: {id: $id}) { approved approver { user { name } } creator { user { name } } } }", json!({"id": sa}))
        .await;
    assert_eq!(q["scheduledAction"]["approver"]["user"]["name"], "bob");
    assert_eq!(q["scheduledAction"]["creator"]["user"]["name"], "admin");
    assert!(
        h.server
            .sim()
            .endpoint("274177")
            .unwrap()
            .tags
            .contains(&"Approved".into())
    );
}

const SA: &str = "query($id: ID!) { scheduledAction(ref: {id: $id}) { status issueCount nextStartTime lastAction { id results { completed } } } }";

#[tokio::test]
async fn recurring_action_reissues_until_end_time_with_fresh_targets() {
    let h = Harness::start(config()).await;
    let sim = h.server.sim().clone();
    sim.add_endpoints(batch(3, "Rec", Platform::Linux));
    let end = sim
        .now()
        .checked_add(jiff::SignedDuration::from_secs(250))
        .unwrap();
    let p = h
        .perform(json!({
            "name": "recurring",
            "package": {"name": "Run Script", "params": ["a", "b"]},
            "targets": {"targetGroup": tagged("Rec")},
            "schedule": {"reissueSeconds": 100, "endTime": end.to_string(), "expireSeconds": 90}
        }))
        .await;
    let sa = scheduled_id(&p, 0);
    let first = last_action_id(&p, 0);
    h.advance(50);
    sim.add_endpoints(batch(2, "Rec", Platform::Linux));
    h.advance(60);
    let s = h.data(SA, json!({"id": sa})).await["scheduledAction"].clone();
    assert_eq!(s["issueCount"], 2, "{s}");
    let second = s["lastAction"]["id"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(
        total(&h.action(&second).await["results"]),
        5,
        "targets re-evaluated"
    );
    assert_eq!(total(&h.action(&first).await["results"]), 3);
    h.advance(500);
    let s = h.data(SA, json!({"id": sa})).await["scheduledAction"].clone();
    assert_eq!(
        s["issueCount"], 3,
        "issued at 0, 100 and 200, not past endTime: {s}"
    );
    assert_eq!(s["nextStartTime"], Value::Null);
}

#[tokio::test]
async fn deleting_a_scheduled_action_stops_reissue() {
    let h = Harness::start(config()).await;
    let end = h
        .server
        .sim()
        .now()
        .checked_add(jiff::SignedDuration::from_hours(10))
        .unwrap();
    let p = h
        .perform(json!({
            "name": "recurring-delete",
            "package": {"name": "Run Script", "params": ["a", "b"]},
            "targets": {"endpoints": ["54321"]},
            "schedule": {"reissueSeconds": 60, "endTime": end.to_string()}
        }))
        .await;
    let sa = scheduled_id(&p, 0);
    h.advance(130);
    assert_eq!(
        h.data(SA, json!({"id": sa})).await["scheduledAction"]["issueCount"],
        3
    );
    let d = h
        .data(
            "mutation($id: ID!) { scheduledActionDelete(ref: {id: $id}) { id error { message } } }",
            json!({"id": sa}),
        )
        .await;
    assert_eq!(d["scheduledActionDelete"]["error"], Value::Null);
    h.advance(600);
    let s = h.data(SA, json!({"id": sa})).await["scheduledAction"].clone();
    assert_eq!(s["issueCount"], 3);
    assert_eq!(s["status"], "DELETED");
}

#[tokio::test]
async fn one_scheduled_action_per_platform_and_find_by_name_without_dedupe() {
    let h = Harness::start(config()).await;
    let input = json!({
        "name": "multi-platform",
        "package": {"name": "Custom Tagging - Add Tags", "params": ["X"]},
        "targets": {"endpoints": ["12323", "54321", "21212"]}
    });
    let p = h.perform(input.clone()).await;
    let platforms: Vec<Value> = p["scheduledActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["platforms"][0].clone())
        .collect();
    assert_eq!(
        platforms,
        vec![json!("Windows"), json!("Linux"), json!("Mac")]
    );
    h.perform(input).await;
    let q = r#"query($n: String) { scheduledActions(filter: {path: "name", op: EQ, value: $n}) {
        totalRecords edges { node { id name status approved lastAction { id status } } } } }"#;
    let d = h.data(q, json!({"n": "multi-platform"})).await;
    assert_eq!(d["scheduledActions"]["totalRecords"], 6);
    assert_eq!(
        d["scheduledActions"]["edges"][0]["node"]["lastAction"]["status"],
        "OPEN"
    );
    let none = h.data(q, json!({"n": "nothing"})).await;
    assert_eq!(none["scheduledActions"]["totalRecords"], 0);
}

#[tokio::test]
async fn invalid_performs_are_refused_audited_and_create_nothing() {
    let h = Harness::start(config()).await;
    let many: Vec<String> = (0..26).map(|_| "12323".to_string()).collect();
    let cases = [
        (
            json!({"package": {"name": "Nope"}, "targets": {}}),
            "not found",
        ),
        (
            json!({"package": {"name": "Custom Tagging - Add Tags"}, "targets": {}}),
            "parameter",
        ),
        (
            json!({"package": {"name": "Kill Process - ||Running Processes with MD5 Hash_MD5 Hash||"}, "targets": {}}),
            "sensor-sourced",
        ),
        (
            json!({"package": {"name": "Run Script", "params": ["a", "b"]}, "targets": {"actionGroup": {"name": "No Group"}}}),
            "action group",
        ),
        (
            json!({"package": {"name": "Run Script", "params": ["a", "b"]}, "targets": {"endpoints": ["12323"], "targetGroup": {"filter": {"sensor": {"name": "Computer Name"}, "value": "x"}}}}),
            "not both",
        ),
        (
            json!({"package": {"name": "Run Script", "params": ["a", "b"]}, "targets": {"endpoints": many}}),
            "at most 25",
        ),
        (
            json!({"package": {"name": "Run Script", "params": ["a", "b"]}, "targets": {"endpoints": ["12323", "777"]}}),
            "777",
        ),
    ];
    for (input, expect) in &cases {
        let p = h.perform(input.clone()).await;
        let msg = p["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error for {input}: {p}"));
        assert!(msg.contains(expect), "{msg} should mention {expect}");
        assert_eq!(p["error"]["retryable"], false);
        assert_eq!(p["scheduledActions"], Value::Null);
    }
    let audit = h.server.sim().audit();
    assert_eq!(audit.len(), cases.len());
    assert!(
        audit
            .iter()
            .all(|e| e.operation == "actionPerform"
                && matches!(e.outcome, AuditOutcome::Error { .. }))
    );
    assert_eq!(audit[0].input["input"]["package"]["name"], "Nope");
    let d = h
        .data("{ scheduledActions { totalRecords } }", json!({}))
        .await;
    assert_eq!(d["scheduledActions"]["totalRecords"], 0);
}

#[tokio::test]
async fn failures_follow_the_rate_deterministically() {
    async fn run() -> Value {
        let h = Harness::start(SimConfig {
            action_failure_rate: 0.3,
            ..config()
        })
        .await;
        h.server
            .sim()
            .add_endpoints(batch(40, "Fail", Platform::Windows));
        let p = h
            .perform(json!({"name": "f", "package": {"name": "Run Script", "params": ["a", "b"]}, "targets": {"targetGroup": tagged("Fail")}}))
            .await;
        h.advance(60);
        h.data(ACTION, json!({"id": last_action_id(&p, 0)})).await["action"]["results"].clone()
    }
    let a = run().await;
    let failed = a["failed"].as_i64().unwrap();
    assert!(failed > 3 && failed < 25, "{a}");
    assert_eq!(a["completed"].as_i64().unwrap() + failed, 40);
    assert_eq!(run().await, a);
}
