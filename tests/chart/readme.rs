//! The chart's README is what helm-docs makes of README.md.gotmpl and values.yaml (`./scripts/chart-readme`), and
//! every value in it has a description (a `# --` comment in values.yaml).

use std::path::Path;
use std::process::Command;

use tanium_testenv::TestTool;

#[test]
fn the_chart_readme_is_generated_from_the_values_and_current() {
    let Some(helm_docs) = TestTool::HELM_DOCS.locate_or_skip() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = std::time::Instant::now();
    // The regeneration command itself, printing instead of writing.
    let out = Command::new(root.join("scripts/chart-readme"))
        .arg("--dry-run")
        .env("TANIUM_HELM_DOCS", &helm_docs)
        .output()
        .expect("scripts/chart-readme runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !log.contains("level=warn") && !log.contains("level=error"),
        "helm-docs: {log}"
    );
    println!("helm-docs in {:?}", started.elapsed());
    let generated = String::from_utf8_lossy(&out.stdout);
    let path = root.join("charts/tanium-operator/README.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run ./scripts/chart-readme and commit the result",
        path.display()
    );

    // Every value's row in the table says what it is for.
    let rows: Vec<&str> = generated
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Key ") && !l.starts_with("|--"))
        .collect();
    assert!(rows.len() > 40, "the values table: {rows:?}");
    let undocumented: Vec<&str> = rows
        .iter()
        .filter(|row| {
            row.trim_end_matches('|')
                .rsplit('|')
                .next()
                .is_none_or(|d| d.trim().is_empty())
        })
        .filter_map(|row| row.split('|').nth(1).map(str::trim))
        .collect();
    assert!(
        undocumented.is_empty(),
        "values without a `# --` comment in values.yaml: {undocumented:?}"
    );
}
