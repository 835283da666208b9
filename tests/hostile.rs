//! Hostile manifests: what a careless or hostile namespace user could apply. Each one is refused by the apiserver
//! (schema, CEL) or held by the operator with a Ready condition and an event; none reaches `actionPerform` (nor a
//! Direct Connect termination), and no value from a manifest ever appears in a GraphQL document: the sim records
//! every distinct document it received, and user input may only arrive in variables.

mod common;

use std::time::Duration;

use common::{CHART_NAMESPACE, Env, KILL_PACKAGE, TOKEN};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tanium_operator::controller::shard::SHARD_LABEL;
use tanium_operator::controller::{Policy, TagBinding};
use tanium_operator::crd::TaniumAction;
use tanium_sim::Faults;

/// GraphQL that would deploy something if a client ever pasted user input into a document.
const INJECTION: &str = r#"x"}) { id } } mutation Evil { actionPerform(input: {name: "pwned"}) { scheduledActions { id } } } #"#;
/// The same, short enough for a field of at most 64 characters.
const SHORT_INJECTION: &str = r#"a"}) { id } } mutation Evil { x } #"#;
/// Parts of [`INJECTION`] that no document may contain.
const CANARIES: [&str; 2] = ["mutation Evil", "pwned"];

const ADD_TAGS: &str = "Custom Tagging - Add Tags";
const NAMESPACE: &str = "hostile";
/// Not in the admin policy's allowed namespaces.
const ROGUE: &str = "rogue";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Action,
    Tag,
    Inspection,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Action => "TaniumAction",
            Self::Tag => "TaniumTag",
            Self::Inspection => "TaniumEndpointInspection",
        }
    }

    fn api(self, client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("tanium-operator.dev", "v1alpha1", self.name());
        Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk))
    }

    fn manifest(self, name: &str, spec: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "tanium-operator.dev/v1alpha1", "kind": self.name(),
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("a manifest")
    }
}

