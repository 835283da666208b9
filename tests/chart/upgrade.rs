//! `helm upgrade` updates the CRDs (they are templates: Helm never upgrades a chart's `crds/` folder), a release
//! of the chart from before that moves to it with the commands in README.md ("Upgrading"), and `helm uninstall`
//! leaves the CRDs. Real `helm install`/`upgrade`/`uninstall` against a real kube-apiserver.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use tanium_operator::crd::{self, CHART_CRD_DIR};
use tanium_testenv::ControlPlane;

use crate::common::{CHART, CHART_NAMESPACE as NAMESPACE, CHART_RELEASE as RELEASE, kubectl};

/// helm against one control plane, with its own config, cache and data directories.
struct Helm<'a> {
    cp: &'a ControlPlane,
    home: tempfile::TempDir,
}

impl Helm<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let helm = self
            .cp
            .binaries()
            .helm()
            .expect("pinned helm (./scripts/k8s-test-bins.sh)");
        let home = self.home.path();
        Command::new(helm)
            .args(args)
            .arg("--kubeconfig")
            .arg(self.cp.kubeconfig_path())
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .expect("helm runs")
    }

    /// `helm <args>`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "helm {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

const GATEWAY: &str = "--set=gateway.url=https://tanium.example.com";

#[tokio::test]
async fn helm_upgrade_updates_the_crds_and_uninstall_keeps_them() {
    let cp = tanium_testenv::require_control_plane!();
    let helm = Helm {
        cp: &cp,
        home: tempfile::tempdir().unwrap(),
    };
    let crds: Api<CustomResourceDefinition> = Api::all(cp.client());
    let (crd_name, field) = a_field_to_drop();
    let has_field = || async {
        let stored = crds.get(&crd_name).await.expect("the CRD is there");
        spec_properties(&serde_json::to_value(stored).unwrap()).contains(&field)
    };
    let scratch = tempfile::tempdir().unwrap();
    let chart = |layout| -> String {
        let dir = scratch.path().join(format!("{layout:?}"));
        older_chart(&dir, layout, &crd_name, &field);
        dir.display().to_string()
    };
    let (legacy, templated) = (chart(Layout::CrdsFolder), chart(Layout::Templates));
    let upgrade =
        |chart: &str| helm.run(&["upgrade", RELEASE, chart, "--namespace", NAMESPACE, GATEWAY]);

    // A release of the chart as it was (0.1.0): CRDs in crds/, installed once; this one lacks the field.
    helm.ok(&[
        "install",
        RELEASE,
        &legacy,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        GATEWAY,
    ]);
    assert!(!has_field().await, "the older CRD lacks {field}");
    // Helm refuses to take over CRDs it did not create as part of the release, until they are marked as its own.
    let refused = upgrade(CHART);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("invalid ownership metadata"),
        "{said}"
    );
    assert!(!has_field().await);
    // README.md, "Upgrading": the one-time adoption.
    let names: Vec<String> = crd::crds()
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let mut label = vec!["label", "--overwrite", "crd"];
    label.extend(names.iter().map(String::as_str));
    let mut annotate = vec!["annotate", "--overwrite", "crd"];
    annotate.extend(names.iter().map(String::as_str));
    label.push("app.kubernetes.io/managed-by=Helm");
    let release_name = format!("meta.helm.sh/release-name={RELEASE}");
    let release_namespace = format!("meta.helm.sh/release-namespace={NAMESPACE}");
    annotate.extend([release_name.as_str(), release_namespace.as_str()]);
    kubectl(&cp, &label);
    kubectl(&cp, &annotate);
    let started = std::time::Instant::now();
    let upgraded = upgrade(CHART);
    assert!(
        upgraded.status.success(),
        "{}",
        String::from_utf8_lossy(&upgraded.stderr)
    );
    assert!(
        has_field().await,
        "helm upgrade added {field} to {crd_name}"
    );
    println!(
        "legacy release adopted and upgraded in {:?}",
        started.elapsed()
    );

    // From here on the CRDs are the release's templates: an upgrade to a chart without the field removes it, and
    // the next one puts it back.
    helm.ok(&[
        "upgrade",
        RELEASE,
        &templated,
        "--namespace",
        NAMESPACE,
        GATEWAY,
    ]);
    assert!(!has_field().await, "the CRDs follow the chart");
    let started = std::time::Instant::now();
    helm.ok(&["upgrade", RELEASE, CHART, "--namespace", NAMESPACE, GATEWAY]);
    assert!(
        has_field().await,
        "helm upgrade added {field} to {crd_name}"
    );
    println!("templated CRDs upgraded in {:?}", started.elapsed());
    let stored = crds.get(&crd_name).await.unwrap();
    assert_eq!(
        stored
            .metadata
            .annotations
            .unwrap_or_default()
            .get("helm.sh/resource-policy"),
        Some(&"keep".to_string())
    );

    // crds.keep: uninstalling the release leaves the CRDs (and so every object of theirs).
    let uninstalled = helm.ok(&["uninstall", RELEASE, "--namespace", NAMESPACE]);
    assert!(
        uninstalled.contains("kept due to the resource policy"),
        "{uninstalled}"
    );
    for name in &names {
        crds.get(name)
            .await
            .unwrap_or_else(|e| panic!("{name} was kept: {e}"));
    }
}

/// The CRD and the optional field of its spec the older charts lack.
fn a_field_to_drop() -> (String, String) {
    let crd = crd::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "TaniumTag")
        .expect("the TaniumTag CRD");
    let value = serde_json::to_value(&crd).unwrap();
    let spec = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let required: Vec<&str> = spec["required"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    // One no rule of the spec's own names: a chart without the field must still be a valid CRD.
    let rules: Vec<&str> = spec["x-kubernetes-validations"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v["rule"].as_str()).collect())
        .unwrap_or_default();
    let field = spec_properties(&value)
        .into_iter()
        .find(|f| !required.contains(&f.as_str()) && !rules.iter().any(|r| r.contains(f.as_str())))
        .expect("an optional spec field");
    (crd.metadata.name.expect("a name"), field)
}

/// The properties of a CRD's (first version's) spec.
fn spec_properties(crd: &serde_json::Value) -> Vec<String> {
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy)]
enum Layout {
    /// As the chart was up to 0.1.0: plain CRDs in `crds/`.
    CrdsFolder,
    /// As it is now: templates under `templates/crds/`.
    Templates,
}

/// This chart at `dir`, with `field` missing from the spec of CRD `crd_name`, its CRDs laid out as `layout` says.
fn older_chart(dir: &Path, layout: Layout, crd_name: &str, field: &str) {
    copy_dir(Path::new(CHART), dir);
    let templates = dir.join(CHART_CRD_DIR);
    std::fs::remove_dir_all(&templates).unwrap();
    let mut out = dir.join("crds");
    if let Layout::Templates = layout {
        out = templates;
    }
    std::fs::create_dir_all(&out).unwrap();
    for mut c in crd::crds() {
        if c.metadata.name.as_deref() == Some(crd_name) {
            let mut value = serde_json::to_value(&c).unwrap();
            let dropped = value["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
                ["spec"]["properties"]
                .as_object_mut()
                .and_then(|p| p.remove(field));
            assert!(dropped.is_some());
            c = serde_json::from_value(value).unwrap();
        }
        let file = out.join(format!("{}.yaml", c.spec.names.plural));
        let text = match layout {
            Layout::CrdsFolder => serde_yaml_ng::to_string(&c).unwrap(),
            Layout::Templates => crd::chart_crd_file(&c).unwrap(),
        };
        std::fs::write(file, text).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
