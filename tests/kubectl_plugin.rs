//! `kubectl tanium` as a process, against the local control plane with the operator running and tanium-sim:
//! `status` (tree, JSON, YAML, `-w` to the end), `approve` (refused by a "no", written on a "yes", refused when
//! there is nothing to approve), `preview` against the Gateway and with the cluster's operator config, and
//! `endpoints`.

mod common;

use std::process::Stdio;

use common::{CHART_NAMESPACE, Env, Run, TOKEN};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tanium_operator::controller::Policy;
use tanium_operator::crd::APPROVED_PREVIEW_ANNOTATION;
use tokio::io::AsyncWriteExt as _;

/// `kubectl tanium <args>` as kubectl runs a plugin: the binary on its own, with KUBECONFIG; `stdin` is typed in.
async fn plugin(env: &Env, args: &[&str], stdin: &str) -> Run {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-tanium"))
        .args(args)
        .env("KUBECONFIG", env.cp.kubeconfig_path())
        .env("TANIUM_GATEWAY_URL", env.sim.url())
        .env("TANIUM_TOKEN", TOKEN)
        .env_remove("TANIUM_TOKEN_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl-tanium starts");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.expect("typed");
    drop(input);
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        child.wait_with_output(),
    )
    .await
    .expect("kubectl-tanium ends within 2 minutes")
    .expect("kubectl-tanium runs");
    Run::from(out)
}

fn example_path(name: &str) -> String {
    format!("{}/examples/{name}.yaml", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn status_approve_preview_and_endpoints() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.start_controller();
    let api = env.namespace("plugin").await;
    env.create(&api, common::example("needs-preview-approval"))
        .await;
    let held = env
        .wait_for(
            &api,
            "needs-preview-approval",
            "AwaitingPreviewApproval",
            |o| common::phase(o).as_deref() == Some("AwaitingPreviewApproval"),
        )
        .await;
    let preview = held
        .status
        .as_ref()
        .and_then(|s| s.preview.clone())
        .unwrap();
    let name = ["-n", "plugin", "needs-preview-approval"];

    // status: the tree says what it waits for.
    let run = plugin(&env, &[&["status"][..], &name].concat(), "").await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout
            .starts_with("TaniumAction plugin/needs-preview-approval: AwaitingPreviewApproval\n"),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!(
            "preview    {} endpoint(s), digest {}",
            preview.count, preview.digest
        )),
        "{run}"
    );

    // approve: a "no" approves nothing; a "yes" writes the digest shown.
    let run = plugin(&env, &[&["approve"][..], &name].concat(), "n\n").await;
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stdout
            .contains(&format!("Preview digest: {}", preview.digest)),
        "{run}"
    );
    assert!(run.stdout.contains("Not approved."), "{run}");
    for e in &preview.sample {
        assert!(run.stdout.contains(&e.name), "the sample is shown: {run}");
    }
    let obj = api.get("needs-preview-approval").await.unwrap();
    assert!(
        !obj.metadata
            .annotations
            .unwrap_or_default()
            .contains_key(APPROVED_PREVIEW_ANNOTATION)
    );
    let run = plugin(&env, &[&["approve"][..], &name].concat(), "y\n").await;
    assert_eq!(run.code, 0, "{run}");
    let obj = api.get("needs-preview-approval").await.unwrap();
    assert_eq!(
        obj.metadata
            .annotations
            .unwrap_or_default()
            .get(APPROVED_PREVIEW_ANNOTATION),
        Some(&preview.digest)
    );

    // status -w -o json: one document per change, to the end.
    let run = plugin(
        &env,
        &[&["status", "-w", "-o", "json"][..], &name].concat(),
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    let views: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let last = views.last().expect("at least one view");
    assert_eq!(last["phase"], "Completed", "{run}");
    let done = api.get("needs-preview-approval").await.unwrap();
    let deployment = &done.status.as_ref().unwrap().deployment;
    assert_eq!(
        last["scheduledActions"][0]["id"],
        json!(deployment.scheduled_actions[0].id),
        "{run}"
    );
    assert_eq!(env.performs_for(&done), 1);

    // The tree of the finished action: its scheduled action, action instance and a full bar; the same as YAML.
    let run = plugin(&env, &[&["status"][..], &name].concat(), "").await;
    println!("{}", run.stdout);
    let sa = &deployment.scheduled_actions[0];
    assert!(
        run.stdout
            .contains(&format!("├─ scheduled action {}   Linux", sa.id)),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!(
            "│  └─ action {}",
            sa.last_action_id.as_deref().unwrap()
        )),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!("[{}]", "#".repeat(30))),
        "{run}"
    );
    let run = plugin(&env, &[&["status", "-o", "yaml"][..], &name].concat(), "").await;
    let yaml: Value = serde_yaml_ng::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"));
    assert_eq!(yaml["phase"], "Completed");
    assert_eq!(
        yaml["results"]["targeted"],
        json!(done.status.as_ref().unwrap().results.unwrap().targeted)
    );

    // Nothing left to approve.
    let run = plugin(&env, &[&["approve", "--yes"][..], &name].concat(), "").await;
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("not AwaitingPreviewApproval"), "{run}");
    let run = plugin(&env, &["status", "-n", "plugin", "no-such-action"], "").await;
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("no-such-action"), "{run}");

    // List views: the namespace, then every namespace, with the kubeconfig and context as flags instead of
    // KUBECONFIG (and no ~/.kube/config to fall back on).
    let run = plugin(&env, &["status", "-n", "plugin"], "").await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.starts_with("NAMESPACE")
            && run
                .stdout
                .lines()
                .any(|l| l.starts_with("plugin ") && l.contains("needs-preview-approval")),
        "{run}"
    );
    let kubeconfig = env.cp.kubeconfig_path();
    let context =
        serde_yaml_ng::from_str::<Value>(&std::fs::read_to_string(kubeconfig).expect("kubeconfig"))
            .expect("kubeconfig YAML")["current-context"]
            .as_str()
            .expect("a current context")
            .to_owned();
    let home = tempfile::tempdir().expect("a home");
    let flags = |context: &str| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-tanium"));
        c.args(["status", "-A", "-o", "json", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--context", context])
            .env_remove("KUBECONFIG")
            .env("HOME", home.path());
        Run::from(c.output().expect("kubectl-tanium runs"))
    };
    let run = flags(&context);
    assert_eq!(run.code, 0, "{run}");
    let listed: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"));
    assert!(
        listed.as_array().is_some_and(|l| l
            .iter()
            .any(|v| v["name"] == "needs-preview-approval" && v["namespace"] == "plugin")),
        "{run}"
    );
    let run = flags("no-such-context");
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("no-such-context"), "{run}");

    // preview against the Gateway, and with the cluster's operator config (its Deployment, its token Secret).
    let direct = plugin(
        &env,
        &["preview", "-f", &example_path("tag-by-computer-name")],
        "",
    )
    .await;
    assert!(direct.stdout.contains("Matches:"), "{direct}");
    env.apply_chart();
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), CHART_NAMESPACE);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "tanium-api-token"}, "stringData": {"token": TOKEN}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // No Gateway in the environment: the Deployment's URL and the Secret its token file is mounted from.
    let from_cluster = {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-tanium"));
        child
            .args([
                "preview",
                "--from-cluster",
                "-f",
                &example_path("tag-by-computer-name"),
            ])
            .env("KUBECONFIG", env.cp.kubeconfig_path())
            .env_remove("TANIUM_GATEWAY_URL")
            .env_remove("TANIUM_TOKEN");
        Run::from(child.output().await.unwrap())
    };
    assert_eq!(from_cluster.code, direct.code, "{from_cluster}");
    assert_eq!(from_cluster.stdout, direct.stdout, "{from_cluster}");

    // An object naming a TaniumConnection is previewed against that connection's server, as the operator would.
    let lab = tanium_sim::start(tanium_sim::SimConfig {
        fleet: tanium_sim::FleetSource::Generated { size: 40, seed: 11 },
        tokens: vec![tanium_sim::TokenUser::new(
            "token-plugin-lab-9c2e",
            "operator",
        )],
        ..tanium_sim::SimConfig::default()
    })
    .await
    .expect("the lab sim starts");
    let plugin_secrets: Api<Secret> = Api::namespaced(env.client.clone(), "plugin");
    let lab_token: Secret = serde_json::from_value(json!({
        "metadata": {"name": "lab-token"}, "stringData": {"token": "token-plugin-lab-9c2e"}
    }))
    .unwrap();
    plugin_secrets
        .create(&PostParams::default(), &lab_token)
        .await
        .unwrap();
    let conns: Api<tanium_operator::crd::TaniumConnection> =
        Api::namespaced(env.client.clone(), "plugin");
    common::create_connection(
        &conns,
        "lab",
        json!({"gatewayUrl": lab.url(), "tokenSecretRef": {"name": "lab-token"}}),
    )
    .await;
    let manifest = r#"apiVersion: tanium-operator.dev/v1alpha1