/// What must become of a case.
#[derive(Debug)]
enum Verdict {
    /// The apiserver refuses the create (422) with a message holding this.
    Refused(&'static str),
    /// The operator holds it: Ready is False with this reason and a message holding the second, and an event
    /// says so.
    Held(&'static str, &'static str),
}

struct Case {
    name: &'static str,
    kind: Kind,
    namespace: &'static str,
    spec: Value,
    verdict: Verdict,
}

fn case(name: &'static str, kind: Kind, spec: Value, verdict: Verdict) -> Case {
    Case {
        name,
        kind,
        namespace: NAMESPACE,
        spec,
        verdict,
    }
}

fn add_tag(targets: Value) -> Value {
    json!({"package": {"name": ADD_TAGS, "params": ["hostile"]}, "targets": targets})
}

fn one_endpoint() -> Value {
    json!({"endpoints": ["274177"]})
}

fn windows() -> Value {
    json!({"filter": {"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Windows"}})
}

fn with(mut spec: Value, key: &str, value: Value) -> Value {
    spec[key] = value;
    spec
}

/// `filters` nested `levels` deep around one comparison.
fn nested(levels: usize) -> Value {
    let mut f = json!({"sensor": {"name": "Computer Name"}, "value": "a"});
    for _ in 0..levels {
        f = json!({"filters": [f]});
    }
    f
}

fn tag(tags: Value, targets: Value) -> Value {
    json!({"tags": tags, "targets": targets, "interval": "5m"})
}

fn inspect(endpoint: Value) -> Value {
    json!({"endpoint": endpoint, "collect": {"performance": true}})
}

fn cases() -> Vec<Case> {
    use Kind::{Action, Inspection, Tag};
    use Verdict::{Held, Refused};
    let long = |n: usize| "x".repeat(n);
    let mut all = vec![
        // Conflicting or missing targets.
        case(
            "both-targets",
            Action,
            add_tag(
                json!({"endpoints": ["1"], "filter": {"sensor": {"name": "Computer Name"}, "value": "a"}}),
            ),
            Refused("exactly one of filter or endpoints"),
        ),
        case(
            "no-targets",
            Action,
            add_tag(json!({})),
            Refused("exactly one of filter or endpoints"),
        ),
        case(
            "tag-both-targets",
            Tag,
            tag(
                json!(["a"]),
                json!({"endpoints": ["1"], "filter": {"sensor": {"name": "Computer Name"}, "value": "a"}}),
            ),
            Refused("exactly one of filter or endpoints"),
        ),
        case(
            "inspect-id-and-name",
            Inspection,
            inspect(json!({"id": "12323", "computerName": "tanium-server-01"})),
            Refused("exactly one of id or computerName"),
        ),
        // Oversized lists and strings.
        case(
            "too-many-ids",
            Action,
            add_tag(json!({"endpoints": (0..26).map(|i| i.to_string()).collect::<Vec<_>>()})),
            Refused("spec.targets.endpoints: Too many: 26"),
        ),
        case(
            "too-many-params",
            Action,
            json!({"package": {"name": ADD_TAGS, "params": vec!["p"; 33]}, "targets": one_endpoint()}),
            Refused("spec.package.params: Too many: 33"),
        ),
        case(
            "oversized-param",
            Action,
            json!({"package": {"name": ADD_TAGS, "params": [long(5000)]}, "targets": one_endpoint()}),
            Refused("spec.package.params[0]: Too long"),
        ),
        case(
            "oversized-comment",
            Action,
            with(add_tag(one_endpoint()), "comment", json!(long(2000))),
            Refused("spec.comment: Too long"),
        ),
        case(
            "oversized-filter-value",
            Action,
            add_tag(json!({"filter": {"sensor": {"name": "Computer Name"}, "value": long(2000)}})),
            Refused("spec.targets.filter.value: Too long"),
        ),
        case(
            "too-many-filters",
            Action,
            add_tag(
                json!({"filter": {"filters": vec![json!({"sensor": {"name": "Computer Name"}, "value": "a"}); 17]}}),
            ),
            Refused("spec.targets.filter.filters: Too many: 17"),
        ),
        case(
            "oversized-action-name",
            Action,
            with(add_tag(one_endpoint()), "actionName", json!(long(201))),
            Refused("spec.actionName: Too long"),
        ),
        case(
            "too-many-tags",
            Tag,
            tag(
                json!((0..17).map(|i| format!("t{i}")).collect::<Vec<_>>()),
                windows(),
            ),
            Refused("spec.tags: Too many: 17"),
        ),
        case(
            "oversized-computer-name",
            Inspection,
            inspect(json!({"computerName": long(300)})),
            Refused("spec.endpoint.computerName: Too long"),
        ),
        // Absurd schedules and numbers.
        case(
            "recurring-forever",
            Action,
            with(
                add_tag(one_endpoint()),
                "schedule",
                json!({"reissueSeconds": 3600}),
            ),
            Refused("needs an endTime"),
        ),
        case(
            "reissue-every-second",
            Action,
            with(
                add_tag(one_endpoint()),
                "schedule",
                json!({"reissueSeconds": 1, "endTime": "2030-01-01T00:00:00Z"}),
            ),
            Refused("reissueSeconds must be between"),
        ),
        case(
            "five-second-expiry",
            Action,
            with(
                add_tag(one_endpoint()),
                "schedule",
                json!({"expireSeconds": 5}),
            ),
            Refused("expireSeconds must be between"),
        ),
        case(
            "ten-year-distribution",
            Action,
            with(
                add_tag(one_endpoint()),
                "schedule",
                json!({"distributeSeconds": 315_360_000}),
            ),
            Refused("distributeSeconds must be between"),
        ),
        case(
            "start-without-offset",
            Action,
            with(
                add_tag(one_endpoint()),
                "schedule",
                json!({"startTime": "2026-01-01T10:00:00"}),
            ),
            Refused("spec.schedule.startTime"),
        ),
        case(
            "zero-max-targets",
            Action,
            with(add_tag(windows()), "safety", json!({"maxTargets": 0})),
            Refused("spec.safety.maxTargets"),
        ),
        case(
            "negative-ttl",
            Action,
            with(
                add_tag(one_endpoint()),
                "ttlSecondsAfterFinished",
                json!(-1),
            ),
            Refused("spec.ttlSecondsAfterFinished"),
        ),
        case(
            "refresh-every-second",
            Inspection,
            with(
                inspect(json!({"id": "12323"})),
                "refreshInterval",
                json!("1s"),
            ),
            Refused("refreshInterval must be at least 10s"),
        ),
        case(
            "tag-interval-in-words",
            Tag,
            with(tag(json!(["a"]), windows()), "interval", json!("5 minutes")),
            Refused("spec.interval"),
        ),
        case(
            "pid-beyond-int32",
            Inspection,
            with(
                inspect(json!({"id": "12323"})),
                "killProcess",
                json!({"pid": 4_294_967_296_i64, "name": "x"}),
            ),
            Refused("spec.killProcess.pid"),
        ),
        case(
            "unknown-signal",
            Inspection,
            with(
                inspect(json!({"id": "12323"})),
                "killProcess",
                json!({"pid": 1, "name": "x", "signal": "SIGSEGV"}),
            ),
            Refused("Unsupported value"),
        ),
        case(
            "operator-that-does-not-exist",
            Action,
            add_tag(
                json!({"filter": {"sensor": {"name": "Computer Name"}, "op": "NEQ", "value": "a"}}),
            ),
            Refused("Unsupported value"),
        ),
        case(
            "empty-package-name",
            Action,
            json!({"package": {"name": ""}, "targets": one_endpoint()}),
            Refused("spec.package.name"),
        ),
        case(
            "tag-preview-approval",
            Tag,
            with(
                tag(json!(["a"]), windows()),
                "safety",
                json!({"requirePreviewApproval": true}),
            ),
            Refused("requirePreviewApproval is not supported"),
        ),
        // GraphQL injection where the schema can tell.
        case(
            "injection-in-a-tag",
            Tag,
            tag(json!([SHORT_INJECTION]), windows()),
            Refused("a tag starts with a letter or digit"),
        ),
        // What only the operator can tell: held with a condition and an event.
        case(
            "unknown-package",
            Action,
            json!({"package": {"name": "No Such Package"}, "targets": one_endpoint()}),
            Held("UnknownPackage", "no package named \"No Such Package\""),
        ),
        case(
            "wrong-param-count",
            Action,
            json!({"package": {"name": ADD_TAGS, "params": ["a", "b"]}, "targets": one_endpoint()}),
            Held("WrongParams", "takes 1 parameter(s)"),
        ),
        case(
            "kill-without-its-md5",
            Action,
            json!({"package": {"name": KILL_PACKAGE, "params": []}, "targets": windows()}),
            Held("WrongParams", "sensor-sourced"),
        ),
        case(
            "package-outside-the-policy",
            Action,
            json!({"package": {"name": "Run Script", "params": ["rm -rf /", "sh"]}, "targets": one_endpoint()}),
            Held("PolicyDenied", "not allowed by the operator's policy"),
        ),
        case(
            "max-targets-above-the-ceiling",
            Action,
            with(add_tag(windows()), "safety", json!({"maxTargets": 100_000})),
            Held("TooManyTargets", "more than the limit of 50 "),
        ),
        case(
            "more-targets-than-allowed",
            Action,
            with(add_tag(windows()), "safety", json!({"maxTargets": 5})),
            Held("TooManyTargets", "more than the limit of 5 "),
        ),
        case(
            "tag-above-the-ceiling",
            Tag,
            tag(json!(["fleet"]), windows()),
            Held("TooManyTargets", "more than the limit of 50 "),
        ),
        case(
            "matches-nobody",
            Action,
            add_tag(
                json!({"filter": {"sensor": {"name": "Computer Name"}, "value": "no-such-host"}}),
            ),
            Held("NoTargets", "no endpoint matches"),
        ),
        case(
            "unknown-endpoint-id",
            Action,
            add_tag(json!({"endpoints": ["274177", "99999999"]})),
            Held("UnknownEndpoints", "no endpoint with id 99999999"),
        ),
        case(
            "filter-of-two-shapes",
            Action,
            add_tag(
                json!({"filter": {"sensor": {"name": "Computer Name"}, "value": "a",
                                       "filters": [{"sensor": {"name": "OS Platform"}, "value": "Linux"}]}}),
            ),
            Held("InvalidSpec", "not both"),
        ),
        // The schema spells the filter out four levels deep; a fifth is pruned, which leaves an empty filter.
        case(
            "filter-nested-too-deep",
            Action,
            add_tag(json!({"filter": nested(5)})),
            Held("InvalidSpec", "needs a sensor, memberOf, or filters"),
        ),
        case(
            "inspect-nobody",
            Inspection,
            inspect(json!({"computerName": "no-such-host"})),
            Held("EndpointNotFound", "no-such-host"),
        ),
        // GraphQL injection as data: it reaches the Gateway as a variable's value and matches nothing.
        case(
            "injection-in-a-filter-value",
            Action,
            add_tag(json!({"filter": {"sensor": {"name": "Computer Name"}, "value": INJECTION}})),
            Held("NoTargets", "no endpoint matches"),
        ),
        case(
            "injection-in-a-sensor-name",
            Action,
            add_tag(json!({"filter": {"sensor": {"name": INJECTION}, "value": "a"}})),
            Held("GatewayQueryError", ""),
        ),
        case(
            "injection-in-an-endpoint-id",
            Action,
            add_tag(json!({"endpoints": [SHORT_INJECTION]})),
            Held("UnknownEndpoints", "no endpoint with id"),
        ),
        case(
            "injection-in-a-computer-name",
            Inspection,
            with(
                inspect(json!({"computerName": INJECTION})),
                "killProcess",
                json!({"pid": 4242, "name": "sshd"}),
            ),
            Held("EndpointNotFound", "no endpoint with"),
        ),
    ];
    // Safe by default: a deployment above the approval threshold, a kill that would take an endpoint out of
    // Tanium or down, a tag whose prefix the admin bound to another namespace.
    all.extend([
        case(
            "above-the-approval-threshold",
            Action,
            add_tag(json!({"endpoints": ["274177", "1000001", "1000002", "1000003", "1000004"]})),
            Held(
                "AwaitingPreviewApproval",
                "more than the operator's approval threshold (2)",
            ),
        ),
        case(
            "kill-the-tanium-client",
            Inspection,
            with(
                inspect(json!({"id": "274177"})),
                "killProcess",
                json!({"pid": 4242, "name": "TaniumClient.exe"}),
            ),
            Held("ProtectedProcess", "the Tanium client's own"),
        ),
        case(
            "kill-a-system-process",
            Inspection,
            with(
                inspect(json!({"id": "274177"})),
                "killProcess",
                json!({"pid": 4, "name": "System"}),
            ),
            Held("ProtectedProcess", "the system's own"),
        ),
        case(
            "another-teams-tag-prefix",
            Tag,
            tag(json!(["team-a-pci"]), one_endpoint()),
            Held("PolicyDenied", "may be claimed only from"),
        ),
    ]);
    // Namespaces outside the admin policy: nothing of theirs acts on an endpoint.
    for (name, kind, spec) in [
        ("rogue-action", Action, add_tag(one_endpoint())),
        ("rogue-tag", Tag, tag(json!(["rogue"]), one_endpoint())),
        (
            "rogue-kill",
            Inspection,
            with(
                inspect(json!({"id": "12323"})),
                "killProcess",
                json!({"pid": 4242, "name": "sshd"}),
            ),
        ),
    ] {
        all.push(Case {
            name,
            kind,
            namespace: ROGUE,
            spec,
            verdict: Verdict::Held("PolicyDenied", "may not act on Tanium endpoints"),
        });
    }
    all
}

fn policy() -> Policy {
    Policy {
        allowed_namespaces: vec![
            NAMESPACE.into(),
            "team-a".into(),
            "team-b".into(),
            CHART_NAMESPACE.into(),
        ],
        // "No Such Package": an admin may allow a package before it exists in Tanium.
        allowed_packages: vec![
            ADD_TAGS.into(),
            "Custom Tagging - Remove Tags".into(),
            KILL_PACKAGE.into(),
            "No Such Package".into(),
        ],
        max_targets_ceiling: Some(50),
        // Low, so that a handful of listed endpoints passes it.
        approval_threshold: Some(2),
        tag_bindings: vec![TagBinding {
            prefix: "team-a-".into(),
            namespaces: vec!["team-a".into()],
        }],
        ..Policy::default()
    }
}

/// The environment under the hostile policy, its controllers running.
async fn started() -> Option<Env> {
    let mut env = Env::start(policy(), |_| {}).await?;
    env.start_controller();
    Some(env)
}

fn is(phase: &'static str) -> impl Fn(&TaniumAction) -> bool {
    move |o| common::phase(o).as_deref() == Some(phase)
}

fn ready(obj: &DynamicObject) -> Option<(String, String, String)> {
    let conditions = obj.data.pointer("/status/conditions")?.as_array()?;
    let c = conditions.iter().find(|c| c["type"] == "Ready")?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str()?.to_owned(),
        c["message"].as_str()?.to_owned(),
    ))
}

