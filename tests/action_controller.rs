//! TaniumAction end to end: real kube-apiserver + etcd, tanium-sim over HTTP, the controller in-process.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Env, OPENSSH_MD5, assert_no_token, phase, ready_reason};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tanium_operator::controller::Policy;
use tanium_operator::crd::{APPROVED_PREVIEW_ANNOTATION, TaniumAction};
use tanium_sim::{AfterCommit, EndpointSpec, Faults, Platform};

fn manifest(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction", "metadata": {"name": name}, "spec": spec})
}

fn add_tag(tag: &str, targets: serde_json::Value) -> serde_json::Value {
    json!({"package": {"name": "Custom Tagging - Add Tags", "params": [tag]}, "comment": "integration test", "targets": targets})
}

#[tokio::test]
async fn seed_examples_deploy_once_and_complete() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.start_controller();
    let api = env.namespace("seeds").await;

    // The seed's three examples, exactly as shipped in examples/.
    for file in [
        "tag-by-computer-name",
        "kill-openssh-by-md5",
        "tag-by-endpoint-id",
    ] {
        env.create(&api, common::example(file)).await;
    }

    let tagged = env
        .wait_for(
            &api,
            "tag-by-computer-name",
            "Completed",
            common::phase_is("Completed"),
        )
        .await;
    let status = tagged.status.clone().unwrap();
    assert_eq!(status.preview.as_ref().unwrap().count, 1);
    assert_eq!(
        status.preview.as_ref().unwrap().sample[0].name,
        "testmachine999"
    );
    assert_eq!(status.results.unwrap().counts.completed, 1);
    // The Tanium action's name belongs to the manifest (namespace, name, a digest of the spec), not to the uid.
    assert_eq!(
        status.deployment.action_name.as_deref(),
        Some(common::action_name_needle(&tagged).as_str())
    );
    assert!(
        !status
            .deployment
            .action_name
            .as_ref()
            .unwrap()
            .contains(tagged.metadata.uid.as_deref().unwrap())
    );
    assert!(
        env.sim
            .sim()
            .endpoint("274177")
            .unwrap()
            .tags
            .iter()
            .any(|t| t == "TheBestEndpoint")
    );
    // stopWhenComplete: the action Tanium keeps open until expiry was stopped.
    let action_id = status.deployment.scheduled_actions[0]
        .last_action_id
        .clone()
        .unwrap();
    assert_eq!(env.mutations("actionStop", &action_id).len(), 1);
    assert_eq!(
        status.deployment.scheduled_actions[0].status.as_deref(),
        Some("STOPPED")
    );

    let killed = env
        .wait_for(
            &api,
            "kill-openssh-by-md5",
            "Completed",
            common::phase_is("Completed"),
        )
        .await;
    let kstatus = killed.status.clone().unwrap();
    let targeted = kstatus.preview.unwrap().count;
    assert!(targeted >= 2, "several Windows endpoints run OpenSSH");
    assert_eq!(
        u64::from(kstatus.results.unwrap().counts.completed),
        targeted
    );
    assert!(
        !env.sim
            .sim()
            .endpoint("12323")
            .unwrap()
            .processes
            .iter()
            .any(|p| p.md5 == OPENSSH_MD5)
    );

    let by_id = env
        .wait_for(
            &api,
            "tag-by-endpoint-id",
            "Completed",
            common::phase_is("Completed"),
        )
        .await;
    assert_eq!(
        by_id
            .status
            .clone()
            .unwrap()
            .results
            .unwrap()
            .counts
            .completed,
        1
    );

    for obj in [&tagged, &killed, &by_id] {
        assert_eq!(env.performs_for(obj), 1);
        assert_no_token(obj);
    }
    let reasons: BTreeSet<String> = env
        .wait_for_event("seeds", "tag-by-computer-name", |r, _| r == "Completed")
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    // Events that inform: what moved it on and how it ended. The preview is in status (and with --all-events).
    assert_eq!(
        reasons,
        BTreeSet::from(["Deployed".to_string(), "Completed".to_string()])
    );
    // What a person sees.
    let table = env.kubectl(&["get", "ta", "-n", "seeds"]);
    println!("{table}");
    let header = table.lines().next().unwrap();
    for column in ["PHASE", "TARGETS", "COMPLETED", "FAILED", "ACTION", "AGE"] {
        assert!(header.contains(column), "{header}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("tag-by-computer-name"))
        .unwrap();
    assert!(
        row.contains("Completed") && row.contains(&action_id),
        "{row}"
    );
    env.assert_exactly_once();
}

#[tokio::test]
async fn gates_hold_until_a_person_acts() {
    let policy = Policy {
        max_targets_ceiling: Some(50),
        ..Policy::default()
    };
    let Some(mut env) = Env::start(policy, |_| {}).await else {
        return;
    };
    env.start_controller();
    let api = env.namespace("gates").await;
    let windows =
        json!({"filter": {"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Windows"}});

    // Every other hostile input is in tests/hostile.rs; this one comes back below, when its limit is raised.
    let mut too_many = add_tag("x", windows.clone());
    too_many["safety"] = json!({"maxTargets": 5});
    env.create(&api, manifest("too-many", too_many)).await;
    let held = env
        .wait_for(&api, "too-many", "TooManyTargets", |o| {
            phase(o).as_deref() == Some("Blocked")
                && ready_reason(o).as_deref() == Some("TooManyTargets")
        })
        .await;
    env.wait_for_event("gates", "too-many", |r, _| r == "TooManyTargets")
        .await;
    assert_eq!(env.performs_for(&held), 0);

    // Preview approval: held until the digest is in the annotation, then deployed once.
    let mut approval = add_tag("Approved", json!({"endpoints": ["274177"]}));
    approval["safety"] = json!({"requirePreviewApproval": true});
    env.create(&api, manifest("needs-approval", approval)).await;
    let held = env
        .wait_for(
            &api,
            "needs-approval",
            "AwaitingPreviewApproval",
            common::phase_is("AwaitingPreviewApproval"),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.performs_for(&held), 0);
    let preview = held.status.clone().unwrap().preview.unwrap();
    let digest = preview.digest;
    // The one digest function `tanium-operator preview` prints too, over the spec as the API server stored it.
    assert_eq!(
        digest,
        tanium_operator::controller::preview::action_digest(&held.spec, preview.count)
    );
    // A wrong digest approves nothing.
    let annotate = |d: &str| json!({"metadata": {"annotations": {APPROVED_PREVIEW_ANNOTATION: d}}});
    api.patch(
        "needs-approval",
        &PatchParams::default(),
        &Patch::Merge(annotate("sha256:0000000000000000")),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        phase(&api.get("needs-approval").await.unwrap()).as_deref(),
        Some("AwaitingPreviewApproval")
    );
    api.patch(
        "needs-approval",
        &PatchParams::default(),
        &Patch::Merge(annotate(&digest)),
    )
    .await
    .unwrap();
    let done = env
        .wait_for(
            &api,
            "needs-approval",
            "Completed",
            common::phase_is("Completed"),
        )
        .await;
    assert_eq!(env.performs_for(&done), 1);

    // Suspended: nothing happens until resumed.
    let mut suspended = add_tag("Later", json!({"endpoints": ["274177"]}));
    suspended["suspend"] = json!(true);
    env.create(&api, manifest("suspended", suspended)).await;
    let s = env
        .wait_for(
            &api,
            "suspended",
            "Suspended",
            common::phase_is("Suspended"),
        )
        .await;
    assert_eq!(env.performs_for(&s), 0);
    api.patch(
        "suspended",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    env.wait_for(
        &api,
        "suspended",
        "Completed",
        common::phase_is("Completed"),
    )
    .await;

    // Every shipped example is accepted by the apiserver (server-side dry run) and passes the operator's checks.
    // The connection kinds' examples are a folder of their own, which the demo's `kubectl apply -f examples/` leaves.
    let mut examples = 0;
    let top = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap();
    let connections =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/connections")).unwrap();
    for path in top.chain(connections).map(|e| e.unwrap().path()) {
        if path.is_dir() {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let manifest: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let refused = |e: kube::Error| -> ! { panic!("examples/{name}.yaml refused: {e}") };
        match manifest["kind"].as_str() {
            Some("TaniumAction") => {
                let obj: TaniumAction = serde_json::from_value(manifest).unwrap();
                tanium_operator::controller::wire::targets(&obj.spec.targets)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                if let Err(e) = api.create(&dry_run, &obj).await {
                    refused(e);
                }
            }
            Some("TaniumTag") => {
                let obj: tanium_operator::crd::TaniumTag =
                    serde_json::from_value(manifest).unwrap();
                tanium_operator::controller::wire::targets(&obj.spec.targets)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let tags: Api<tanium_operator::crd::TaniumTag> =
                    Api::namespaced(env.client.clone(), "gates");
                if let Err(e) = tags.create(&dry_run, &obj).await {
                    refused(e);
                }
            }
            Some("TaniumEndpointInspection") => {
                let obj: tanium_operator::crd::TaniumEndpointInspection =
                    serde_json::from_value(manifest).unwrap();
                assert!(
                    tanium_operator::controller::wire::selector(&obj.spec.endpoint).is_some(),
                    "{name}"
                );
                let inspections: Api<tanium_operator::crd::TaniumEndpointInspection> =
                    Api::namespaced(env.client.clone(), "gates");
                if let Err(e) = inspections.create(&dry_run, &obj).await {
                    refused(e);
                }
            }
            Some("TaniumConnection") => {
                let obj: tanium_operator::crd::TaniumConnection =
                    serde_json::from_value(manifest).unwrap();
                let conns: Api<tanium_operator::crd::TaniumConnection> =
                    Api::namespaced(env.client.clone(), "gates");
                if let Err(e) = conns.create(&dry_run, &obj).await {
                    refused(e);
                }
            }
            Some("ClusterTaniumConnection") => {
                let obj: tanium_operator::crd::ClusterTaniumConnection =
                    serde_json::from_value(manifest).unwrap();
                let conns: Api<tanium_operator::crd::ClusterTaniumConnection> =
                    Api::all(env.client.clone());
                if let Err(e) = conns.create(&dry_run, &obj).await {
                    refused(e);
                }
            }
            other => panic!("examples/{name}.yaml: unexpected kind {other:?}"),
        }
        examples += 1;
    }
    assert!(examples >= 11);

    // The safety limit may change: raising it lets the deployment go.
    api.patch(
        "too-many",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"safety": {"maxTargets": 40}}})),
    )
    .await
    .unwrap();
    let n = api
        .get("too-many")
        .await
        .unwrap()
        .status
        .unwrap()
        .preview
        .unwrap()
        .count;
    if n <= 40 {
        env.wait_for(&api, "too-many", "Completed", common::phase_is("Completed"))
            .await;
    }
    env.assert_exactly_once();
}

