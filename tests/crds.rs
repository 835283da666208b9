//! The checked-in CRDs (`crds/` and the Helm chart's `templates/crds/`) are what the code generates; regenerate
//! with the command in `tanium_operator::crd::REGENERATE_CRDS`.

use std::collections::BTreeMap;
use std::path::Path;

use tanium_operator::crd::{CHART_CRD_DIR, REGENERATE_CRDS, chart_crd_files, crd_files};

#[test]
fn checked_in_crds_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plain = crd_files().expect("CRDs serialise");
    assert!(plain.len() >= 2);
    same_files(&root.join("crds"), &plain);
    let chart = chart_crd_files().expect("CRDs serialise");
    same_files(
        &root.join("charts/tanium-operator").join(CHART_CRD_DIR),
        &chart,
    );
    // A chart's crds/ folder is installed once and never upgraded: the CRDs live in templates/ only.
    assert!(
        !root.join("charts/tanium-operator/crds").exists(),
        "charts/tanium-operator/crds/ is back: Helm would install those CRDs but never upgrade them"
    );
}

/// `dir` holds exactly `files`, byte for byte.
fn same_files(dir: &Path, files: &BTreeMap<String, String>) {
    for (name, generated) in files {
        let path = dir.join(name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == *generated,
            "{} is stale or missing: run `{REGENERATE_CRDS}` and commit the result",
            path.display()
        );
    }
    let extra: Vec<_> = std::fs::read_dir(dir)
        .expect("the directory exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !files.contains_key(n))
        .collect();
    assert!(
        extra.is_empty(),
        "{} holds files the code no longer generates: {extra:?}",
        dir.display()
    );
}