/// Mutations that act on endpoints (a deployment, a process ended) whose input mentions `needle` ("": all of them).
fn acted_on(env: &Env, needle: &str) -> Vec<String> {
    env.sim
        .sim()
        .audit()
        .into_iter()
        .filter(|e| {
            matches!(
                e.operation.as_str(),
                "actionPerform" | "directConnectProcessTerminate" | "killProcess"
            ) && e.input.to_string().contains(needle)
        })
        .map(|e| format!("{} {}", e.operation, e.input))
        .collect()
}

/// The apiserver refused `what` as invalid (422), saying `needle`.
fn assert_refused<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>, needle: &str) {
    match result {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{what}: {s:?}");
            assert!(
                s.message.contains(needle),
                "{what}: expected {needle:?} in: {}",
                s.message
            );
        }
        other => panic!("{what}: the apiserver accepted it: {other:?}"),
    }
}

fn assert_no_user_input_in_documents(env: &Env) {
    let documents = env.sim.sim().documents();
    assert!(!documents.is_empty());
    for doc in &documents {
        for canary in CANARIES {
            assert!(
                !doc.contains(canary),
                "a manifest's value reached a GraphQL document:\n{doc}"
            );
        }
    }
}

#[tokio::test]
async fn hostile_manifests_are_refused_or_held_and_deploy_nothing() {
    let Some(env) = started().await else {
        return;
    };
    env.namespace(NAMESPACE).await;
    env.namespace(ROGUE).await;

    let cases = cases();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    let mut held = Vec::new();
    for c in &cases {
        let api = c.kind.api(&env.client, c.namespace);
        let created = api
            .create(
                &PostParams::default(),
                &c.kind.manifest(c.name, c.spec.clone()),
            )
            .await;
        match (&c.verdict, created) {
            (Verdict::Refused(needle), created) => assert_refused(c.name, created, needle),
            (Verdict::Held(..), Ok(obj)) => held.push((c, obj)),
            (verdict, other) => panic!("{}: expected {verdict:?}, got {other:?}", c.name),
        }
    }

    for (c, obj) in &held {
        let Verdict::Held(reason, needle) = c.verdict else {
            unreachable!()
        };
        let api = c.kind.api(&env.client, c.namespace);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let (status, got, message) = loop {
            let now = api.get(c.name).await.expect("get");
            if let Some(r) = ready(&now)
                && r.1 == reason
            {
                break r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: never held with {reason}: {:#}",
                c.name,
                now.data["status"]
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(status, "False", "{}: {got}", c.name);
        assert!(
            !message.is_empty() && message.contains(needle),
            "{}: expected {needle:?} in: {message}",
            c.name
        );
        assert!(!message.contains(TOKEN));
        println!("{:<32} {reason:<18} {message}", c.name);
        env.wait_for_event(c.namespace, c.name, |r, _| r == reason)
            .await;
        let needle = common::action_name_needle(obj);
        assert_eq!(acted_on(&env, &needle), Vec::<String>::new(), "{}", c.name);
    }

    // Held objects stay held: a few more reconciles later, still nothing reached an endpoint.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let acted = acted_on(&env, "");
    assert!(acted.is_empty(), "something acted on endpoints: {acted:#?}");
    assert_no_user_input_in_documents(&env);
    println!(
        "{} hostile manifests: {} refused by the apiserver, {} held by the operator, 0 deployed",
        cases.len(),
        cases.len() - held.len(),
        held.len()
    );
}

/// What defines a deployment cannot change once created, and a status cannot hold what the operator could not read;
/// each such edit is refused by the apiserver.
#[tokio::test]
async fn edits_to_what_was_deployed_are_refused() {
    let Some(env) = started().await else {
        return;
    };
    env.namespace(NAMESPACE).await;
    let actions = Kind::Action.api(&env.client, NAMESPACE);
    let inspections = Kind::Inspection.api(&env.client, NAMESPACE);
    let mut spec = add_tag(one_endpoint());
    spec["actionName"] = json!("immutable");
    actions
        .create(
            &PostParams::default(),
            &Kind::Action.manifest("deployed", spec),
        )
        .await
        .expect("created");
    let mut kill = inspect(json!({"id": "12323"}));
    kill["killProcess"] = json!({"pid": 4242, "name": "no-such-process"});
    inspections
        .create(
            &PostParams::default(),
            &Kind::Inspection.manifest("inspected", kill),
        )
        .await
        .expect("created");

    for (api, name, patch, needle) in [
        (
            &actions,
            "deployed",
            json!({"spec": {"package": {"params": ["other"]}}}),
            "package is immutable",
        ),
        (
            &actions,
            "deployed",
            json!({"spec": {"targets": {"endpoints": ["12323"]}}}),
            "targets is immutable",
        ),
        (
            &actions,
            "deployed",
            json!({"spec": {"schedule": {"distributeSeconds": 60}}}),
            "schedule is immutable",
        ),
        (
            &actions,
            "deployed",
            json!({"spec": {"actionName": "renamed"}}),
            "actionName is immutable",
        ),
        (
            &actions,
            "deployed",
            json!({"spec": {"actionName": null}}),
            "actionName is immutable",
        ),
        (
            &inspections,
            "inspected",
            json!({"spec": {"endpoint": {"id": "274177"}}}),
            "endpoint is immutable",
        ),
        (
            &inspections,
            "inspected",
            json!({"spec": {"killProcess": {"pid": 1, "name": "init"}}}),
            "killProcess is carried out at most once",
        ),
        (
            &inspections,
            "inspected",
            json!({"spec": {"killProcess": null}}),
            "killProcess is carried out at most once",
        ),
    ] {
        let edited = api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        assert_refused(&patch.to_string(), edited, needle);
    }
    // What may change does: the safety limit and the deletion policy.
    actions
        .patch(
            "deployed",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"safety": {"maxTargets": 3}, "deletionPolicy": "Orphan"}}),
            ),
        )
        .await
        .expect("safety and deletionPolicy may change");

    // A status written by hand (by whoever may write the status subresource) with a number its type cannot hold is
    // refused (the schema's integer formats are enforced): stored, it would fail to decode in the watch and stop the
    // controller of every object of that kind.
    for (api, name, status, field) in [
        (
            &inspections,
            "inspected",
            json!({"status": {"connection": {"state": "Closed", "reconnects": 5_000_000_000_u64}}}),
            "connection.reconnects",
        ),
        (
            &actions,
            "deployed",
            json!({"status": {"results": {"targeted": 1, "completed": 5_000_000_000_u64}}}),
            "results.completed",
        ),
    ] {
        let written = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await;
        assert_refused(&status.to_string(), written, field);
    }
    env.assert_exactly_once();
}