#[tokio::test]
async fn schedules_expiry_deletion_and_ttl() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.start_controller();
    let api = env.namespace("lifecycle").await;
    let offline = env.sim.sim().add_endpoints(vec![EndpointSpec {
        online: false,
        ..EndpointSpec::new("offline-box", Platform::Windows)
    }]);

    // Recurring: reissued until its end time, then complete.
    let end = env.sim.sim().now() + jiff::SignedDuration::from_secs(150);
    let mut recurring = add_tag("Again", json!({"endpoints": ["274177"]}));
    recurring["schedule"] =
        json!({"reissueSeconds": 60, "expireSeconds": 60, "endTime": end.to_string()});
    env.create(&api, manifest("recurring", recurring)).await;
    // Expiry: its only endpoint is offline, so the action runs out of time without running anywhere.
    let mut expiring = add_tag("Expiring", json!({"endpoints": [offline[0]]}));
    expiring["schedule"] = json!({"expireSeconds": 60});
    env.create(&api, manifest("expiring", expiring)).await;
    let mut partly = add_tag("Partly", json!({"endpoints": ["274177", offline[0]]}));
    partly["schedule"] = json!({"expireSeconds": 60});
    env.create(&api, manifest("partly-offline", partly)).await;
    // Long-running actions to delete, with each deletion policy.
    let slow = |policy: &str| {
        let mut s = add_tag(
            "Slow",
            json!({"filter": {"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Linux"}}),
        );
        s["schedule"] = json!({"distributeSeconds": 86400});
        s["deletionPolicy"] = json!(policy);
        s
    };
    env.create(&api, manifest("delete-stop", slow("Stop")))
        .await;
    env.create(&api, manifest("delete-orphan", slow("Orphan")))
        .await;
    let mut short_lived = add_tag("Brief", json!({"endpoints": ["274177"]}));
    short_lived["ttlSecondsAfterFinished"] = json!(2);
    env.create(&api, manifest("ttl", short_lived)).await;

    let mut instances = BTreeSet::new();
    let recurring_done = loop {
        let obj = api.get("recurring").await.unwrap();
        if let Some(id) = obj
            .status
            .as_ref()
            .and_then(|s| s.deployment.scheduled_actions.first())
            .and_then(|s| s.last_action_id.clone())
        {
            instances.insert(id);
        }
        if phase(&obj).as_deref() == Some("Completed") {
            break obj;
        }
        assert!(
            instances.len() < 10
                && env.sim.sim().now() < end + jiff::SignedDuration::from_secs(600),
            "{:#?}",
            obj.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        instances.len() >= 2,
        "the recurring action was reissued: {instances:?}"
    );
    assert_eq!(
        env.performs_for(&recurring_done),
        1,
        "reissues are Tanium's, not new deployments"
    );

    let expired = env
        .wait_for(&api, "expiring", "Expired", common::phase_is("Expired"))
        .await;
    let r = expired.status.unwrap().results.unwrap();
    assert_eq!((r.counts.completed, r.counts.expired), (0, 1), "{r:?}");
    // One offline endpoint among others: over, with the reason saying not every target ran.
    let partial = env
        .wait_for(
            &api,
            "partly-offline",
            "Completed",
            common::phase_is("Completed"),
        )
        .await;
    let partial_status = partial.status.unwrap();
    let r = partial_status.results.unwrap();
    assert_eq!((r.counts.completed, r.counts.expired), (1, 1), "{r:?}");
    let c = tanium_operator::crd::condition(&partial_status.conditions, "Completed").unwrap();
    assert_eq!(c.reason, "CompletedPartially");
    assert!(c.message.contains("1 expired"), "{}", c.message);

    for name in ["delete-stop", "delete-orphan"] {
        env.wait_for(&api, name, "Running", common::phase_is("Running"))
            .await;
    }
    let stop_obj = api.get("delete-stop").await.unwrap();
    let orphan_obj = api.get("delete-orphan").await.unwrap();
    let stop_action = stop_obj.status.unwrap().deployment.scheduled_actions[0]
        .last_action_id
        .clone()
        .unwrap();
    let orphan_action = orphan_obj.status.unwrap().deployment.scheduled_actions[0]
        .last_action_id
        .clone()
        .unwrap();
    api.delete("delete-stop", &DeleteParams::default())
        .await
        .unwrap();
    api.delete("delete-orphan", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone(&api, "delete-stop").await;
    env.wait_gone(&api, "delete-orphan").await;
    assert_eq!(
        env.mutations("actionStop", &stop_action).len(),
        1,
        "deletionPolicy Stop stopped it"
    );
    assert!(
        env.mutations("actionStop", &orphan_action).is_empty(),
        "deletionPolicy Orphan left it"
    );

    env.wait_gone(&api, "ttl").await;
    env.assert_exactly_once();
}

#[tokio::test]
async fn exactly_once_across_a_crash_and_a_lost_answer() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let api = env.namespace("crash").await;

    // A crash between actionPerform and the status write: the controller dies right after the Gateway answered.
    let ctx = env.start_controller();
    ctx.fail_points
        .hang_after_perform
        .store(true, Ordering::SeqCst);
    let obj = env
        .create(
            &api,
            manifest("crash", add_tag("Crash", json!({"endpoints": ["274177"]}))),
        )
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while env.performs_for(&obj) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no actionPerform");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.stop_controller();
    let after_crash = api.get("crash").await.unwrap();
    assert_eq!(
        phase(&after_crash).as_deref(),
        Some("Deploying"),
        "the intent is recorded, the ids are not"
    );
    assert!(
        after_crash
            .status
            .as_ref()
            .unwrap()
            .deployment
            .scheduled_actions
            .is_empty()
    );

    env.start_controller();
    let done = env
        .wait_for(&api, "crash", "Completed", common::phase_is("Completed"))
        .await;
    assert_eq!(
        env.performs_for(&done),
        1,
        "found by name after the restart, not deployed again"
    );
    env.wait_for_event("crash", "crash", |r, _| r == "Recovered")
        .await;

    // The Gateway commits the action, then the answer is lost on the way back.
    env.sim.sim().set_faults(Faults {
        drop_after_commit_next: 1,
        drop_operations: vec!["actionPerform".into()],
        ..Faults::default()
    });
    env.create(
        &api,
        manifest(
            "lost-answer",
            add_tag("Lost", json!({"endpoints": ["274177"]})),
        ),
    )
    .await;
    let lost = env
        .wait_for(
            &api,
            "lost-answer",
            "Completed",
            common::phase_is("Completed"),
        )
        .await;
    assert_eq!(env.performs_for(&lost), 1);
    let dropped = env
        .sim
        .sim()
        .audit()
        .into_iter()
        .filter(|e| matches!(e.outcome, tanium_sim::AuditOutcome::Dropped { .. }))
        .count();
    assert_eq!(dropped, 1, "the answer really was dropped");
    let events = env
        .wait_for_event("crash", "lost-answer", |r, _| r == "Recovered")
        .await;
    assert!(
        events.iter().any(|(r, _)| r == "OutcomeUnknown"),
        "{events:?}"
    );

    // A reconcile that starts from a stale copy (a lagging cache: no status yet) must not act on it: its first
    // status write is conditional on the version it read, so it fails instead of deploying a second time.
    let ctx = env.start_controller();
    env.stop_controller();
    let mut stale = api.get("lost-answer").await.unwrap();
    api.patch(
        "lost-answer",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    stale.status = None;
    let result =
        tanium_operator::controller::action::reconcile(std::sync::Arc::new(stale), ctx).await;
    assert!(result.is_err(), "a stale reconcile must fail: {result:?}");
    assert_eq!(env.performs_for(&lost), 1, "and it deployed nothing");
    env.assert_exactly_once();
}

#[tokio::test]
async fn gateway_outage_and_rejected_token() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let api = env.namespace("trouble").await;

    // A rejected token: a clear condition, nothing deployed, no tight loop.
    env.start_controller_with_token("token-revoked-0000");
    env.create(
        &api,
        manifest("token", add_tag("T", json!({"endpoints": ["274177"]}))),
    )
    .await;
    let rejected = env
        .wait_for(&api, "token", "TokenRejected", |o| {
            ready_reason(o).as_deref() == Some("TokenRejected")
        })
        .await;
    let message =
        tanium_operator::crd::condition(&rejected.status.clone().unwrap().conditions, "Ready")
            .unwrap()
            .message
            .clone();
    assert!(message.contains("rejected the API token"), "{message}");
    assert!(
        !message.contains("token-revoked"),
        "the token itself never appears"
    );
    let events = env
        .wait_for_event("trouble", "token", |r, _| r == "TokenRejected")
        .await;
    assert_eq!(
        events.iter().filter(|(r, _)| r == "TokenRejected").count(),
        1,
        "one event, not one per retry: {events:?}"
    );
    assert_eq!(env.performs_for(&rejected), 0);

    // The right token: it proceeds.
    env.start_controller();
    env.wait_for(&api, "token", "Completed", common::phase_is("Completed"))
        .await;

    // The Gateway's backing service is down (HTTP 500), then back.
    env.sim.sim().set_faults(Faults {
        http_500_next: 100_000,
        ..Faults::default()
    });
    env.create(
        &api,
        manifest("outage", add_tag("O", json!({"endpoints": ["274177"]}))),
    )
    .await;
    let down = env
        .wait_for(&api, "outage", "GatewayHttpError", |o| {
            ready_reason(o).as_deref() == Some("GatewayHttpError")
        })
        .await;
    assert_eq!(env.performs_for(&down), 0);
    env.sim.sim().set_faults(Faults::default());
    let back = env
        .wait_for(&api, "outage", "Completed", common::phase_is("Completed"))
        .await;
    assert_eq!(env.performs_for(&back), 1);
    assert_no_token(&back);
    env.assert_exactly_once();
}

