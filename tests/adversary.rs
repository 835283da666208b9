//! The Gateway's unspecified corners (docs/gateway.md): where Tanium's documentation leaves the Gateway's answer
//! open, the sim plays the other plausible one, and the operator must read it right. Real kube-apiserver + etcd,
//! tanium-sim over HTTP, the controllers in-process.

mod common;

use std::time::Duration;

use common::{Env, TOKEN, phase, ready_reason};
use kube::api::{Api, ListParams};
use serde_json::json;
use tanium_operator::controller::Policy;
use tanium_operator::crd::TaniumAction;
use tanium_sim::{AfterCommit, AuditOutcome, Faults, ListingModes};

/// The second Gateway user the test environment knows (another team's token, a shard's, a rotated user's).
const OTHER_TOKEN: &str = "token-second-person";

fn manifest(name: &str, endpoints: &[String], distribute: u64) -> serde_json::Value {
    json!({"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction", "metadata": {"name": name},
           "spec": {"package": {"name": "Custom Tagging - Add Tags", "params": [name]},
                    "targets": {"endpoints": endpoints},
                    "schedule": {"distributeSeconds": distribute}}})
}

/// Two online endpoints per object, different ones for neighbours.
fn targets(env: &Env, i: usize) -> Vec<String> {
    let online = env.sim.sim().online_endpoint_ids();
    vec![
        online[(2 * i) % online.len()].clone(),
        online[(2 * i + 1) % online.len()].clone(),
    ]
}

/// The same two endpoints as [`targets`], by a filter on their computer names (previewed through `sensors`).
fn by_name(env: &Env, i: usize) -> serde_json::Value {
    let filters: Vec<serde_json::Value> = targets(env, i)
        .iter()
        .filter_map(|id| env.sim.sim().endpoint(id))
        .map(|e| json!({"sensor": {"name": "Computer Name"}, "op": "EQ", "value": e.name}))
        .collect();
    json!({"filter": {"any": true, "filters": filters}})
}

/// Create `n` objects and wait until every one is terminal.
async fn run(env: &Env, api: &Api<TaniumAction>, prefix: &str, n: usize) -> Vec<TaniumAction> {
    run_with(env, api, prefix, n, false).await
}