kind: TaniumAction
metadata: {name: on-lab, namespace: plugin}
spec:
  connectionRef: {kind: TaniumConnection, name: lab}
  package: {name: Custom Tagging - Add Tags, params: [lab]}
  targets:
    filter: {sensor: {name: Computer Name}, op: MATCHES, value: ".*"}
  safety: {maxTargets: 1000}
"#;
    // Every endpoint of a fleet: the lab has 40, the main server 200.
    let matches = |run: &Run| -> usize {
        run.stdout
            .lines()
            .find_map(|l| l.strip_prefix("Matches:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count: {run}"))
    };
    let asked_before = lab.sim().requests().len();
    let on_lab = plugin(&env, &["preview", "--from-cluster", "-f", "-"], manifest).await;
    assert_eq!(matches(&on_lab), 40, "{on_lab}");
    assert!(
        lab.sim().requests().len() > asked_before,
        "asked the lab's Gateway"
    );
    // Direct (the Gateway named on the command line): the main server, which has no such host.
    let direct = plugin(&env, &["preview", "-f", "-"], manifest).await;
    assert_eq!(matches(&direct), 200, "{direct}");

    // endpoints, as a table and as JSON.
    let filter =
        r#"{"sensor": {"name": "Computer Name"}, "op": "EQ", "value": "tanium-server-01"}"#;
    let run = plugin(&env, &["endpoints", "--filter", filter], "").await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("tanium-server-01"), "{run}");
    let run = plugin(&env, &["endpoints", "--filter", filter, "-o", "json"], "").await;
    let listing: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"));
    assert_eq!(listing["total"], 1, "{run}");
    env.stop_controller();
}
