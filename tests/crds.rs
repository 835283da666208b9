//! The checked-in CRDs in `crds/` are what the code generates; regenerate with `cargo run -- crd --dir crds`.

#[test]
fn checked_in_crds_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let files = tanium_operator::crd::crd_files().expect("CRDs serialise");
    assert!(!files.is_empty());
    for (name, generated) in &files {
        let path = dir.join(name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == *generated,
            "{} is stale or missing: run `cargo run -- crd --dir crds` and commit the result",
            path.display()
        );
    }
    let extra: Vec<_> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !files.contains_key(n))
        .collect();
    assert!(
        extra.is_empty(),
        "crds/ holds files the code no longer generates: {extra:?}"
    );
}
