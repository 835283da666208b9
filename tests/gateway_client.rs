//! The Gateway client against tanium-sim over real HTTP: every operation, paging, every error class, retries,
//! and the "outcome unknown" path that exactly-once deployment depends on.

use std::collections::HashSet;
use std::time::Duration;

use secrecy::SecretString;
use tanium_operator::gateway::actions::{
    PackageParam, PackageRef, PerformRequest, Schedule, Target, Targets,
};
use tanium_operator::gateway::endpoints::{EndpointQuery, SensorRequest};
use tanium_operator::gateway::{
    ActionId, ActionStatus, EndpointId, Filter, FilterOp, GatewayClient, GatewayConfig,
    GatewayError, GroupRef, Reading, RetryPolicy, Signal,
};
use tanium_sim::{
    AfterCommit, AuditOutcome, Faults, FleetSource, Generation, SimConfig, SimServer, TokenUser,
};

const TOKEN: &str = "token-operator-0123456789";
const OTHER: &str = "token-approver-9876543210";
const KILL_PACKAGE: &str = "Kill Process - ||Running Processes with MD5 Hash_MD5 Hash||";
const OPENSSH_MD5: &str = "4bf0d5083604b3f8c67c6d0dd310e355";

async fn sim_with(fleet: usize, tweak: impl FnOnce(&mut SimConfig)) -> SimServer {
    let mut config = SimConfig {
        fleet: FleetSource::Generated {
            size: fleet,
            seed: 42,
        },
        tokens: vec![
            TokenUser::new(TOKEN, "operator"),
            TokenUser::new(OTHER, "approver"),
        ],
        // Frozen clock: only the test moves time, so nothing depends on how fast the machine is.
        time_scale: 0.0,
        ..SimConfig::default()
    };
    tweak(&mut config);
    tanium_sim::start(config).await.expect("sim starts")
}

fn client_for(sim: &SimServer, token: &str) -> GatewayClient {
    let mut config = GatewayConfig::new(sim.url(), SecretString::from(token.to_owned()));
    config.retry = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(50),
    };
    config.request_timeout = Duration::from_secs(5);
    GatewayClient::new(config).expect("client")
}

fn all_computers() -> GroupRef {
    GroupRef {
        name: Some("All Computers".into()),
        id: None,
    }
}

fn tag_request(name: &str, target: Target, tag: &str) -> PerformRequest {
    PerformRequest {
        name: name.into(),
        comment: "integration test".into(),
        package: PackageRef {
            name: Some("Custom Tagging - Add Tags".into()),
            params: vec![tag.into()],
            ..PackageRef::default()
        },
        targets: Targets {
            action_group: all_computers(),
            target,
            platforms: vec![],
        },
        schedule: Schedule::default(),
    }
}

fn performs_named(sim: &SimServer, name: &str) -> Vec<AuditOutcome> {
    sim.sim()
        .audit()
        .into_iter()
        .filter(|e| e.operation == "actionPerform" && e.input.to_string().contains(name))
        .map(|e| e.outcome)
        .collect()
}

#[tokio::test]
async fn endpoints_page_to_the_end_each_once() {
    let sim = sim_with(1000, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    let query = EndpointQuery {
        page_size: 73,
        ..EndpointQuery::default()
    };
    let all = client.all_endpoints(&query, None).await.unwrap();
    assert_eq!(all.len(), 1000);
    let ids: HashSet<_> = all.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), 1000, "every endpoint exactly once");
    assert_eq!(client.count_endpoints(None).await.unwrap(), 1000);
    let first = client.endpoints_page(&query, None).await.unwrap();
    assert_eq!(first.total, 1000);
    assert_eq!(first.endpoints.len(), 73);
    assert!(first.next_cursor.is_some());
    let limited = client.all_endpoints(&query, Some(100)).await.unwrap();
    assert_eq!(limited.len(), 100);
    sim.shutdown().await;
}