#[tokio::test]
async fn tanium_approval_and_deletion_during_an_outage() {
    let Some(mut env) = Env::start(Policy::default(), |c| c.approval_required = true).await else {
        return;
    };
    env.start_controller();
    let api = env.namespace("approvals").await;

    // Tanium holds the action until a second person approves it there; the operator never approves its own.
    env.create(
        &api,
        manifest(
            "approve-in-tanium",
            add_tag("Approved", json!({"endpoints": ["274177"]})),
        ),
    )
    .await;
    let waiting = env
        .wait_for(
            &api,
            "approve-in-tanium",
            "AwaitingApproval",
            common::phase_is("AwaitingApproval"),
        )
        .await;
    let status = waiting.status.clone().unwrap();
    let message = tanium_operator::crd::condition(&status.conditions, "Ready")
        .unwrap()
        .message
        .clone();
    let sa = status.deployment.scheduled_actions[0].id.clone();
    assert!(
        message.contains(&sa) && message.contains("other than the operator"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        env.mutations("scheduledActionApprove", "").is_empty(),
        "the operator approved nothing"
    );
    let second_person = env.gateway("token-second-person");
    assert!(
        second_person
            .approve_scheduled_action(&tanium_operator::gateway::ScheduledActionId(sa))
            .await
            .unwrap()
    );
    let done = env
        .wait_for(
            &api,
            "approve-in-tanium",
            "Completed",
            common::phase_is("Completed"),
        )
        .await;
    assert_eq!(env.performs_for(&done), 1);

    // Deleting while the Gateway is down: the object stays, and says why, until the action can be stopped.
    let mut slow = add_tag(
        "Slow",
        json!({"filter": {"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Mac"}}),
    );
    slow["schedule"] = json!({"distributeSeconds": 86400});
    env.create(&api, manifest("delete-in-outage", slow)).await;
    let running = env
        .wait_for(
            &api,
            "delete-in-outage",
            "AwaitingApproval",
            common::phase_is("AwaitingApproval"),
        )
        .await;
    let action = running.status.unwrap().deployment.scheduled_actions[0]
        .last_action_id
        .clone()
        .unwrap();
    env.sim.sim().set_faults(Faults {
        http_500_next: 100_000,
        ..Faults::default()
    });
    api.delete("delete-in-outage", &DeleteParams::default())
        .await
        .unwrap();
    let blocked = env
        .wait_for(&api, "delete-in-outage", "DeletionBlocked", |o| {
            ready_reason(o).as_deref() == Some("DeletionBlocked")
        })
        .await;
    assert!(blocked.metadata.deletion_timestamp.is_some());
    env.wait_for_event("approvals", "delete-in-outage", |r, n| {
        r == "DeletionBlocked" && n.contains("deletionPolicy: Orphan")
    })
    .await;
    env.sim.sim().set_faults(Faults::default());
    env.wait_gone(&api, "delete-in-outage").await;
    assert_eq!(
        env.mutations("actionStop", &action)
            .iter()
            .filter(|o| o.is_committed())
            .count(),
        1,
        "stopped once the Gateway was back"
    );
    env.assert_exactly_once();
}

/// Create `n` TaniumActions that stay open a while (distributed over 200 sim seconds, 10 s here); wait until all
/// are Completed; return how many `action` fields the Gateway was asked for and in how many requests.
async fn poll_load(env: &Env, api: &Api<TaniumAction>, prefix: &str, n: usize) -> (u64, u64) {
    let before = env.sim.sim().requests().len();
    for i in 0..n {
        let mut manifest = common::example("tag-by-endpoint-id");
        manifest["metadata"]["name"] = json!(format!("{prefix}-{i}"));
        manifest["spec"]["schedule"] = json!({"distributeSeconds": 200});
        env.create(api, manifest).await;
    }
    for i in 0..n {
        env.wait_for(
            api,
            &format!("{prefix}-{i}"),
            "Completed",
            common::phase_is("Completed"),
        )
        .await;
    }
    let polls: Vec<u64> = env.sim.sim().requests()[before..]
        .iter()
        .filter_map(|r| r.fields.get("action").map(|n| u64::from(*n)))
        .collect();
    (polls.iter().sum(), polls.len() as u64)
}

#[tokio::test]
async fn one_poller_asks_for_every_objects_actions_in_batches() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let api = env.namespace("poller").await;
    let client = env.client.clone();

    // Batched: requests grow with open actions / 50, not with objects.
    env.start_controller();
    let (asked, requests) = poll_load(&env, &api, "batched", 60).await;
    println!("batched: {asked} action polls in {requests} requests");
    assert!(asked >= 60, "every action was polled: {asked}");
    assert!(
        asked >= 5 * requests,
        "the shared poller batches across objects: {asked} polls in {requests} requests"
    );

    // A restart costs nothing for objects that are over: their status says everything.
    env.start_controller();
    let before = env.sim.sim().requests().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = env.sim.sim().requests()[before..].to_vec();
    // The start's one introspection (what the Gateway offers) is the process's, not any object's.
    let (start, after): (Vec<_>, Vec<_>) = requests
        .into_iter()
        .partition(|r| r.operation_name.as_deref() == Some("gatewayFeatures"));
    assert!(start.len() <= 1, "{start:?}");
    assert!(
        after.is_empty(),
        "Gateway requests for terminal objects after a restart: {after:?}"
    );

    // The way scripts poll (a real setting, one action per request) asks as often, in as many requests.
    env.start_controller_with(client, common::TOKEN, |c| c.poll_batch = 1);
    let (asked, requests) = poll_load(&env, &api, "naive", 20).await;
    println!("naive: {asked} action polls in {requests} requests");
    assert!(asked >= 20);
    assert_eq!(asked, requests, "one action per request");
    env.assert_exactly_once();
}

