//! The chart's values: values.schema.json refuses a typo or a wrong type (`helm lint` and `helm template` fail) and
//! takes the defaults; and what the values shape (CRDs, environment, volumes, labels, priority, security contexts,
//! spreading, disruption budgets, the NetworkPolicy) renders as asked and is accepted by a real kube-apiserver.

use std::process::{Command, Output};

use serde_json::{Value, json};
use tanium_operator::controller::Policy;

use crate::common::{CHART, CHART_NAMESPACE, CHART_RELEASE, Env};
use crate::documents;

const GATEWAY: &str = "--set=gateway.url=https://tanium.example.com";

fn helm(helm: &std::path::Path, args: &[&str]) -> Output {
    Command::new(helm).args(args).output().expect("helm runs")
}

#[test]
fn the_values_schema_refuses_typos_and_wrong_types_and_takes_the_defaults() {
    let Some(bin) = tanium_testenv::helm_or_skip() else {
        return;
    };
    let kube_version = format!("--kube-version={}", tanium_testenv::K8S_VERSION);
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, yaml: &str| -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        format!("--values={}", path.display())
    };
    // The defaults (and a Gateway URL, which the templates require) pass both.
    let lint = helm(&bin, &["lint", "--strict", CHART, GATEWAY]);
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let template = helm(
        &bin,
        &["template", CHART_RELEASE, CHART, &kube_version, GATEWAY],
    );
    assert!(
        template.status.success(),
        "{}",
        String::from_utf8_lossy(&template.stderr)
    );
    // So do values in their other allowed forms.
    let other_forms = file(
        "other-forms.yaml",
        "policy: {maxTargetsCeiling: 500}\nsharding: {shards: [blue, 42]}\n\
         podDisruptionBudget: {maxUnavailable: 50%}\nmetrics: {prometheusRule: {tokenExpiryWarningDays: 1.5}}\n",
    );
    let ok = helm(
        &bin,
        &[
            "template",
            CHART_RELEASE,
            CHART,
            &kube_version,
            GATEWAY,
            &other_forms,
        ],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let refused = [
        (
            file(
                "typo.yaml",
                "gateway:\n  url2: https://tanium.example.com\n",
            ),
            "at '/gateway': additional properties 'url2' not allowed",
        ),
        (
            file("type.yaml", "replicas: two\n"),
            "at '/replicas': got string, want integer",
        ),
        (
            file("top.yaml", "replica: 3\n"),
            "additional properties 'replica' not allowed",
        ),
        (
            file(
                "deep.yaml",
                "metrics:\n  serviceMonitor:\n    enable: true\n",
            ),
            "at '/metrics/serviceMonitor': additional properties 'enable' not allowed",
        ),
        (
            file("enum.yaml", "image:\n  pullPolicy: Sometimes\n"),
            "/image/pullPolicy",
        ),
        (
            file("url.yaml", "gateway:\n  url: tanium.example.com\n"),
            "/gateway/url",
        ),
        (file("bool.yaml", "crds:\n  keep: \"no\"\n"), "/crds/keep"),
        (
            file("ceiling.yaml", "policy:\n  maxTargetsCeiling: lots\n"),
            "/policy/maxTargetsCeiling",
        ),
    ];
    // (A Gateway URL from a file of its own: --set would override the one under test.)
    let url = file(
        "url-ok.yaml",
        "gateway:\n  url: https://tanium.example.com\n",
    );
    for (values, said) in &refused {
        for args in [
            vec!["lint", "--strict", CHART, &url, values],
            vec![
                "template",
                CHART_RELEASE,
                CHART,
                &kube_version,
                &url,
                values,
            ],
        ] {
            let out = helm(&bin, &args);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                !out.status.success() && text.contains(said),
                "helm {} with {values} should fail saying {said:?}:\n{text}",
                args[0]
            );
        }
    }
}

