//! The Helm chart: lint clean, renders, every rendered object is accepted by a real kube-apiserver, and its RBAC
//! is exactly enough: the operator, running as the chart's ServiceAccount (impersonated), does all its work and
//! is refused what it does not need, checked request by request and as a `can-i` matrix for a cluster-wide and a
//! one-namespace install.

mod common;

#[path = "chart/admission.rs"]
mod admission;
#[path = "chart/alerts.rs"]
mod alerts;
#[path = "chart/people.rs"]
mod people;
#[path = "chart/readme.rs"]
mod readme;
#[path = "chart/upgrade.rs"]
mod upgrade;
#[path = "chart/values.rs"]
mod values;

use std::process::Command;

use common::{Env, TOKEN};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tanium_operator::controller::Policy;
use tanium_operator::crd::tag::TagPhase;
use tanium_operator::crd::{TaniumAction, TaniumTag};
use tanium_testenv::Identity;

use common::{CHART, CHART_NAMESPACE as NAMESPACE, CHART_RELEASE as RELEASE};

#[tokio::test]
async fn chart_renders_applies_and_its_rbac_is_just_enough() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let gateway = format!("--set=gateway.url={}", env.sim.url());
    let lint = env.helm(&["lint", CHART, "--strict", &gateway]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let rendered = env.render_chart();
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ] {
        assert!(
            rendered.contains(&format!("kind: {kind}\n")),
            "chart renders a {kind}"
        );
    }
    assert!(
        rendered.contains("readOnlyRootFilesystem: true")
            && rendered.contains("runAsNonRoot: true")
    );
    assert!(
        !rendered.contains("kind: ServiceMonitor"),
        "ServiceMonitor only when enabled"
    );
    let kube_version = format!("--kube-version={}", tanium_testenv::K8S_VERSION);
    let with_monitor = env.helm(&[
        "template",
        RELEASE,
        CHART,
        &kube_version,
        &gateway,
        "--set=metrics.serviceMonitor.enabled=true",
    ]);
    assert!(with_monitor.contains("kind: ServiceMonitor"));
    // Watching one namespace grants nothing cluster-wide: a Role there instead of a ClusterRole.
    let scoped = env.helm(&[
        "template",
        RELEASE,
        CHART,
        &kube_version,
        &gateway,
        "--set=watchNamespace=team",
    ]);
    // (The ClusterRoles for people grant nothing until an admin binds them.)
    assert!(
        !scoped.contains("kind: ClusterRoleBinding")
            && !scoped.contains("kind: ClusterRole\nmetadata:\n  name: tanium-operator\n"),
        "{scoped}"
    );
    assert!(
        scoped.contains("kind: Role\nmetadata:\n  name: tanium-operator\n  namespace: team"),
        "{scoped}"
    );
    // Without a Gateway URL the chart refuses to render.
    let helm_bin = env.cp.binaries().helm().unwrap();
    let refused = Command::new(&helm_bin)
        .args(["template", RELEASE, CHART, &kube_version])
        .output()
        .unwrap();
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("gateway.url is required")
    );

    // TLS verification off: said in the pod's environment and the install notes; never beside a CA bundle.
    let insecure = env.helm(&[
        "template",
        RELEASE,
        CHART,
        &kube_version,
        &gateway,
        "--set=gateway.insecureSkipTLSVerify=true",
    ]);
    assert!(
        insecure.contains("- name: TANIUM_INSECURE_SKIP_TLS_VERIFY\n              value: \"true\""),
        "{insecure}"
    );
    assert!(!rendered.contains("TANIUM_INSECURE_SKIP_TLS_VERIFY"));
    let contradiction = Command::new(&helm_bin)
        .args([
            "template",
            RELEASE,
            CHART,
            &kube_version,
            &gateway,
            "--set=gateway.insecureSkipTLSVerify=true",
            "--set=gateway.caBundle.configMapName=ca",
        ])
        .output()
        .unwrap();
    assert!(
        !contradiction.status.success()
            && String::from_utf8_lossy(&contradiction.stderr).contains("contradict")
    );

    // Several replicas without leader election would all reconcile: refused too.
    let no_election = Command::new(&helm_bin)
        .args([
            "template",
            RELEASE,
            CHART,
            &kube_version,
            &gateway,
            "--set=leaderElection.enabled=false",
        ])
        .output()
        .unwrap();
    assert!(
        !no_election.status.success()
            && String::from_utf8_lossy(&no_election.stderr).contains("needs leaderElection")
    );

    // Every rendered object is accepted by the apiserver.
    let applied = env.apply_chart();
    println!("{applied}");
    assert!(
        applied.contains("deployment.apps/tanium-operator serverside-applied"),
        "{applied}"
    );

    // The operator, as the chart's ServiceAccount, does its work: a TaniumAction, a TaniumTag and a
    // TaniumEndpointInspection, end to end.
    let sa = Identity::service_account(NAMESPACE, "tanium-operator");
    let as_operator = env.cp.client_for(&sa).await.unwrap();
    env.start_controller_as(as_operator.clone(), TOKEN);
    env.namespace("team").await;
    let actions: Api<TaniumAction> = Api::namespaced(env.client.clone(), "team");
    env.create(&actions, common::example("tag-by-endpoint-id"))
        .await;
    let tags: Api<TaniumTag> = Api::namespaced(env.client.clone(), "team");
    let tag: TaniumTag = serde_json::from_value(json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumTag", "metadata": {"name": "pinned"},
        "spec": {"tags": ["pinned"], "targets": {"endpoints": ["274177"]}, "interval": "2s"}
    }))
    .unwrap();
    tags.create(&PostParams::default(), &tag).await.unwrap();
    let inspections: Api<tanium_operator::crd::TaniumEndpointInspection> =
        Api::namespaced(env.client.clone(), "team");
    let inspection: tanium_operator::crd::TaniumEndpointInspection =
        serde_json::from_value(common::example("inspect-tanium-server")).unwrap();
    inspections
        .create(&PostParams::default(), &inspection)
        .await
        .unwrap();
    env.wait_for(&actions, "tag-by-endpoint-id", "Completed", |o| {
        common::phase(o).as_deref() == Some("Completed")
    })
    .await;
    env.wait_until(&tags, "pinned", "in sync", |t| {
        t.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(TagPhase::InSync))
    })
    .await;
    env.wait_until(&inspections, "inspect-tanium-server", "inspected", |i| {
        i.status
            .as_ref()
            .is_some_and(|s| tanium_operator::crd::ready_reason_is(&s.conditions, "Inspected"))
    })
    .await;
    // Published as the ServiceAccount.
    env.wait_for_event("team", "tag-by-endpoint-id", |r, _| r == "Deployed")
        .await;

    // … and is refused what it does not need.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(as_operator.clone(), NAMESPACE);
    assert!(
        forbidden(secrets.list(&ListParams::default()).await),
        "no Secrets"
    );
    let create: Api<TaniumAction> = Api::namespaced(as_operator.clone(), "team");
    let obj: TaniumAction =
        serde_json::from_value(common::example("tag-by-computer-name")).unwrap();
    assert!(
        forbidden(create.create(&PostParams::default(), &obj).await),
        "it never creates TaniumActions"
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(as_operator.clone(), "team");
    assert!(
        forbidden(pods.list(&ListParams::default()).await),
        "no Pods"
    );
    env.assert_exactly_once();

    // The whole matrix, asked as the ServiceAccount (impersonated), as `kubectl auth can-i --as` asks.
    let wrong = wrong_answers(&as_operator, cluster_wide_checks()).await;
    assert!(
        wrong.is_empty(),
        "RBAC differs from what the operator needs:\n{}",
        wrong.join("\n")
    );

    // Installed for one namespace (and with token rotation), its ServiceAccount reaches nothing outside it, and of
    // Secrets only the token's, by name.
    env.kubectl(&["create", "namespace", "scoped-system"]);
    env.kubectl(&["create", "namespace", "lab"]);
    let scoped_with = |extra: &[&str]| {
        let mut args = vec![
            "template",
            "scoped",
            CHART,
            "--namespace",
            "scoped-system",
            &kube_version,
            &gateway,
            "--set=watchNamespace=team",
            "--set=gateway.tokenRotation.enabled=true",
            "--set=connections.secretNamespaces={lab}",
        ];
        args.extend_from_slice(extra);
        env.helm(&args)
    };
    let scoped = scoped_with(&[]);
    assert!(scoped.contains("name: TANIUM_TOKEN_ROTATION"), "{scoped}");
    assert!(
        !scoped.contains("name: TANIUM_CONNECTION_TOKEN_ROTATION"),
        "connection tokens are rotated only when an admin says so"
    );
    env.apply_yaml(&scoped);
    let sa = Identity::service_account("scoped-system", "scoped-tanium-operator");
    let as_scoped = env.cp.client_for(&sa).await.unwrap();
    let checks = [
        Check::allow("list", "tanium-operator.dev", "taniumactions", Some("team")),
        Check::allow(
            "patch",
            "tanium-operator.dev",
            "taniumactions/status",
            Some("team"),
        ),
        Check::allow(
            "patch",
            "coordination.k8s.io",
            "leases",
            Some("scoped-system"),
        ),
        Check::deny(
            "list",
            "tanium-operator.dev",
            "taniumactions",
            Some("other"),
        ),
        Check::deny("list", "tanium-operator.dev", "taniumactions", None),
        Check::deny(
            "patch",
            "tanium-operator.dev",
            "taniumtags",
            Some("default"),
        ),
        Check::deny("create", "events.k8s.io", "events", Some("other")),
        Check::deny("get", "", "secrets", Some("team")),
        Check::allow("get", "", "secrets", Some("scoped-system")).named("tanium-api-token"),
        Check::allow("patch", "", "secrets", Some("scoped-system")).named("tanium-api-token"),
        Check::deny("get", "", "secrets", Some("scoped-system")).named("another-secret"),
        Check::deny("list", "", "secrets", Some("scoped-system")),
        Check::deny("watch", "", "secrets", Some("scoped-system")),
        Check::deny("delete", "", "secrets", Some("scoped-system")).named("tanium-api-token"),
        // Connection tokens: `get` in the namespaces the admin listed, nothing more; no cluster-wide connections.
        Check::allow("get", "", "secrets", Some("lab")).named("lab-token"),
        Check::deny("list", "", "secrets", Some("lab")),
        Check::deny("watch", "", "secrets", Some("lab")),
        Check::deny("patch", "", "secrets", Some("lab")).named("lab-token"),
        Check::allow(
            "watch",
            "tanium-operator.dev",
            "taniumconnections",
            Some("team"),
        ),
        Check::deny(
            "list",
            "tanium-operator.dev",
            "clustertaniumconnections",
            None,
        ),
    ];
    let wrong = wrong_answers(&as_scoped, checks).await;
    assert!(
        wrong.is_empty(),
        "watchNamespace=team RBAC:\n{}",
        wrong.join("\n")
    );

    // Letting the operator rotate connection tokens adds `patch` there, and nothing else.
    let rotating = scoped_with(&["--set=connections.tokenRotation=true"]);
    assert!(rotating.contains("name: TANIUM_CONNECTION_TOKEN_ROTATION"));
    env.apply_yaml(&rotating);
    let checks = [
        Check::allow("get", "", "secrets", Some("lab")).named("lab-token"),
        Check::allow("patch", "", "secrets", Some("lab")).named("lab-token"),
        Check::deny("list", "", "secrets", Some("lab")),
        Check::deny("delete", "", "secrets", Some("lab")).named("lab-token"),
        Check::deny("patch", "", "secrets", Some("team")).named("lab-token"),
    ];
    let wrong = wrong_answers(&as_scoped, checks).await;
    assert!(
        wrong.is_empty(),
        "connections.tokenRotation RBAC:\n{}",
        wrong.join("\n")
    );
}

