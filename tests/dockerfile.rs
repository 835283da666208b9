//! The image is built the way CI builds the release binary: every `RUN cargo …` of the Dockerfile's build stage
//! is a command `scripts/test` runs.

#[test]
fn dockerfile_builds_what_ci_builds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let ci = std::fs::read_to_string(root.join("scripts/test")).expect("scripts/test");
    let builds: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RUN "))
        .filter(|c| c.starts_with("cargo "))
        .collect();
    assert!(!builds.is_empty(), "the Dockerfile builds with cargo");
    for command in builds {
        assert!(
            ci.lines().any(|l| l.trim() == command),
            "scripts/test does not run `{command}`"
        );
    }
    assert!(
        dockerfile.contains("USER 65532:65532"),
        "the runtime image runs as non-root"
    );
}