#[tokio::test]
async fn values_shape_the_pods_and_the_apiserver_accepts_them() {
    let Some(env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    let gateway = format!("--set=gateway.url={}", env.sim.url());
    let kube_version = format!("--kube-version={}", tanium_testenv::K8S_VERSION);
    let render = |extra: &[&str]| -> Vec<Value> { documents(&env.render_chart_with(extra)) };
    let of_kind = |docs: &[Value], kind: &str| -> Vec<Value> {
        docs.iter().filter(|d| d["kind"] == kind).cloned().collect()
    };

    // The defaults: CRDs kept on uninstall; spread over nodes and zones (never unschedulable), a budget per
    // Deployment of two; the security contexts as before: non-root, read-only, nothing to escalate with.
    let defaults = render(&["--set=sharding.shards={blue}"]);
    let crds = of_kind(&defaults, "CustomResourceDefinition");
    assert_eq!(crds.len(), tanium_operator::crd::crds().len());
    for crd in &crds {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
    let deployments = of_kind(&defaults, "Deployment");
    let budgets = of_kind(&defaults, "PodDisruptionBudget");
    assert_eq!(deployments.len(), 2);
    assert_eq!(budgets.len(), 2, "one budget per Deployment");
    for (deployment, budget) in deployments.iter().zip(&budgets) {
        let pods = &deployment["spec"]["selector"]["matchLabels"];
        assert_eq!(budget["metadata"]["name"], deployment["metadata"]["name"]);
        assert_eq!(&budget["spec"]["selector"]["matchLabels"], pods);
        assert_eq!(budget["spec"]["maxUnavailable"], 1);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            pod["topologySpreadConstraints"],
            json!([
                {"labelSelector": {"matchLabels": pods}, "maxSkew": 1,
                 "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"},
                {"labelSelector": {"matchLabels": pods}, "maxSkew": 1,
                 "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
            ]),
            "each Deployment spreads its own pods"
        );
        assert_eq!(
            pod["securityContext"],
            json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                   "seccompProfile": {"type": "RuntimeDefault"}})
        );
        assert_eq!(
            pod["containers"][0]["securityContext"],
            json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                   "capabilities": {"drop": ["ALL"]}})
        );
        assert!(pod.get("priorityClassName").is_none());
    }
    assert!(of_kind(&defaults, "NetworkPolicy").is_empty());

    // Everything set, OpenShift-style IDs left out, a proxy, a NetworkPolicy.
    let custom = render(&[
        "--set=sharding.shards={blue}",
        "--set=crds.keep=false",
        "--set=extraEnv[0].name=HTTPS_PROXY",
        "--set=extraEnv[0].value=http://proxy.corp:3128",
        "--set=extraVolumes[0].name=scratch",
        "--set=extraVolumes[0].emptyDir.medium=Memory",
        "--set=extraVolumeMounts[0].name=scratch",
        "--set=extraVolumeMounts[0].mountPath=/scratch",
        "--set=podLabels.team=secops",
        "--set=priorityClassName=system-cluster-critical",
        "--set=podSecurityContext.runAsUser=null",
        "--set=podSecurityContext.runAsGroup=null",
        "--set=securityContext.readOnlyRootFilesystem=false",
        "--set=topologySpreadConstraints=null",
        "--set=podDisruptionBudget.maxUnavailable=50%",
        "--set=networkPolicy.enabled=true",
        "--set=networkPolicy.gateway.to[0].ipBlock.cidr=127.0.0.1/32",
    ]);
    for crd in of_kind(&custom, "CustomResourceDefinition") {
        assert!(
            crd["metadata"].get("annotations").is_none(),
            "crds.keep=false: {}",
            crd["metadata"]
        );
    }
    for deployment in of_kind(&custom, "Deployment") {
        let template = &deployment["spec"]["template"];
        assert_eq!(template["metadata"]["labels"]["team"], "secops");
        let pod = &template["spec"];
        assert_eq!(pod["priorityClassName"], "system-cluster-critical");
        assert_eq!(
            pod["securityContext"],
            json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}),
            "OpenShift assigns the IDs"
        );
        let container = &pod["containers"][0];
        assert_eq!(
            container["securityContext"]["readOnlyRootFilesystem"],
            false
        );
        let env = container["env"].as_array().unwrap();
        assert_eq!(
            env.last(),
            Some(&json!({"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"}))
        );
        assert_eq!(
            container["volumeMounts"].as_array().unwrap().last(),
            Some(&json!({"name": "scratch", "mountPath": "/scratch"}))
        );
        assert_eq!(
            pod["volumes"].as_array().unwrap().last(),
            Some(&json!({"name": "scratch", "emptyDir": {"medium": "Memory"}}))
        );
        assert!(pod.get("topologySpreadConstraints").is_none());
    }
    for budget in of_kind(&custom, "PodDisruptionBudget") {
        assert_eq!(budget["spec"]["maxUnavailable"], "50%");
    }
    let policies = of_kind(&custom, "NetworkPolicy");
    assert_eq!(policies.len(), 1);
    let policy = &policies[0]["spec"];
    let port: u16 = env
        .sim
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the sim's port");
    // Every operator pod, main and shard, and nothing else of the release.
    assert_eq!(
        policy["podSelector"]["matchLabels"],
        json!({"app.kubernetes.io/instance": CHART_RELEASE, "app.kubernetes.io/part-of": "tanium-operator"})
    );
    assert_eq!(
        policy["ingress"],
        json!([{"ports": [{"port": "metrics", "protocol": "TCP"}],
                "from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]}])
    );
    let egress = policy["egress"].as_array().unwrap();
    assert_eq!(
        egress.len(),
        3,
        "DNS, the apiserver, the Gateway: {egress:?}"
    );
    assert_eq!(
        egress[0]["ports"][0],
        json!({"port": 53, "protocol": "UDP"})
    );
    assert_eq!(
        egress[1]["ports"],
        json!([{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}])
    );
    assert_eq!(
        egress[2],
        json!({"ports": [{"port": port, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "127.0.0.1/32"}}]}),
        "the Gateway, on the port of its URL"
    );

    // Off switches: no CRDs, no budget on one replica or when disabled, no container securityContext at all.
    let off = render(&[
        "--set=crds.enabled=false",
        "--set=replicas=1",
        "--set=securityContext=null",
    ]);
    assert!(of_kind(&off, "CustomResourceDefinition").is_empty());
    assert!(of_kind(&off, "PodDisruptionBudget").is_empty());
    assert!(
        of_kind(&off, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
            .get("securityContext")
            .is_none()
    );
    assert!(
        of_kind(
            &render(&["--set=podDisruptionBudget.enabled=false"]),
            "PodDisruptionBudget"
        )
        .is_empty()
    );
    // A pod label the Deployments select by would break them: refused.
    let helm_bin = env.cp.binaries().helm().unwrap();
    let clash = helm(
        &helm_bin,
        &[
            "template",
            CHART_RELEASE,
            CHART,
            &kube_version,
            &gateway,
            "--set=podLabels.app\\.kubernetes\\.io/name=mine",
        ],
    );
    assert!(
        !clash.status.success()
            && String::from_utf8_lossy(&clash.stderr)
                .contains("podLabels: app.kubernetes.io/name is a label the Deployments select"),
        "{}",
        String::from_utf8_lossy(&clash.stderr)
    );

    // The apiserver takes all of it.
    env.kubectl(&["create", "namespace", CHART_NAMESPACE]);
    let yaml: String = custom
        .iter()
        .map(|d| format!("---\n{}", serde_yaml_ng::to_string(d).unwrap()))
        .collect();
    let applied = env.apply_yaml(&yaml);
    for wanted in [
        "networkpolicy.networking.k8s.io/tanium-operator serverside-applied",
        "poddisruptionbudget.policy/tanium-operator-shard-blue serverside-applied",
        "deployment.apps/tanium-operator-shard-blue serverside-applied",
    ] {
        assert!(applied.contains(wanted), "{applied}");
    }
}