/// One `can-i` question and the answer the operator's needs call for.
struct Check {
    verb: &'static str,
    group: &'static str,
    /// `resource` or `resource/subresource`.
    resource: &'static str,
    namespace: Option<&'static str>,
    name: Option<&'static str>,
    allowed: bool,
}

impl Check {
    fn allow(
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        namespace: Option<&'static str>,
    ) -> Self {
        Self {
            verb,
            group,
            resource,
            namespace,
            name: None,
            allowed: true,
        }
    }

    fn deny(
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        namespace: Option<&'static str>,
    ) -> Self {
        Self {
            allowed: false,
            ..Self::allow(verb, group, resource, namespace)
        }
    }

    fn named(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}{}{}{} in {}: should be {}",
            if self.allowed { "may" } else { "may not" },
            self.verb,
            self.resource,
            if self.group.is_empty() { "" } else { "." },
            self.group,
            self.name.map(|n| format!(" {n}")).unwrap_or_default(),
            self.namespace.unwrap_or("all namespaces"),
            if self.allowed { "allowed" } else { "refused" },
        )
    }
}

/// What the operator needs cluster-wide, and what it must not be able to do: read Secrets (its token is a mounted
/// file, so not even its own), act on Pods or ConfigMaps, create or rewrite the kinds people own, escalate.
fn cluster_wide_checks() -> Vec<Check> {
    const TD: &str = "tanium-operator.dev";
    let ns = Some(NAMESPACE);
    let team = Some("team");
    vec![
        Check::allow("watch", TD, "taniumactions", None),
        Check::allow("list", TD, "taniumendpointinspections", None),
        Check::allow("patch", TD, "taniumtags", team),
        Check::allow("patch", TD, "taniumactions/status", team),
        Check::allow("patch", TD, "taniumendpointinspections/status", team),
        Check::allow("delete", TD, "taniumactions", team),
        Check::allow("create", "events.k8s.io", "events", team),
        Check::allow("get", "coordination.k8s.io", "leases", ns).named("tanium-operator"),
        // Connection objects: read and reported on, never created or changed.
        Check::allow("watch", TD, "taniumconnections", None),
        Check::allow("patch", TD, "taniumconnections/status", team),
        Check::allow("list", TD, "clustertaniumconnections", None),
        Check::allow("patch", TD, "clustertaniumconnections/status", None),
        Check::deny("create", TD, "taniumconnections", team),
        Check::deny("patch", TD, "taniumconnections", team),
        Check::deny("update", TD, "clustertaniumconnections", None),
        Check::allow("patch", "coordination.k8s.io", "leases", ns).named("tanium-operator"),
        // Secrets: none, anywhere, not even the token's own.
        Check::deny("get", "", "secrets", ns).named("tanium-api-token"),
        Check::deny("list", "", "secrets", ns),
        Check::deny("watch", "", "secrets", None),
        Check::deny("get", "", "secrets", team),
        Check::deny("create", "", "secrets", ns),
        Check::deny("update", "", "secrets", ns).named("tanium-api-token"),
        Check::deny("create", "", "serviceaccounts/token", ns).named("tanium-operator"),
        // Workloads and configuration of other teams.
        Check::deny("list", "", "pods", team),
        Check::deny("create", "", "pods/exec", team),
        Check::deny("get", "", "configmaps", team),
        Check::deny("list", "", "configmaps", ns),
        Check::deny("create", "apps", "deployments", team),
        Check::deny("list", "", "namespaces", None),
        // The kinds people own: created, replaced and deleted by them (TaniumActions past their TTL excepted).
        Check::deny("create", TD, "taniumactions", team),
        Check::deny("update", TD, "taniumactions", team),
        Check::deny("update", TD, "taniumactions/status", team),
        Check::deny("create", TD, "taniumtags", team),
        Check::deny("delete", TD, "taniumtags", team),
        Check::deny("delete", TD, "taniumendpointinspections", team),
        Check::deny("deletecollection", TD, "taniumactions", team),
        Check::deny(
            "update",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        ),
        Check::deny(
            "delete",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        ),
        // Leases: its own namespace only, never deleted; events only through events.k8s.io, never read.
        Check::deny("get", "coordination.k8s.io", "leases", team),
        Check::deny("delete", "coordination.k8s.io", "leases", ns).named("tanium-operator"),
        Check::deny("list", "events.k8s.io", "events", team),
        Check::deny("create", "", "events", team),
        // No way to grant itself more.
        Check::deny("create", "rbac.authorization.k8s.io", "rolebindings", team),
        Check::deny(
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            None,
        ),
        Check::deny(
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
        ),
        Check::deny("bind", "rbac.authorization.k8s.io", "clusterroles", None),
        Check::deny("impersonate", "", "serviceaccounts", ns),
    ]
}

