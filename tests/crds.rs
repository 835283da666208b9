//! The checked-in CRDs (`crds/` and the Helm chart's `crds/`) are what the code generates; regenerate with the
//! command in `tanium_operator::crd::REGENERATE_CRDS`.

use tanium_operator::crd::{REGENERATE_CRDS, crd_files};

#[test]
fn checked_in_crds_are_current() {
    let files = crd_files().expect("CRDs serialise");
    assert!(files.len() >= 2);
    for dir in ["crds", "charts/tanium-operator/crds"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for (name, generated) in &files {
            let path = dir.join(name);
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == *generated,
                "{} is stale or missing: run `{REGENERATE_CRDS}` and commit the result",
                path.display()
            );
        }
        let extra: Vec<_> = std::fs::read_dir(&dir)
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
}