#[tokio::test]
async fn recurring_actions_are_read_in_the_shared_batches_too() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let api = env.namespace("recurring-poll").await;
    env.start_controller();
    let n = 30;
    for i in 0..n {
        let mut manifest = common::example("recurring-until-end");
        manifest["metadata"]["name"] = json!(format!("recurring-{i}"));
        env.create(&api, manifest).await;
    }
    for i in 0..n {
        env.wait_for(
            &api,
            &format!("recurring-{i}"),
            "Running with results",
            |o| {
                phase(o).as_deref() == Some("Running")
                    && o.status.as_ref().is_some_and(|s| s.results.is_some())
            },
        )
        .await;
    }
    // While they run, their newest instances are read through their scheduled actions, many per request.
    let before = env.sim.sim().requests().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let reads: Vec<u64> = env.sim.sim().requests()[before..]
        .iter()
        .filter_map(|r| r.fields.get("scheduledAction").map(|n| u64::from(*n)))
        .collect();
    let (asked, requests) = (reads.iter().sum::<u64>(), reads.len() as u64);
    println!("recurring: {asked} scheduled-action reads in {requests} requests");
    assert!(asked >= n, "every recurring action was read: {asked}");
    assert!(
        asked >= 10 * requests,
        "recurring actions share the poller's batches: {asked} reads in {requests} requests"
    );
    env.assert_exactly_once();
}