/// As [`run`]; with `filters`, every third object targets its endpoints by a filter instead of by id.
async fn run_with(
    env: &Env,
    api: &Api<TaniumAction>,
    prefix: &str,
    n: usize,
    filters: bool,
) -> Vec<TaniumAction> {
    for i in 0..n {
        let mut m = manifest(&format!("{prefix}-{i}"), &targets(env, i), 30);
        if filters && i % 3 == 0 {
            m["spec"]["targets"] = by_name(env, i);
        }
        env.create(api, m).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    loop {
        let all = api.list(&ListParams::default()).await.expect("list").items;
        let mine: Vec<TaniumAction> = all
            .into_iter()
            .filter(|o| {
                o.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .collect();
        let open: Vec<String> = mine
            .iter()
            .filter(|o| {
                !o.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p.is_terminal())
            })
            .map(|o| {
                format!(
                    "{} {:?}",
                    o.metadata.name.as_deref().unwrap_or(""),
                    phase(o)
                )
            })
            .collect();
        if mine.len() == n && open.is_empty() {
            return mine;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} not terminal: {open:?}",
            open.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every object ended as Tanium's own state says (every target of every action completed: all are online), none
/// early, and each was deployed exactly once.
fn assert_as_tanium_says(env: &Env, objects: &[TaniumAction]) {
    for o in objects {
        let name = o.metadata.name.as_deref().unwrap_or("");
        let status = o.status.as_ref().expect("status");
        let results = status.results.expect("results");
        assert_eq!(
            (phase(o).as_deref(), ready_reason(o).as_deref()),
            (Some("Completed"), Some("Completed")),
            "{name} ended before Tanium's action did: {status:#?}"
        );
        assert_eq!(
            u64::from(results.counts.completed),
            results.targeted,
            "{name}: {results:?}"
        );
        assert_eq!(env.performs_for(o), 1, "{name}");
    }
    env.assert_exactly_once();
}

/// A batched poll with aliases answered `null` (an action not visible yet, one field's failure) or failed alone
/// (an error with that alias's `path`): "not shown now", never "gone". On the code before, an object whose action
/// read `null` once was ended as Expired or CompletedPartially while Tanium still ran it.
#[tokio::test]
async fn a_null_or_failed_read_is_not_the_end_of_an_action() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.sim.sim().set_faults(Faults {
        null_read_rate: 0.3,
        read_error_rate: 0.1,
        seed: 11,
        ..Faults::default()
    });
    env.start_controller();
    let api = env.namespace("nulls").await;
    let objects = run(&env, &api, "null", 20).await;
    assert_as_tanium_says(&env, &objects);
}

/// A status this client's schema does not know (a newer Gateway's) keeps the action followed as open; on the code
/// before it read as "not open", and the object ended while Tanium still ran the action.
#[tokio::test]
async fn a_status_this_client_does_not_know_keeps_the_action_followed() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.sim.sim().set_faults(Faults {
        unknown_status_rate: 1.0,
        ..Faults::default()
    });
    env.start_controller();
    let api = env.namespace("unknown-status").await;
    // Spread over 200 simulated seconds (10 s here): Tanium still runs it for a while.
    env.create(&api, manifest("queued", &targets(&env, 0), 200))
        .await;
    env.wait_for(&api, "queued", "Running", |o| {
        phase(o).as_deref() == Some("Running")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = api.get("queued").await.expect("get");
    assert_eq!(
        phase(&later).as_deref(),
        Some("Running"),
        "ended while its status was one it does not know: {:#?}",
        later.status
    );
    let status = later.status.as_ref().expect("status");
    assert_eq!(
        status.deployment.scheduled_actions[0].status.as_deref(),
        Some("UNRECOGNIZED")
    );
    env.sim.sim().set_faults(Faults::default());
    let done = env
        .wait_for(&api, "queued", "Completed", |o| {
            phase(o).as_deref() == Some("Completed")
        })
        .await;
    assert_as_tanium_says(&env, &[done]);
}

/// A Gateway that refuses documents above a size (here: more than 8 top-level fields, with a GraphQL error and no
/// `path`, as a complexity limit would): the poller asks fewer actions per request and never again as many as
/// were refused. On the code before, every poll of 20 open actions failed and nothing ever completed.
#[tokio::test]
async fn polls_shrink_to_what_the_gateway_takes() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.sim.sim().set_faults(Faults {
        max_top_level_fields: 8,
        ..Faults::default()
    });
    let ctx = env.start_controller();
    let api = env.namespace("big-polls").await;
    let objects = run(&env, &api, "big", 20).await;
    assert_as_tanium_says(&env, &objects);
    assert!(
        ctx.connections.own().poller.size() < 20,
        "{} per request",
        ctx.connections.own().poller.size()
    );
    let polls = env
        .sim
        .sim()
        .requests()
        .into_iter()
        .filter(|r| r.operation_name.as_deref() == Some("pollActions"))
        .count();
    assert!(polls > 0);
}

/// The look-up by name after a lost answer: the name filter may lag behind a new action (here by 2 s, inside the
/// grace), and filters list only the caller's own actions unless they say `restrictOwner: false`. The action was
/// deployed under one Gateway user and is recovered under another (a shard move, a new token): found, not
/// deployed again. On the code before, the look-up asked with the default and deployed a second time.
#[tokio::test]
async fn the_look_up_finds_another_users_action_behind_a_lagging_index() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.sim.sim().set_listing(ListingModes {
        name_filter_lag_ms: 2000,
        restrict_owner: true,
    });
    env.sim.sim().set_faults(Faults {
        drop_after_commit_next: 1,
        drop_operations: vec!["actionPerform".into()],
        ..Faults::default()
    });
    let client = env.client.clone();
    env.start_controller_with(client.clone(), TOKEN, |c| {
        c.timing.lookup_grace = Duration::from_secs(5);
    });
    let api = env.namespace("lookup").await;
    env.create(&api, manifest("moved", &targets(&env, 0), 30))
        .await;
    // The answer is lost; the operator stops before it looks the name up, and comes back as another user.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !env
        .sim
        .sim()
        .audit()
        .iter()
        .any(|e| matches!(e.outcome, AuditOutcome::Dropped { .. }))
    {
        assert!(tokio::time::Instant::now() < deadline, "no deploy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.stop_controller();
    env.start_controller_with(client, OTHER_TOKEN, |c| {
        c.timing.lookup_grace = Duration::from_secs(5);
    });
    let done = env
        .wait_for(&api, "moved", "Completed", |o| {
            phase(o).as_deref() == Some("Completed")
        })
        .await;
    assert_eq!(
        common::deployed_reason(&done).as_deref(),
        Some("Recovered"),
        "{:#?}",
        done.status
    );
    assert_eq!(env.performs_for(&done), 1);
    env.assert_exactly_once();
}

/// HTTP 403 for a token that is good but lacks a permission is a person's to grant, said as such; it is not a
/// rejected token (which a new token would clear). Nothing is deployed meanwhile; granted, it goes on.
#[tokio::test]
async fn a_missing_permission_is_said_as_such() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.sim.sim().set_faults(Faults {
        forbidden_fields: vec!["packageSpecs".into()],
        ..Faults::default()
    });
    env.start_controller();
    let api = env.namespace("forbidden").await;
    env.create(&api, manifest("no-role", &targets(&env, 0), 30))
        .await;
    let held = env
        .wait_for(&api, "no-role", "GatewayForbidden", |o| {
            ready_reason(o).as_deref() == Some("GatewayForbidden")
        })
        .await;
    assert_eq!(env.performs_for(&held), 0);
    let message =
        tanium_operator::crd::condition(&held.status.as_ref().expect("status").conditions, "Ready")
            .map(|c| c.message.clone())
            .unwrap_or_default();
    assert!(message.contains("permission"), "{message}");
    env.sim.sim().set_faults(Faults::default());
    let done = env
        .wait_for(&api, "no-role", "Completed", |o| {
            phase(o).as_deref() == Some("Completed")
        })
        .await;
    assert_as_tanium_says(&env, &[done]);
}

/// Every corner at once, with the transport's faults on top: every object ends in the phase Tanium's own state
/// says, none early, none deployed twice.
#[tokio::test]
async fn every_corner_at_once() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.sim.sim().set_listing(ListingModes {
        name_filter_lag_ms: 500,
        restrict_owner: true,
    });
    env.sim.sim().set_faults(Faults {
        latency_ms: 10,
        http_500_rate: 0.03,
        retryable_error_rate: 0.03,
        drop_after_commit_rate: 0.2,
        drop_operations: vec!["actionPerform".into()],
        after_commit: AfterCommit::ALL.to_vec(),
        null_read_rate: 0.2,
        read_error_rate: 0.05,
        unknown_status_rate: 0.05,
        max_top_level_fields: 12,
        delete_refused_rate: 0.3,
        delete_again_refused: true,
        seed: 29,
        ..Faults::default()
    });
    // Cached readings may be 20 minutes old: filters are previewed live, and answers take up to 2 s (sim time).
    env.sim.sim().set_sources(tanium_sim::SourceModes {
        tds_registered_only: true,
        tds_max_age_ms: 1_200_000,
        live_answer_spread_ms: 2_000,
    });
    let client = env.client.clone();
    env.start_controller_with(client, TOKEN, |c| {
        c.timing.lookup_grace = Duration::from_secs(3);
    });
    let api = env.namespace("corners").await;
    let objects = run_with(&env, &api, "corner", 30, true).await;
    let live = objects
        .iter()
        .filter_map(|o| o.status.as_ref()?.preview.as_ref()?.source)
        .filter(|s| *s == tanium_operator::crd::PreviewRead::Live)
        .count();
    assert_eq!(live, 10, "every filtered object previewed live");
    assert_as_tanium_says(&env, &objects);
}

/// An object deleted while its intent has no ids (the answer was lost) and created again at once (a GitOps tool's
/// Replace, a person): the deleted one stays until a look-up by name can be trusted, so the new one finds the action
/// instead of deploying beside it. Here the name filter lags by 2 s: on the code before, the deletion looked up at
/// once, found nothing, let the object go, and the new one deployed a second time.
#[tokio::test]
async fn a_replaced_object_waits_for_what_its_predecessor_may_have_deployed() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.sim.sim().set_listing(ListingModes {
        name_filter_lag_ms: 2000,
        restrict_owner: false,
    });
    env.sim.sim().set_faults(Faults {
        drop_after_commit_next: 1,
        drop_operations: vec!["actionPerform".into()],
        ..Faults::default()
    });
    let client = env.client.clone();
    env.start_controller_with(client, TOKEN, |c| {
        c.timing.lookup_grace = Duration::from_secs(4);
    });
    let api = env.namespace("replaced").await;
    let make = |env: &Env| manifest("replaced", &targets(env, 0), 30);
    env.create(&api, make(&env)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !env
        .sim
        .sim()
        .audit()
        .iter()
        .any(|e| matches!(e.outcome, AuditOutcome::Dropped { .. }))
    {
        assert!(tokio::time::Instant::now() < deadline, "no deploy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.delete("replaced", &Default::default())
        .await
        .expect("delete");
    env.wait_gone(&api, "replaced").await;
    env.create(&api, make(&env)).await;
    let again = env
        .wait_for(&api, "replaced", "terminal", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_terminal())
        })
        .await;
    assert_eq!(
        common::deployed_reason(&again).as_deref(),
        Some("Adopted"),
        "{:#?}",
        again.status
    );
    assert_eq!(env.performs().len(), 1, "{:?}", env.performs());
    env.assert_exactly_once();
}

/// Online Windows endpoints running the binary the seed's kill example names: what a live question finds.
fn running_sshd(env: &Env) -> u64 {
    let sim = env.sim.sim();
    sim.online_endpoint_ids()
        .iter()
        .filter_map(|id| sim.endpoint(id))
        .filter(|e| e.platform == tanium_sim::Platform::Windows)
        .filter(|e| e.processes.iter().any(|p| p.md5 == tanium_sim::SSHD_MD5))
        .count() as u64
}

fn preview_of(o: &TaniumAction) -> tanium_operator::crd::Preview {
    o.status
        .as_ref()
        .and_then(|s| s.preview.clone())
        .expect("a preview")
}

/// The Tanium Data Service holds only registered sensors: the seed's kill-by-MD5 filter matches nothing there. The
/// preview asks the endpoints live (Auto sees the process sensor is not collected) and counts what the action will
/// hit; forced to the cached data it finds no target. On the code before, every preview read the cached data and
/// the seed's example was held as NoTargets.
#[tokio::test]
async fn the_seed_kill_by_md5_previews_live_what_the_cache_cannot_see() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.sim.sim().set_sources(tanium_sim::SourceModes {
        tds_registered_only: true,
        tds_max_age_ms: 300_000,
        live_answer_spread_ms: 4_000,
    });
    env.start_controller();
    let api = env.namespace("preview-source").await;
    let expected = running_sshd(&env);
    assert!(
        expected >= 2,
        "the fleet runs OpenSSH on several Windows endpoints"
    );

    let mut seed = common::example("kill-openssh-by-md5");
    seed["spec"]["safety"]["requirePreviewApproval"] = json!(true);
    env.create(&api, seed.clone()).await;
    let mut cached = seed;
    cached["metadata"]["name"] = json!("kill-openssh-cached");
    cached["spec"]["preview"] = json!({"source": "Cached"});
    env.create(&api, cached).await;

    let held = env
        .wait_for(
            &api,
            "kill-openssh-by-md5",
            "AwaitingPreviewApproval",
            |o| ready_reason(o).as_deref() == Some("AwaitingPreviewApproval"),
        )
        .await;
    let p = preview_of(&held);
    assert_eq!(
        p.source,
        Some(tanium_operator::crd::PreviewRead::Live),
        "{p:?}"
    );
    assert!(
        p.source_reason
            .as_deref()
            .unwrap_or("")
            .contains("does not collect"),
        "{p:?}"
    );
    assert_eq!(p.count, expected, "{p:?}");
    assert_eq!(p.answered, p.expected, "{p:?}");
    let blind = env
        .wait_for(&api, "kill-openssh-cached", "NoTargets", |o| {
            ready_reason(o).as_deref() == Some("NoTargets")
        })
        .await;
    assert_eq!(preview_of(&blind).count, 0);
    assert_eq!(env.performs_for(&held) + env.performs_for(&blind), 0);
}

/// A live preview some online endpoints did not answer within maxWaitTime counts fewer than the action will hit:
/// it is held (PreviewIncomplete), deploys nothing, and goes on once a longer wait lets every endpoint answer.
#[tokio::test]
async fn an_incomplete_live_preview_holds_the_deployment() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.sim.sim().set_sources(tanium_sim::SourceModes {
        tds_registered_only: true,
        live_answer_spread_ms: 40_000,
        ..tanium_sim::SourceModes::default()
    });
    env.start_controller();
    let api = env.namespace("preview-partial").await;
    let mut seed = common::example("kill-openssh-by-md5");
    seed["spec"]["preview"] = json!({"maxWaitTime": 10});
    env.create(&api, seed).await;
    let held = env
        .wait_for(&api, "kill-openssh-by-md5", "PreviewIncomplete", |o| {
            ready_reason(o).as_deref() == Some("PreviewIncomplete")
        })
        .await;
    let p = preview_of(&held);
    assert!(p.answered < p.expected, "{p:?}");
    assert_eq!(env.performs_for(&held), 0);

    let patch = json!({"spec": {"preview": {"maxWaitTime": 60}}});
    api.patch(
        "kill-openssh-by-md5",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .expect("patch");
    let done = env
        .wait_for(&api, "kill-openssh-by-md5", "Completed", |o| {
            phase(o).as_deref() == Some("Completed")
        })
        .await;
    let p = preview_of(&done);
    assert_eq!(p.answered, p.expected, "{p:?}");
    assert!(p.count >= 2, "{p:?}");
    assert_eq!(env.performs_for(&done), 1);
}

/// The preview counted fewer endpoints than the action reached (cached readings that changed since, like endpoints
/// that come online later): once the previewed number finished, the rest are still downloading or running. Tanium
/// does not document what a stop does to them, and this sim's stop cuts them off, so stopWhenComplete waits until
/// none is at work. On the code before, the action was stopped as soon as the previewed number finished, and the
/// late endpoints never completed.
#[tokio::test]
async fn stop_when_complete_never_cuts_off_an_endpoint_at_work() {
    // Real time: each endpoint downloads for 1-4 s and runs for 1-6 s, long enough for the operator to see the
    // first finish while the others work.
    let Some(mut env) = Env::start(Policy::default(), |c| c.time_scale = 1.0).await else {
        return;
    };
    // Cached readings refresh only every 100 simulated hours: the preview sees the tags as they were.
    env.sim.sim().set_sources(tanium_sim::SourceModes {
        tds_max_age_ms: 360_000_000,
        ..tanium_sim::SourceModes::default()
    });
    env.start_controller();
    let api = env.namespace("late-joiners").await;
    let online = env.sim.sim().online_endpoint_ids();
    let (first, late) = (&online[0], &online[1..7]);
    assert!(env.sim.sim().set_tags(first, vec!["Wave".into()]));
    let manifest = json!({"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
        "metadata": {"name": "wave"},
        "spec": {"package": {"name": "Custom Tagging - Add Tags", "params": ["Reached"]},
                 "targets": {"filter": {"sensor": {"name": "Custom Tags"}, "op": "EQ", "value": "Wave"}},
                 "preview": {"source": "Cached"},
                 "safety": {"requirePreviewApproval": true}}});
    env.create(&api, manifest).await;
    let held = env
        .wait_for(&api, "wave", "AwaitingPreviewApproval", |o| {
            ready_reason(o).as_deref() == Some("AwaitingPreviewApproval")
        })
        .await;
    let p = preview_of(&held);
    assert_eq!(p.count, 1, "{p:?}");
    for id in late {
        assert!(env.sim.sim().set_tags(id, vec!["Wave".into()]));
    }
    let approve = json!({"metadata": {"annotations": {
        tanium_operator::crd::APPROVED_PREVIEW_ANNOTATION: p.digest}}});
    api.patch(
        "wave",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&approve),
    )
    .await
    .expect("approve");
    let done = env
        .wait_for(&api, "wave", "terminal", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_terminal())
        })
        .await;
    let results = done
        .status
        .as_ref()
        .and_then(|s| s.results)
        .expect("results");
    assert_eq!(results.counts.at_work(), 0, "{results:?}");
    assert_eq!(results.counts.completed, 7, "{results:?}");
    for id in std::iter::once(first).chain(late) {
        let tags = env
            .sim
            .sim()
            .endpoint(id)
            .map(|e| e.tags)
            .unwrap_or_default();
        assert!(tags.iter().any(|t| t == "Reached"), "{id}: {tags:?}");
    }
    assert_eq!(env.performs_for(&done), 1);
}