/// Tanium tags are global. Team B claims the tag team A keeps, in a TaniumTag of its own, and deletes it again: B's
/// object is held (`TagOwnedElsewhere`, naming A's), never adds or removes the tag, and its deletion leaves A's
/// endpoints as they were. A's own deletion still removes the tag: ownership, not a blanket refusal.
#[tokio::test]
async fn another_namespace_cannot_strip_a_tag_by_claiming_and_deleting() {
    let Some(env) = started().await else {
        return;
    };
    const SHARED: &str = "shared-pci";
    let targets = json!({"endpoints": ["274177", "1000001"]});
    let carriers = || {
        ["274177", "1000001"]
            .into_iter()
            .filter(|id| {
                env.sim
                    .sim()
                    .endpoint(id)
                    .is_some_and(|e| e.tags.iter().any(|t| t == SHARED))
            })
            .count()
    };
    let phase = |o: &DynamicObject| {
        o.data
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };

    env.namespace("team-a").await;
    let a = Kind::Tag.api(&env.client, "team-a");
    let mut spec = tag(json!([SHARED]), targets.clone());
    spec["interval"] = json!("1s");
    a.create(
        &PostParams::default(),
        &Kind::Tag.manifest("keeper", spec.clone()),
    )
    .await
    .expect("created");
    env.wait_until(&a, "keeper", "InSync", |o| {
        phase(o).as_deref() == Some("InSync")
    })
    .await;
    assert_eq!(carriers(), 2);

    env.namespace("team-b").await;
    let b = Kind::Tag.api(&env.client, "team-b");
    b.create(&PostParams::default(), &Kind::Tag.manifest("grab", spec))
        .await
        .expect("created");
    let held = env
        .wait_until(&b, "grab", "held", |o| {
            ready(o).is_some_and(|r| r.1 == "TagOwnedElsewhere")
        })
        .await;
    let (_, _, message) = ready(&held).expect("Ready");
    assert!(
        message.contains("owned by TaniumTag team-a/keeper"),
        "{message}"
    );
    env.wait_for_event("team-b", "grab", |r, _| r == "TagOwnedElsewhere")
        .await;
    // A few of its intervals later: still held, nothing recorded as its own.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = b.get("grab").await.expect("get");
    assert_eq!(
        ready(&still).map(|r| r.1).as_deref(),
        Some("TagOwnedElsewhere")
    );
    assert_eq!(
        still.data.pointer("/status/appliedTags"),
        None,
        "{:#}",
        still.data["status"]
    );

    b.delete("grab", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while b.get_opt("grab").await.expect("get").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "grab was not let go"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(carriers(), 2, "team-b's deletion stripped team-a's tag");
    assert_eq!(
        acted_on(&env, "team-b"),
        Vec::<String>::new(),
        "team-b's object acted on endpoints"
    );
    assert!(acted_on(&env, "Custom Tagging - Remove Tags").is_empty());

    // The owner's own deletion does remove it.
    a.delete("keeper", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while a.get_opt("keeper").await.expect("get").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "keeper was not let go"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(carriers(), 0);
    env.assert_exactly_once();
}

/// Shards pick objects by a label, and a label is a namespace user's to set: team B's TaniumTag, labelled into a
/// shard whose controllers never see team A's object, is still held, because owners come from a watch no shard
/// label narrows.
#[tokio::test]
async fn a_shard_label_does_not_hide_a_tags_owner() {
    let Some(mut env) = started().await else {
        return;
    };
    let targets = json!({"endpoints": ["274177"]});
    env.namespace("team-a").await;
    let a = Kind::Tag.api(&env.client, "team-a");
    let mut spec = tag(json!(["shared-soc"]), targets);
    spec["interval"] = json!("1s");
    a.create(
        &PostParams::default(),
        &Kind::Tag.manifest("keeper", spec.clone()),
    )
    .await
    .expect("created");
    env.wait_until(&a, "keeper", "InSync", |o| {
        o.data.pointer("/status/phase").and_then(Value::as_str) == Some("InSync")
    })
    .await;

    // Only the blue shard's controllers run now; team A's object is not in their shard.
    let client = env.client.clone();
    env.start_controller_with(client, TOKEN, |c| {
        c.shard = tanium_operator::controller::Shard {
            namespaces: Vec::new(),
            label_selector: Some(format!("{SHARD_LABEL}=blue")),
        };
    });
    env.namespace("team-b").await;
    let b = Kind::Tag.api(&env.client, "team-b");
    let mut grab = Kind::Tag.manifest("grab", spec);
    grab.metadata.labels = Some([(SHARD_LABEL.to_string(), "blue".to_string())].into());
    b.create(&PostParams::default(), &grab)
        .await
        .expect("created");
    let held = env
        .wait_until(&b, "grab", "held", |o| {
            ready(o).is_some_and(|r| r.1 == "TagOwnedElsewhere")
        })
        .await;
    let (_, _, message) = ready(&held).expect("Ready");
    assert!(message.contains("team-a/keeper"), "{message}");
    assert_eq!(acted_on(&env, "team-b"), Vec::<String>::new());
}

/// Two teams pick the same action name: each object is its own intent, deployed once under its own Tanium name
/// (a digest of the namespace, the name and the spec is part of it); neither adopts the other's action after a
/// restart.
#[tokio::test]
async fn the_same_action_name_in_two_namespaces() {
    let Some(mut env) = started().await else {
        return;
    };
    let mut names = Vec::new();
    for ns in ["team-a", "team-b"] {
        let api = env.namespace(ns).await;
        let mut spec = add_tag(one_endpoint());
        spec["actionName"] = json!("nightly-tagging");
        env.create(
            &api,
            json!({"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
                   "metadata": {"name": "same"}, "spec": spec}),
        )
        .await;
        let done = env
            .wait_for(&api, "same", "Completed", is("Completed"))
            .await;
        assert_eq!(env.performs_for(&done), 1, "{ns}");
        names.push(
            done.status
                .expect("status")
                .deployment
                .action_name
                .expect("action name"),
        );
    }
    assert_ne!(names[0], names[1]);
    assert!(
        names.iter().all(|n| n.starts_with("nightly-tagging")),
        "{names:?}"
    );
    // A restart finds each one's own action by its own name.
    env.start_controller();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.performs().len(), 2);
    env.assert_exactly_once();
}

/// Deleting while the Gateway is down holds the object (DeletionBlocked); someone then removes the finalizer by
/// hand. The object goes, its Tanium action is left as it is (as `deletionPolicy: Orphan` would), the operator
/// neither redeploys nor wedges; the same manifest applied again is the same intent (it adopts the action), and a
/// new `runId` is a new one, deployed once.
#[tokio::test]
async fn the_finalizer_removed_by_hand_during_an_outage() {
    let Some(env) = started().await else {
        return;
    };
    let api = env.namespace(NAMESPACE).await;
    let manifest = |run_id: Option<&str>| {
        let mut spec = add_tag(json!({"endpoints": ["274177", "12323"]}));
        spec["schedule"] = json!({"distributeSeconds": 86400});
        if let Some(run) = run_id {
            spec["runId"] = json!(run);
        }
        json!({"apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumAction",
               "metadata": {"name": "forced"}, "spec": spec})
    };
    let force_delete = async || {
        env.sim.sim().set_faults(Faults {
            http_500_next: 100_000,
            ..Faults::default()
        });
        api.delete("forced", &DeleteParams::default())
            .await
            .expect("delete");
        env.wait_for(&api, "forced", "DeletionBlocked", |o| {
            common::ready_reason(o).as_deref() == Some("DeletionBlocked")
        })
        .await;
        env.kubectl(&[
            "patch",
            "taniumaction",
            "forced",
            "-n",
            NAMESPACE,
            "--type=json",
            "-p",
            r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#,
        ]);
        env.wait_gone(&api, "forced").await;
        env.sim.sim().set_faults(Faults::default());
    };
    env.create(&api, manifest(None)).await;
    let running = env.wait_for(&api, "forced", "Running", is("Running")).await;
    let first_uid = running.metadata.uid.clone().expect("uid");
    force_delete().await;

    // The same manifest again: a new uid, the same intent. It follows the action it left behind.
    env.create(&api, manifest(None)).await;
    let again = env.wait_for(&api, "forced", "Running", is("Running")).await;
    assert_ne!(again.metadata.uid.as_deref(), Some(first_uid.as_str()));
    assert_eq!(
        common::deployed_reason(&again).as_deref(),
        Some("Adopted"),
        "{:?}",
        again.status
    );
    assert_eq!(
        env.performs_for(&running),
        1,
        "the first was never redeployed"
    );
    force_delete().await;

    // A new runId is a new intent, deployed once.
    env.create(&api, manifest(Some("second"))).await;
    let second = env.wait_for(&api, "forced", "Running", is("Running")).await;
    assert_eq!(
        common::deployed_reason(&second).as_deref(),
        Some("Deployed")
    );
    assert_eq!(env.performs_for(&second), 1);
    assert_eq!(env.performs().len(), 2, "{:?}", env.performs());
    env.assert_exactly_once();
}

/// An object the operator cannot read (here: a looser CRD, as another version of the operator might install) is
/// reported on itself and left alone; every other object of its kind is reconciled as usual.
#[tokio::test]
async fn an_unreadable_object_does_not_stop_the_others() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let mut loose = tanium_operator::crd::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "TaniumAction")
        .expect("the TaniumAction CRD");
    let open = serde_json::from_value(json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        }
    }))
    .expect("schema");
    loose.spec.versions[0].schema = Some(
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceValidation {
            open_api_v3_schema: Some(open),
        },
    );
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(env.client.clone());
    crds.patch(
        "taniumactions.tanium-operator.dev",
        &PatchParams::apply("tests").force(),
        &Patch::Apply(&loose),
    )
    .await
    .expect("looser CRD applies");
    let api = env.namespace("unreadable").await;
    env.apply_yaml(
        "apiVersion: tanium-operator.dev/v1alpha1\nkind: TaniumAction\nmetadata:\n  name: garbled\n  namespace: \
         unreadable\nspec:\n  package: 7\n  targets: [not, a, target]\n",
    );
    let mut fine = common::example("tag-by-computer-name");
    fine["metadata"]["name"] = json!("fine");
    env.create(&api, fine).await;

    env.start_controller();
    env.wait_for(&api, "fine", "Completed", |o| {
        common::phase(o).as_deref() == Some("Completed")
    })
    .await;
    env.wait_for_event("unreadable", "garbled", |reason, note| {
        reason == tanium_operator::controller::invalid::REASON && note.contains("cannot read")
    })
    .await;
    let garbled: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        "unreadable",
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "tanium-operator.dev",
            "v1alpha1",
            "TaniumAction",
        )),
    );
    let left = garbled.get("garbled").await.expect("get");
    assert!(
        left.metadata.finalizers.is_none() && left.data.get("status").is_none(),
        "the unreadable object was touched: {left:?}"
    );
    assert_eq!(env.performs().len(), 1, "only the readable object deployed");
}