/// The Gateway commits `actionPerform` and then answers with each shape Tanium's documentation leaves open: the
/// operator never sends it again, finds it by name, and follows it to the end.
#[tokio::test]
async fn a_committed_deploy_is_found_whatever_its_answer() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.start_controller();
    let api = env.namespace("after-commit").await;
    for shape in AfterCommit::ALL {
        env.sim.sim().set_faults(Faults {
            drop_after_commit_next: 1,
            after_commit: vec![shape],
            drop_operations: vec!["actionPerform".into()],
            ..Faults::default()
        });
        let name = format!("{shape:?}").to_lowercase();
        env.create(
            &api,
            manifest(
                &name,
                add_tag("AfterCommit", json!({"endpoints": ["274177"]})),
            ),
        )
        .await;
        let done = env
            .wait_for(&api, &name, "Completed", common::phase_is("Completed"))
            .await;
        assert_eq!(env.performs_for(&done), 1, "{shape:?}: sent once");
        assert_eq!(
            common::deployed_reason(&done).as_deref(),
            Some("Recovered"),
            "{shape:?}: found by name: {:?}",
            done.status
        );
    }
    let lost = env
        .sim
        .sim()
        .audit()
        .into_iter()
        .filter(|e| matches!(e.outcome, tanium_sim::AuditOutcome::Dropped { .. }))
        .count();
    assert_eq!(lost, AfterCommit::ALL.len(), "every answer really was lost");
    env.assert_exactly_once();
}