/// The checks the apiserver answers otherwise than expected, as sentences.
async fn wrong_answers(
    client: &kube::Client,
    checks: impl IntoIterator<Item = Check>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for check in checks {
        if can(client, &check).await != check.allowed {
            wrong.push(check.to_string());
        }
    }
    wrong
}

/// Asked by the identity itself (SelfSubjectAccessReview): the apiserver's authorizer answers.
async fn can(client: &kube::Client, check: &Check) -> bool {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let (resource, subresource) = match check.resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (check.resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(check.verb.into()),
                group: Some(check.group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: check.namespace.map(Into::into),
                name: check.name.map(Into::into),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("{check}: {e}"));
    answer.status.is_some_and(|s| s.allowed)
}

/// The objects of a multi-document render.
fn documents(rendered: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(rendered)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect()
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(ref s)) if s.code == 403)
}

/// The dashboard and the alerts ship in the chart, lint clean, apply (the dashboard's ConfigMap), parse as PromQL,
/// and name only metrics and labels the operator exports: a renamed metric or label fails here, not on a
/// dashboard at 3 a.m.
#[tokio::test]
async fn dashboard_and_alerts_use_only_what_the_operator_exports() {
    let Some(env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let gateway = format!("--set=gateway.url={}", env.sim.url());
    let kube_version = format!("--kube-version={}", tanium_testenv::K8S_VERSION);
    let on = [
        "--set=metrics.dashboard.enabled=true",
        "--set=metrics.prometheusRule.enabled=true",
        "--set=metrics.serviceMonitor.enabled=true",
        // Shards add an alert expression per shard.
        "--set=sharding.shards={blue}",
    ];
    let lint = env.helm(&[&["lint", CHART, "--strict", &gateway][..], &on].concat());
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let rendered = env.helm(
        &[
            &[
                "template",
                RELEASE,
                CHART,
                "--namespace",
                NAMESPACE,
                &kube_version,
                &gateway,
            ][..],
            &on,
        ]
        .concat(),
    );
    let docs = documents(&rendered);
    let of_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("the chart renders a {kind}"))
            .clone()
    };
    let dashboard_cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["data"]["tanium-operator.json"].is_string())
        .expect("the chart renders the dashboard's ConfigMap")
        .clone();
    assert_eq!(dashboard_cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: serde_json::Value = serde_json::from_str(
        dashboard_cm["data"]["tanium-operator.json"]
            .as_str()
            .unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs: Vec<(String, String)> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push((
                format!("panel {:?}", panel["title"]),
                // Grafana's variables, as Grafana fills them.
                target["expr"].as_str().unwrap().replace("$job", ".*"),
            ));
        }
    }
    let rule = of_kind("PrometheusRule");
    let mut alerts = Vec::new();
    for r in rule["spec"]["groups"][0]["rules"].as_array().unwrap() {
        alerts.push(r["alert"].as_str().unwrap().to_owned());
        exprs.push((
            format!("alert {}", r["alert"]),
            r["expr"].as_str().unwrap().to_owned(),
        ));
    }
    for wanted in [
        "TaniumGatewayUnreachable",
        "TaniumGatewayTokenRejected",
        "TaniumGatewayTokenExpiring",
        "TaniumActionsStuck",
        "TaniumReconcileErrors",
        "TaniumOperatorNoLeader",
    ] {
        assert!(alerts.iter().any(|a| a == wanted), "{wanted} in {alerts:?}");
    }

    // What the operator exports: every recorder used once, then the exposition read back.
    let metrics = tanium_operator::telemetry::Metrics::default();
    metrics.reconciled("TaniumAction", "ok", std::time::Duration::from_millis(1));
    metrics.gateway_request(
        "own",
        "actionPerform",
        "ok",
        std::time::Duration::from_millis(1),
    );
    metrics.phase("TaniumAction", "uid", Some("Running"));
    metrics.token_expiry("own", jiff::Timestamp::now());
    metrics.gateway_features(
        "own",
        &tanium_operator::gateway::features::Features {
            direct_connect: true,
            direct_connect_legacy: true,
            actions_query: false,
            closed_status: true,
        }
        .named(),
    );
    metrics.leader.set(1);
    let mut exported: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    let sample = regex::Regex::new(r#"^(tanium_operator_[a-z_]+)(\{([^}]*)\})? "#).unwrap();
    let label = regex::Regex::new(r#"([a-z_]+)=""#).unwrap();
    for line in metrics.encode().lines() {
        if let Some(c) = sample.captures(line) {
            let labels = exported.entry(c[1].to_owned()).or_default();
            if let Some(l) = c.get(3) {
                labels.extend(label.captures_iter(l.as_str()).map(|m| m[1].to_owned()));
            }
        }
    }
    // Labels Prometheus adds to every series: the scrape's, and the pod's shard label the ServiceMonitor copies.
    let monitor = of_kind("ServiceMonitor");
    assert_eq!(
        monitor["spec"]["podTargetLabels"],
        serde_json::json!(["tanium-operator.dev/shard"])
    );
    let target_labels = ["job", "le", "instance", "tanium_operator_dev_shard"];
    let used = regex::Regex::new(r#"(tanium_operator_[a-z_]+)(\{([^}]*)\})?"#).unwrap();
    let grouped = regex::Regex::new(r"by \(([a-z_, ]+)\)").unwrap();
    for (what, expr) in &exprs {
        promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("{what}: {e}\n{expr}"));
        let mut labels_here: std::collections::BTreeSet<String> =
            target_labels.map(String::from).into();
        for c in used.captures_iter(expr) {
            let name = &c[1];
            if target_labels.contains(&name) {
                continue;
            }
            let known = exported.get(name).unwrap_or_else(|| {
                panic!(
                    "{what}: {name} is not exported; exported: {:?}",
                    exported.keys()
                )
            });
            labels_here.extend(known.iter().cloned());
            if let Some(m) = c.get(3) {
                for l in
                    label.captures_iter(&m.as_str().replace("=~\"", "=\"").replace("!=\"", "=\""))
                {
                    assert!(
                        target_labels.contains(&&l[1]) || known.contains(&l[1]),
                        "{what}: {name} has no label {}",
                        &l[1]
                    );
                }
            }
        }
        for c in grouped.captures_iter(expr) {
            for l in c[1].split(',').map(str::trim) {
                assert!(
                    labels_here.contains(l),
                    "{what}: grouped by {l}, which no metric in it has"
                );
            }
        }
    }
    println!("{} expressions checked", exprs.len());
    let no_leader = &exprs
        .iter()
        .find(|(what, _)| what.contains("TaniumOperatorNoLeader"))
        .expect("the no-leader alert")
        .1;
    assert!(
        no_leader.contains(r#"tanium_operator_dev_shard="blue""#)
            && no_leader.contains(r#"tanium_operator_dev_shard="""#),
        "one leader per Lease: {no_leader}"
    );
    // The dashboard's ConfigMap is a valid object (and small enough) for the apiserver.
    env.kubectl(&["create", "namespace", NAMESPACE]);
    let cm_yaml = serde_yaml_ng::to_string(&dashboard_cm).unwrap();
    env.apply_yaml(&cm_yaml);
}

#[tokio::test]
async fn shards_render_as_deployments_of_their_own_that_the_apiserver_accepts() {
    let Some(env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let gateway = format!("--set=gateway.url={}", env.sim.url());
    let kube_version = format!("--kube-version={}", tanium_testenv::K8S_VERSION);
    let template = |extra: &str| -> Vec<String> {
        [
            "template",
            RELEASE,
            CHART,
            "--namespace",
            NAMESPACE,
            &kube_version,
            &gateway,
            "--set=gateway.tokenRotation.enabled=true",
            extra,
        ]
        .map(String::from)
        .to_vec()
    };
    let helm = |args: Vec<String>| env.helm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // A name YAML would read as a number still makes a string label.
    let rendered = helm(template("--set=sharding.shards={blue,green,42}"));
    let docs = documents(&rendered);
    let deployments: Vec<&serde_json::Value> =
        docs.iter().filter(|d| d["kind"] == "Deployment").collect();
    let env_of = |d: &serde_json::Value, name: &str| -> Option<String> {
        d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str().map(String::from))
    };
    // (name, selector, lease, rotates its own token, writes connection objects): one process of each.
    type Layout = (String, Option<String>, Option<String>, bool, bool);
    let layout: Vec<Layout> = deployments
        .iter()
        .map(|d| {
            (
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                env_of(d, "TANIUM_SHARD_SELECTOR"),
                env_of(d, "LEASE_NAME"),
                env_of(d, "TANIUM_TOKEN_ROTATION").is_some(),
                env_of(d, "TANIUM_CONNECTIONS_READ_ONLY").is_none(),
            )
        })
        .collect();
    let owned = |s: &str| Some(s.to_owned());
    assert_eq!(
        layout,
        vec![
            (
                "tanium-operator".into(),
                owned("tanium-operator.dev/shard notin (blue,green,42)"),
                owned("tanium-operator"),
                true,
                true
            ),
            (
                "tanium-operator-shard-blue".into(),
                owned("tanium-operator.dev/shard=blue"),
                owned("tanium-operator-shard-blue"),
                false,
                false
            ),
            (
                "tanium-operator-shard-green".into(),
                owned("tanium-operator.dev/shard=green"),
                owned("tanium-operator-shard-green"),
                false,
                false
            ),
            (
                "tanium-operator-shard-42".into(),
                owned("tanium-operator.dev/shard=42"),
                owned("tanium-operator-shard-42"),
                false,
                false
            ),
        ],
        "each shard its own selector and Lease; only the main Deployment rotates the token"
    );
    // No Deployment's selector matches another's pods; the metrics Service selects them all.
    let matches = |selector: &serde_json::Value, labels: &serde_json::Value| {
        selector
            .as_object()
            .is_some_and(|s| s.iter().all(|(k, v)| &labels[k] == v))
    };
    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .expect("the metrics Service");
    for a in &deployments {
        let pods = &a["spec"]["template"]["metadata"]["labels"];
        assert!(matches(&service["spec"]["selector"], pods), "{pods}");
        for b in &deployments {
            let overlap = matches(&b["spec"]["selector"]["matchLabels"], pods);
            assert_eq!(
                overlap,
                a["metadata"]["name"] == b["metadata"]["name"],
                "{} selects the pods of {}",
                b["metadata"]["name"],
                a["metadata"]["name"]
            );
        }
    }
    // Without shards nothing changes: one Deployment, no selector.
    let plain = helm(template("--set=sharding.shards=null"));
    assert_eq!(plain.matches("kind: Deployment\n").count(), 1);
    assert!(!plain.contains("TANIUM_SHARD_SELECTOR"));
    // A name that cannot be a label value, or one listed twice, is refused.
    let helm_bin = env.cp.binaries().helm().unwrap();
    for (shards, said) in [
        ("--set=sharding.shards={Blue}", "is not a shard name"),
        ("--set=sharding.shards={blue,blue}", "is listed twice"),
        (
            "--set=watchNamespace=a\\,b",
            "watchNamespace is one namespace",
        ),
    ] {
        let refused = Command::new(&helm_bin)
            .args(template(shards))
            .output()
            .unwrap();
        assert!(
            !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains(said),
            "{shards}: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
    env.kubectl(&["create", "namespace", NAMESPACE]);
    let applied = env.apply_yaml(&rendered);
    assert!(
        applied.contains("deployment.apps/tanium-operator-shard-42 serverside-applied"),
        "{applied}"
    );
}