#[tokio::test]
async fn endpoints_filter_and_sensor_readings() {
    let sim = sim_with(200, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    let query = EndpointQuery {
        filter: Some(Filter::any(vec![Filter::sensor(
            "Computer Name",
            FilterOp::Eq,
            "testmachine999",
        )])),
        sensors: vec![SensorRequest::named("OS Platform")],
        ..EndpointQuery::default()
    };
    let found = client.all_endpoints(&query, None).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, EndpointId::from("274177"));
    assert_eq!(found[0].name, "testmachine999");
    let col = &found[0].sensor_readings[0];
    assert_eq!(col.sensor, "OS Platform");
    assert_eq!(col.values, vec!["Windows".to_string()]);

    // The seed's kill-process preview: Windows endpoints running the OpenSSH binary.
    let openssh = Filter::all(vec![
        Filter::sensor_column(
            "Running Processes with MD5 Hash",
            "MD5 Hash",
            FilterOp::Eq,
            OPENSSH_MD5,
        ),
        Filter::sensor("OS Platform", FilterOp::Eq, "Windows"),
    ]);
    let n = client.count_endpoints(Some(&openssh)).await.unwrap();
    let listed = client
        .all_endpoints(
            &EndpointQuery {
                filter: Some(openssh.clone()),
                ..EndpointQuery::default()
            },
            None,
        )
        .await
        .unwrap();
    assert!(
        n >= 1 && n as usize == listed.len(),
        "count {n} vs listed {}",
        listed.len()
    );
    assert!(listed.iter().any(|e| e.id.0 == "12323"));
    // Negation: everything else.
    let others = client
        .count_endpoints(Some(&openssh.clone().negate()))
        .await
        .unwrap();
    assert_eq!(n + others, 200);
    // A bad filter never leaves the client.
    let bad = Filter::default();
    assert!(matches!(
        client.count_endpoints(Some(&bad)).await,
        Err(GatewayError::InvalidRequest(_))
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn package_specs() {
    let sim = sim_with(10, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    let add = client
        .package_spec("Custom Tagging - Add Tags")
        .await
        .unwrap()
        .expect("exists");
    assert_eq!(add.params.len(), 1);
    assert_eq!(add.params[0].key, "$1");
    add.check_params(&["x".into()], &[]).unwrap();
    let kill = client
        .package_spec(KILL_PACKAGE)
        .await
        .unwrap()
        .expect("exists");
    assert!(kill.params.is_empty());
    assert_eq!(
        kill.sensor_sourced_params[0].name,
        "Running Processes with MD5 Hash_MD5 Hash"
    );
    assert!(
        client
            .package_spec("No Such Package")
            .await
            .unwrap()
            .is_none()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn deploy_track_complete_find_and_stop() {
    let sim = sim_with(100, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    // The seed's first example: tag one machine chosen by computer name.
    let filter = Filter::any(vec![Filter::sensor(
        "Computer Name",
        FilterOp::Eq,
        "testmachine999",
    )]);
    let request = tag_request("test/deploy-1", Target::Filter(filter), "TheBestEndpoint");
    let created = client.perform(&request).await.unwrap();
    assert!(!created.is_empty());
    let action_ids: Vec<ActionId> = created.iter().filter_map(|c| c.action_id.clone()).collect();
    assert_eq!(
        action_ids.len(),
        created.len(),
        "every scheduled action has a lastAction"
    );
    let states = client.actions(&action_ids, 50).await.unwrap();
    let total: u32 = states
        .values()
        .flatten()
        .map(|s| tanium_operator::controller::wire::counts(&s.results).total())
        .sum();
    assert_eq!(total, 1, "exactly testmachine999 is targeted");

    sim.sim().advance(Duration::from_secs(120));
    let states = client.actions(&action_ids, 50).await.unwrap();
    let completed: u32 = states.values().flatten().map(|s| s.results.completed).sum();
    assert_eq!(completed, 1);
    assert!(
        states
            .values()
            .flatten()
            .all(|s| s.status == ActionStatus::Open),
        "open until expiry or stop"
    );
    let tags = sim.sim().endpoint("274177").unwrap().tags;
    assert!(tags.iter().any(|t| t == "TheBestEndpoint"), "{tags:?}");

    // Found again by name, as after a crash.
    let found = client
        .find_scheduled_actions("test/deploy-1")
        .await
        .unwrap();
    assert_eq!(found.len(), created.len());
    assert!(found.iter().all(|f| f.name == "test/deploy-1"));
    assert!(
        client
            .find_scheduled_actions("test/nothing")
            .await
            .unwrap()
            .is_empty()
    );

    for id in &action_ids {
        client.stop_action(id).await.unwrap();
        // Stopping again is harmless.
        client.stop_action(id).await.unwrap();
    }
    let one = client.action(&action_ids[0]).await.unwrap().unwrap();
    assert_eq!(one.status, ActionStatus::Stopped);
    assert!(one.stopped);
    assert!(
        client
            .action(&ActionId::from("999999999"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(performs_named(&sim, "test/deploy-1").len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn endpoint_ids_and_sensor_sourced_params() {
    let sim = sim_with(100, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    let by_id = tag_request(
        "test/by-id",
        Target::Endpoints(vec!["274177".into()]),
        "ById",
    );
    let created = client.perform(&by_id).await.unwrap();
    assert_eq!(created.len(), 1, "one platform targeted");

    let before = sim.sim().endpoint("12323").unwrap();
    assert!(before.processes.iter().any(|p| p.md5 == OPENSSH_MD5));
    let kill = PerformRequest {
        name: "test/kill-openssh".into(),
        comment: "Kill OpenSSH on Windows".into(),
        package: PackageRef {
            name: Some(KILL_PACKAGE.into()),
            sensor_sourced_params: vec![PackageParam {
                name: "Running Processes with MD5 Hash_MD5 Hash".into(),
                value: OPENSSH_MD5.into(),
            }],
            ..PackageRef::default()
        },
        targets: Targets {
            action_group: all_computers(),
            target: Target::Filter(Filter::all(vec![
                Filter::sensor_column(
                    "Running Processes with MD5 Hash",
                    "MD5 Hash",
                    FilterOp::Eq,
                    OPENSSH_MD5,
                ),
                Filter::sensor("OS Platform", FilterOp::Eq, "Windows"),
            ])),
            platforms: vec![],
        },
        schedule: Schedule {
            distribute_seconds: Some(30),
            ..Schedule::default()
        },
    };
    let created = client.perform(&kill).await.unwrap();
    sim.sim().advance(Duration::from_secs(300));
    let ids: Vec<ActionId> = created.iter().filter_map(|c| c.action_id.clone()).collect();
    let done: u32 = client
        .actions(&ids, 50)
        .await
        .unwrap()
        .values()
        .flatten()
        .map(|s| s.results.completed)
        .sum();
    assert!(done >= 1);
    let after = sim.sim().endpoint("12323").unwrap();
    assert!(
        !after.processes.iter().any(|p| p.md5 == OPENSSH_MD5),
        "the kill package ended OpenSSH"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn payload_errors_are_permanent_and_deploy_nothing() {
    let sim = sim_with(20, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    let mut wrong = tag_request(
        "test/wrong-params",
        Target::Endpoints(vec!["274177".into()]),
        "x",
    );
    wrong.package.params.push("extra".into());
    // A refusal may follow a commit (Tanium does not say otherwise): reported as an unknown outcome that carries
    // the refusal, for the caller to confirm by a look-up before it gives up.
    let err = client.perform(&wrong).await.unwrap_err();
    assert!(
        matches!(err, GatewayError::OutcomeUnknown { .. }) && err.refusal().is_some(),
        "{err:?}"
    );
    let mut unknown = tag_request(
        "test/unknown-package",
        Target::Endpoints(vec!["274177".into()]),
        "x",
    );
    unknown.package.name = Some("No Such Package".into());
    assert!(
        client
            .perform(&unknown)
            .await
            .unwrap_err()
            .refusal()
            .is_some()
    );
    assert!(
        client
            .find_scheduled_actions("test/wrong-params")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        performs_named(&sim, "test/wrong-params")
            .iter()
            .all(|o| !o.is_committed())
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn approval_needs_a_second_person() {
    let sim = sim_with(20, |c| c.approval_required = true).await;
    let operator = client_for(&sim, TOKEN);
    let approver = client_for(&sim, OTHER);
    let created = operator
        .perform(&tag_request(
            "test/approval",
            Target::Endpoints(vec!["274177".into()]),
            "Approved",
        ))
        .await
        .unwrap();
    let sa = &created[0].scheduled_action_id;
    let action = created[0].action_id.clone().unwrap();
    assert_eq!(
        operator.action(&action).await.unwrap().unwrap().status,
        ActionStatus::Pending
    );
    let own = operator.approve_scheduled_action(sa).await.unwrap_err();
    assert!(matches!(own, GatewayError::Payload { .. }), "{own:?}");
    assert!(approver.approve_scheduled_action(sa).await.unwrap());
    let info = operator.scheduled_action(sa).await.unwrap().unwrap();
    assert!(info.approved);
    sim.sim().advance(Duration::from_secs(120));
    let state = operator.action(&action).await.unwrap().unwrap();
    assert_eq!(state.results.completed, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn recurring_action_reissues_until_deleted() {
    let sim = sim_with(20, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    let end = sim.sim().now() + jiff::SignedDuration::from_hours(10);
    let mut request = tag_request(
        "test/recurring",
        Target::Endpoints(vec!["274177".into()]),
        "Again",
    );
    request.schedule = Schedule {
        reissue_seconds: Some(3600),
        expire_seconds: Some(600),
        end_time: Some(end),
        ..Schedule::default()
    };
    let created = client.perform(&request).await.unwrap();
    let sa = created[0].scheduled_action_id.clone();
    let first = created[0].action_id.clone().unwrap();
    sim.sim().advance(Duration::from_secs(3700));
    let later = client.scheduled_action(&sa).await.unwrap().unwrap();
    let second = later.last_action.unwrap();
    assert_ne!(second.id, first, "reissued as a new action instance");
    assert_eq!(
        client.action(&first).await.unwrap().unwrap().status,
        ActionStatus::Expired
    );
    client.delete_scheduled_action(&sa).await.unwrap();
    sim.sim().advance(Duration::from_secs(7200));
    let after_delete = client.scheduled_action(&sa).await.unwrap().unwrap();
    assert_eq!(
        after_delete.last_action.unwrap().id,
        second.id,
        "no reissue after delete"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn token_rejected_is_not_retried() {
    let sim = sim_with(10, |_| {}).await;
    let client = client_for(&sim, "token-wrong");
    let started = std::time::Instant::now();
    let err = client.count_endpoints(None).await.unwrap_err();
    assert!(matches!(err, GatewayError::TokenRejected { .. }), "{err:?}");
    assert!(err.is_permanent());
    assert!(
        !err.to_string().contains("token-wrong"),
        "the token never appears in errors"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no backoff for a rejected token"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn unreachable_gateway() {
    let sim = sim_with(10, |_| {}).await;
    let url = sim.url();
    sim.shutdown().await;
    let mut config = GatewayConfig::new(url, SecretString::from(TOKEN.to_owned()));
    config.retry = RetryPolicy {
        max_attempts: 2,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(10),
    };
    let client = GatewayClient::new(config).unwrap();
    let err = client.count_endpoints(None).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());
    // An unreachable Gateway certainly did not deploy: perform reports it plainly, not as "outcome unknown".
    let err = client
        .perform(&tag_request(
            "test/unreachable",
            Target::Endpoints(vec!["1".into()]),
            "x",
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn http_500_is_retried_then_reported() {
    let sim = sim_with(10, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    sim.sim().set_faults(Faults {
        http_500_next: 2,
        ..Faults::default()
    });
    assert_eq!(
        client.count_endpoints(None).await.unwrap(),
        10,
        "two 500s, then success"
    );
    sim.sim().set_faults(Faults {
        http_500_next: 10,
        ..Faults::default()
    });
    let err = client.count_endpoints(None).await.unwrap_err();
    assert!(
        matches!(err, GatewayError::Http { status: 500, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("Failed to initialize request"),
        "{err}"
    );
    assert!(err.is_retryable());
    sim.shutdown().await;
}

#[tokio::test]
async fn graphql_errors_are_reported_not_retried() {
    let sim = sim_with(10, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    sim.sim().set_faults(Faults {
        graphql_error_next: 1,
        ..Faults::default()
    });
    let err = client.count_endpoints(None).await.unwrap_err();
    assert!(matches!(err, GatewayError::GraphQl { .. }), "{err:?}");
    // Not retried: the next request finds the fault used up and succeeds.
    assert_eq!(client.count_endpoints(None).await.unwrap(), 10);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_retryable_payload_error_is_not_resent_for_a_once_only_deploy() {
    let sim = sim_with(10, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    sim.sim().set_faults(Faults {
        retryable_error_next: 1,
        ..Faults::default()
    });
    let err = client
        .perform(&tag_request(
            "test/retryable",
            Target::Endpoints(vec!["274177".into()]),
            "x",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::OutcomeUnknown { .. }),
        "`retryable` does not say `not applied`: {err:?}"
    );
    let outcomes = performs_named(&sim, "test/retryable");
    assert_eq!(outcomes.len(), 1, "sent once: {outcomes:?}");
    sim.shutdown().await;
}

/// The Gateway commits a once-only mutation and then answers with each shape Tanium's documentation leaves open:
/// the client reports an unknown outcome and never sends the mutation again.
#[tokio::test]
async fn a_committed_once_only_mutation_is_never_resent_whatever_the_answer() {
    let sim = sim_with(20, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    for shape in AfterCommit::ALL {
        sim.sim().set_faults(Faults {
            drop_after_commit_next: 1,
            after_commit: vec![shape],
            drop_operations: vec!["actionPerform".into()],
            ..Faults::default()
        });
        let name = format!("test/after-commit-{shape:?}");
        let err = client
            .perform(&tag_request(
                &name,
                Target::Endpoints(vec!["274177".into()]),
                "x",
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(err, GatewayError::OutcomeUnknown { .. }),
            "{shape:?}: {err:?}"
        );
        let outcomes = performs_named(&sim, &name);
        assert_eq!(outcomes.len(), 1, "{shape:?}: sent once: {outcomes:?}");
        assert!(outcomes[0].is_committed(), "{shape:?}");
        assert_eq!(
            client.find_scheduled_actions(&name).await.unwrap().len(),
            1,
            "{shape:?}: found by name"
        );
    }

    // A process kill, in both Direct Connect families: at most one termination per request.
    for generation in [Generation::Current, Generation::Legacy] {
        let sim = sim_with(20, |c| c.generation = generation).await;
        let client = client_for(&sim, TOKEN);
        let conn = connect(&sim, &client, &EndpointId::from("12323")).await;
        for shape in AfterCommit::ALL {
            sim.sim().set_faults(Faults {
                drop_after_commit_next: 1,
                after_commit: vec![shape],
                drop_operations: vec!["directConnectProcessTerminate".into(), "killProcess".into()],
                ..Faults::default()
            });
            let before = terminations(&sim);
            let ended = client
                .dc_terminate(&conn, 7056, "notepad.exe", Signal::Sigkill)
                .await;
            assert!(
                matches!(ended, Err(GatewayError::OutcomeUnknown { .. })),
                "{generation:?} {shape:?}: {ended:?}"
            );
            assert_eq!(
                terminations(&sim),
                before + 1,
                "{generation:?} {shape:?}: sent once"
            );
        }
        sim.shutdown().await;
    }
    sim.shutdown().await;
}

fn terminations(sim: &SimServer) -> usize {
    sim.sim()
        .audit()
        .iter()
        .filter(|e| {
            matches!(
                e.operation.as_str(),
                "directConnectProcessTerminate" | "killProcess"
            )
        })
        .count()
}

#[tokio::test]
async fn dropped_answer_is_outcome_unknown_and_found_by_name() {
    let sim = sim_with(10, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    sim.sim().set_faults(Faults {
        drop_after_commit_next: 1,
        drop_operations: vec!["actionPerform".into()],
        ..Faults::default()
    });
    let request = tag_request(
        "test/dropped",
        Target::Endpoints(vec!["274177".into()]),
        "x",
    );
    let err = client.perform(&request).await.unwrap_err();
    assert!(
        matches!(err, GatewayError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable(), "never blindly retried");
    let outcomes = performs_named(&sim, "test/dropped");
    assert_eq!(outcomes.len(), 1, "sent once: {outcomes:?}");
    assert!(matches!(outcomes[0], AuditOutcome::Dropped { .. }));
    // What a controller does next: look it up by name, and find the action that did get created.
    let found = client.find_scheduled_actions("test/dropped").await.unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].last_action.is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_gateway_times_out_as_no_answer() {
    let sim = sim_with(10, |_| {}).await;
    let mut config = GatewayConfig::new(sim.url(), SecretString::from(TOKEN.to_owned()));
    config.request_timeout = Duration::from_millis(200);
    config.retry = RetryPolicy {
        max_attempts: 2,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(10),
    };
    let client = GatewayClient::new(config).unwrap();
    sim.sim().set_faults(Faults {
        latency_ms: 1000,
        ..Faults::default()
    });
    let err = client.count_endpoints(None).await.unwrap_err();
    assert!(matches!(err, GatewayError::NoAnswer { .. }), "{err:?}");
    let err = client
        .perform(&tag_request(
            "test/slow",
            Target::Endpoints(vec!["274177".into()]),
            "x",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::OutcomeUnknown { .. }),
        "a timed-out deploy may have happened: {err:?}"
    );
    // The sim abandons a request whose client hung up during the latency, so it may not have run at all;
    // what must never happen is a second send.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        performs_named(&sim, "test/slow").len() <= 1,
        "never sent twice"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn batched_poll_uses_one_request_per_fifty() {
    let sim = sim_with(30, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    let mut ids = Vec::new();
    for i in 0..3 {
        let created = client
            .perform(&tag_request(
                &format!("test/batch-{i}"),
                Target::Endpoints(vec!["274177".into()]),
                "b",
            ))
            .await
            .unwrap();
        ids.extend(created.into_iter().filter_map(|c| c.action_id));
    }
    ids.push(ActionId::from("987654321"));
    let states = client.actions(&ids, 50).await.unwrap();
    assert_eq!(states.len(), 4);
    assert!(states[&ids[0]].is_some() && states[&ids[2]].is_some());
    assert!(
        states[&ids[3]].is_none(),
        "an unknown id does not spoil the batch"
    );
    let naive = client.actions(&ids, 1).await.unwrap();
    assert_eq!(naive, states);
    sim.shutdown().await;
}

#[tokio::test]
async fn direct_connect_read_kill_close_and_idle_timeout() {
    let sim = sim_with(20, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    let endpoint = EndpointId::from("12323");
    let conn = connect(&sim, &client, &endpoint).await;
    let snap = client
        .dc_read(
            &conn,
            Reading {
                performance: true,
                processes: true,
                alerts_since: Some(jiff::Timestamp::UNIX_EPOCH),
            },
        )
        .await
        .unwrap();
    let perf = snap.performance.unwrap();
    assert!((0.0..=100.0).contains(&perf.cpu_usage_percent));
    let processes = snap.processes.unwrap();
    assert!(
        processes
            .iter()
            .any(|p| p.pid == 7056 && p.name == "notepad.exe")
    );
    assert!(
        !snap.alerts.unwrap().is_empty(),
        "the seed's endpoint has an alert"
    );

    assert!(
        client
            .dc_terminate(&conn, 7056, "notepad.exe", Signal::Sigkill)
            .await
            .unwrap()
    );
    assert!(
        !client
            .dc_terminate(&conn, 7056, "notepad.exe", Signal::Sigkill)
            .await
            .unwrap(),
        "already gone"
    );
    assert!(
        !sim.sim()
            .endpoint("12323")
            .unwrap()
            .processes
            .iter()
            .any(|p| p.pid == 7056)
    );

    // Pings keep it alive past the idle timeout; silence closes it.
    sim.sim().advance(Duration::from_secs(100));
    assert!(client.dc_ping(&conn).await.unwrap());
    sim.sim().advance(Duration::from_secs(100));
    assert_eq!(client.dc_status(&conn).await.unwrap(), "READY");
    sim.sim().advance(Duration::from_secs(121));
    assert_eq!(client.dc_status(&conn).await.unwrap(), "NOT_FOUND");
    let gone = client
        .dc_read(
            &conn,
            Reading {
                performance: true,
                processes: false,
                alerts_since: None,
            },
        )
        .await;
    assert!(gone.is_err(), "an idled-out connection is gone: {gone:?}");

    let conn = connect(&sim, &client, &endpoint).await;
    assert!(client.dc_close(&conn).await.unwrap());
    assert_eq!(client.dc_status(&conn).await.unwrap(), "NOT_FOUND");

    let unknown = client
        .dc_open(&EndpointId::from("424242424"), Duration::from_millis(200))
        .await;
    assert!(
        matches!(unknown, Err(GatewayError::ConnectionFailed { .. })),
        "{unknown:?}"
    );
    sim.shutdown().await;
}

/// Open a connection while the frozen sim clock is moved along, so CONNECTING can become READY.
async fn connect(
    sim: &SimServer,
    client: &GatewayClient,
    endpoint: &EndpointId,
) -> tanium_operator::gateway::DirectConnection {
    let open = client.dc_open(endpoint, Duration::from_secs(10));
    tokio::pin!(open);
    loop {
        tokio::select! {
            conn = &mut open => return conn.expect("connection opens"),
            () = tokio::time::sleep(Duration::from_millis(50)) => sim.sim().advance(Duration::from_secs(1)),
        }
    }
}

#[tokio::test]
async fn stale_cursor_is_reported_and_walks_restart_boundedly() {
    let sim = sim_with(100, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    let query = EndpointQuery {
        page_size: 10,
        ..EndpointQuery::default()
    };
    let first = client.endpoints_page(&query, None).await.unwrap();
    let cursor = first.next_cursor.unwrap();
    // Cursors live about five minutes after their last use.
    sim.sim().advance(Duration::from_secs(6 * 60));
    let err = client
        .endpoints_page(&query, Some(&cursor))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::GraphQl { .. }) && err.is_retryable(),
        "{err:?}"
    );
    sim.shutdown().await;

    // A Gateway so slow that every cursor expires between pages: the walk restarts a few times, then gives up
    // with the stale-cursor error rather than looping for ever.
    let sim = sim_with(100, |c| c.time_scale = 2000.0).await;
    let client = client_for(&sim, TOKEN);
    sim.sim().set_faults(Faults {
        latency_ms: 200,
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let err = client.all_endpoints(&query, None).await.unwrap_err();
    assert!(matches!(err, GatewayError::GraphQl { .. }), "{err:?}");
    // Bounded: four walks of two pages, not an endless loop.
    assert!(started.elapsed() < Duration::from_secs(20));
    sim.shutdown().await;
}

#[tokio::test]
async fn find_endpoint_by_id_or_computer_name() {
    use tanium_operator::gateway::{EndpointSelector, Resolved};
    let sim = sim_with(50, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    let by_id = client
        .find_endpoint(&EndpointSelector::Id(EndpointId::from("274177")))
        .await
        .unwrap();
    assert!(
        matches!(&by_id, Resolved::One(e) if e.name == "testmachine999"),
        "{by_id:?}"
    );
    let by_name = client
        .find_endpoint(&EndpointSelector::ComputerName("testmachine999".into()))
        .await
        .unwrap();
    assert!(
        matches!(&by_name, Resolved::One(e) if e.id.0 == "274177"),
        "{by_name:?}"
    );
    for unknown in [
        EndpointSelector::Id(EndpointId::from("424242424")),
        EndpointSelector::ComputerName("no-such-machine".into()),
    ] {
        let r = client.find_endpoint(&unknown).await.unwrap();
        assert_eq!(r, Resolved::None, "{unknown}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn pings_keep_a_connection_alive_while_work_goes_on() {
    let sim = sim_with(20, |_| {}).await;
    let client = client_for(&sim, TOKEN);
    let endpoint = EndpointId::from("12323");
    // Work that takes five sim minutes, well past the two-minute idle timeout.
    let slow_work = || async {
        for _ in 0..6 {
            sim.sim().advance(Duration::from_secs(50));
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let conn = connect(&sim, &client, &endpoint).await;
    client
        .while_pinging(
            Duration::from_millis(40),
            || Some(conn.clone()),
            slow_work(),
        )
        .await;
    assert_eq!(client.dc_status(&conn).await.unwrap(), "READY");
    assert_eq!(client.dc_alive(&conn).await, Some(true));

    // The same work without pings loses the connection.
    let unpinged = connect(&sim, &client, &endpoint).await;
    slow_work().await;
    assert_eq!(client.dc_status(&unpinged).await.unwrap(), "NOT_FOUND");
    assert_eq!(client.dc_alive(&unpinged).await, Some(false));
    sim.shutdown().await;
}