/// Intent belongs to the manifest: a finished object deleted (by hand, or by its TTL) and applied again unchanged
/// (a GitOps tool's self-heal) adopts the action deployed before and deploys nothing, round after round. A TTL on
/// an object a GitOps tool manages is said to be a loop.
#[tokio::test]
async fn the_same_manifest_applied_again_adopts_its_action_and_deploys_nothing() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.start_controller();
    let api = env.namespace("gitops").await;
    let manifest = |ttl: Option<i64>| {
        let mut spec = add_tag("GitOps", json!({"endpoints": ["274177", "12323"]}));
        if let Some(ttl) = ttl {
            spec["ttlSecondsAfterFinished"] = json!(ttl);
        }
        json!({"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
               "metadata": {"name": "synced",
                            "annotations": {"argocd.argoproj.io/tracking-id": "fleet-tags:tanium-operator.dev/TaniumAction:gitops/synced"}},
               "spec": spec})
    };

    // Deployed once; deleted by hand once it finished; applied again.
    env.create(&api, manifest(None)).await;
    let first = env
        .wait_for(&api, "synced", "Completed", common::phase_is("Completed"))
        .await;
    assert_eq!(common::deployed_reason(&first).as_deref(), Some("Deployed"));
    let name = first
        .status
        .as_ref()
        .unwrap()
        .deployment
        .action_name
        .clone();
    api.delete("synced", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone(&api, "synced").await;
    env.create(&api, manifest(None)).await;
    let again = env
        .wait_for(&api, "synced", "Completed", common::phase_is("Completed"))
        .await;
    assert_eq!(
        common::deployed_reason(&again).as_deref(),
        Some("Adopted"),
        "{:?}",
        again.status
    );
    assert_eq!(again.status.as_ref().unwrap().deployment.action_name, name);
    assert!(
        again
            .status
            .as_ref()
            .unwrap()
            .results
            .unwrap()
            .counts
            .completed
            >= 1
    );
    env.wait_for_event("gitops", "synced", |r, _| r == "Adopted")
        .await;
    api.delete("synced", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone(&api, "synced").await;

    // With a TTL, a GitOps tool's self-heal becomes a loop: each round the TTL deletes it and the tool applies it
    // again. The fleet must not feel it.
    for round in 0..3 {
        env.create(&api, manifest(Some(1))).await;
        let done = env
            .wait_for(&api, "synced", "Completed", common::phase_is("Completed"))
            .await;
        assert_eq!(
            common::deployed_reason(&done).as_deref(),
            Some("Adopted"),
            "round {round}"
        );
        let warning = tanium_operator::crd::condition(
            &done.status.as_ref().unwrap().conditions,
            "RecreationLoop",
        )
        .cloned()
        .expect("the loop is said");
        assert_eq!(warning.status, "True");
        assert!(warning.message.contains("Argo CD"), "{}", warning.message);
        env.wait_gone(&api, "synced").await;
    }
    env.wait_for_event("gitops", "synced", |r, _| r == "TTLUnderGitOps")
        .await;
    assert_eq!(env.performs().len(), 1, "{:?}", env.performs());
    env.assert_exactly_once();
}

/// The apiserver is the limit under a burst: a one-off action's whole life costs it four writes (the finalizer, the
/// intent with its preview, the ids with the running state, the end with what was stopped) and two events
/// (Deployed, Completed). Counted from a watch: every version of the object after its creation is one write.
#[tokio::test]
async fn a_one_off_action_costs_four_writes_and_two_events() {
    use futures::{StreamExt as _, TryStreamExt as _};
    use kube::runtime::watcher;
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.start_controller();
    let api = env.namespace("frugal").await;
    let versions = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Ok(Some(event)) = events.try_next().await {
                if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = event {
                    let done = phase(&o).as_deref() == Some("Completed");
                    if let Some(v) = o.metadata.resource_version
                        && !seen.contains(&v)
                    {
                        seen.push(v);
                    }
                    if done {
                        return seen;
                    }
                }
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.create(
        &api,
        manifest(
            "one",
            add_tag("frugal", json!({"endpoints": ["274177", "12323"]})),
        ),
    )
    .await;
    let done = env
        .wait_for(&api, "one", "Completed", common::phase_is("Completed"))
        .await;
    let versions = tokio::time::timeout(Duration::from_secs(10), versions)
        .await
        .expect("the watch saw the end")
        .expect("the watch task");
    // A few reconciles later (polls, requeues): still nothing written.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = api.get("one").await.expect("get");
    assert_eq!(
        later.metadata.resource_version, done.metadata.resource_version,
        "written after its end"
    );
    let writes = versions.len() - 1;
    assert!(
        writes <= 4,
        "{writes} writes after the create: {versions:?}"
    );
    let status = done.status.expect("status");
    assert_eq!(status.results.map(|r| r.counts.completed), Some(2));
    let events = env
        .wait_for_event("frugal", "one", |r, _| r == "Completed")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = env.events("frugal", "one").await.len().max(events.len());
    assert_eq!(events, 2, "events: {:?}", env.events("frugal", "one").await);
    env.assert_exactly_once();
}

/// A finished object with nothing left to do leaves the watch cache (100,000 of them would otherwise be most of the
/// operator's memory): a change that cannot matter to it (an annotation) starts no reconcile. Whatever could matter
/// comes back as the whole object and is acted on from it: a new generation is observed and deploys nothing again,
/// and deletion stops the Tanium action it left open (`stopWhenComplete: false`), read from the status it had.
#[tokio::test]
async fn a_finished_object_leaves_the_cache_and_comes_back_whole() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let ctx = env.start_controller();
    let api = env.namespace("settled").await;
    let mut spec = add_tag("settled", json!({"endpoints": ["274177"]}));
    spec["stopWhenComplete"] = json!(false);
    env.create(&api, manifest("rest", spec)).await;
    let done = env
        .wait_for(&api, "rest", "Completed", common::phase_is("Completed"))
        .await;
    let action_id = done.status.as_ref().unwrap().deployment.scheduled_actions[0]
        .last_action_id
        .clone()
        .unwrap();
    assert!(env.mutations("actionStop", &action_id).is_empty());
    let metric = |name: &str| -> f64 {
        ctx.metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(r#"kind="TaniumAction""#))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let completed = r#"tanium_operator_objects{kind="TaniumAction",phase="Completed"}"#;
    assert_eq!(metric(completed), 1.0, "counted while it rests");

    // Quiet, then a person's note: no reconcile (the old code reconciled it, to find nothing to do).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = metric("tanium_operator_reconciles_total{");
    api.patch(
        "rest",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"example.com/note": "looked at"}}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        metric("tanium_operator_reconciles_total{"),
        before,
        "a settled object was reconciled"
    );

    // A new generation: reconciled from the whole object, observed, nothing deployed again.
    api.patch(
        "rest",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"safety": {"maxTargets": 50}}})),
    )
    .await
    .unwrap();
    let observed = env
        .wait_for(&api, "rest", "generation 2 observed", |o| {
            o.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
        })
        .await;
    assert_eq!(phase(&observed).as_deref(), Some("Completed"));
    assert_eq!(
        observed.status.as_ref().unwrap().deployment,
        done.status.as_ref().unwrap().deployment,
        "what it deployed is kept"
    );
    assert_eq!(env.performs_for(&observed), 1);

    // Deletion: the action it left open is stopped, once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.delete("rest", &DeleteParams::default()).await.unwrap();
    env.wait_gone(&api, "rest").await;
    assert_eq!(env.mutations("actionStop", &action_id).len(), 1);
    assert_eq!(metric(completed), 0.0, "not counted once gone");
    env.assert_exactly_once();
}