/// A recurring object deleted under `deletionPolicy: Stop` deletes its schedule. Tanium does not document when
/// `scheduledActionDelete` refuses: here it refuses twice while the schedule stays enabled, and (another object) a
/// delete whose answer was lost is refused the second time as "not found". Each refusal is checked against the
/// schedule's own status: the first object stays until the schedule is deleted, the second goes at once.
#[tokio::test]
async fn a_refused_schedule_deletion_is_checked_not_assumed() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.start_controller();
    let api = env.namespace("refused-delete").await;
    let end = env.sim.sim().now() + jiff::SignedDuration::from_hours(24);
    for (i, name) in ["refused", "lost"].into_iter().enumerate() {
        let mut m = manifest(name, &targets(&env, i), 0);
        m["spec"]["schedule"] = json!({"reissueSeconds": 3600, "endTime": end.to_string()});
        env.create(&api, m).await;
    }
    let schedule_of = |o: &TaniumAction| {
        o.status
            .as_ref()
            .and_then(|s| s.deployment.scheduled_actions.first())
            .map(|s| s.id.clone())
            .expect("a scheduled action")
    };
    let mut schedules = Vec::new();
    for name in ["refused", "lost"] {
        let o = env
            .wait_for(&api, name, "Running", |o| {
                phase(o).as_deref() == Some("Running")
            })
            .await;
        schedules.push(schedule_of(&o));
    }
    let gateway = env.gateway(TOKEN);
    let status = async |id: &str| {
        gateway
            .scheduled_action(&tanium_operator::gateway::ScheduledActionId(id.to_owned()))
            .await
            .expect("read")
            .and_then(|s| s.status)
    };

    env.sim.sim().set_faults(Faults {
        delete_refused_next: 2,
        ..Faults::default()
    });
    api.delete("refused", &Default::default())
        .await
        .expect("delete");
    env.wait_gone(&api, "refused").await;
    assert_eq!(status(&schedules[0]).await.as_deref(), Some("DELETED"));
    let attempts = env.mutations("scheduledActionDelete", &schedules[0]);
    assert_eq!(
        attempts.len(),
        3,
        "two refusals, then deleted: {attempts:?}"
    );

    env.sim.sim().set_faults(Faults {
        drop_after_commit_next: 1,
        drop_operations: vec!["scheduledActionDelete".into()],
        delete_again_refused: true,
        ..Faults::default()
    });
    api.delete("lost", &Default::default())
        .await
        .expect("delete");
    env.wait_gone(&api, "lost").await;
    assert_eq!(status(&schedules[1]).await.as_deref(), Some("DELETED"));
    let attempts = env.mutations("scheduledActionDelete", &schedules[1]);
    assert!(attempts.len() >= 2, "{attempts:?}");
}
