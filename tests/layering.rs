//! The layering ARCHITECTURE.md describes, checked where `cargo build` cannot: modules point down only, and a
//! reconciler reaches the Gateway only through its object's connection. Reads the sources; needs no control plane.

use std::path::Path;

/// Every `.rs` file under `src/<dir>` (or the file `src/<dir>.rs`), with its text.
fn sources(dir: &str) -> Vec<(String, String)> {
    fn walk(path: &Path, out: &mut Vec<(String, String)>) {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for entry in entries.filter_map(Result::ok) {
                walk(&entry.path(), out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text =
                std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.display().to_string(), text));
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for path in [src.join(dir), src.join(format!("{dir}.rs"))] {
        if path.exists() {
            walk(&path, &mut out);
        }
    }
    assert!(!out.is_empty(), "nothing in src/{dir}");
    out
}

/// The lines (a method chain rustfmt broke over several lines read as one) whose code holds one of `needles`.
fn offending(files: &[(String, String)], needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        let mut statements: Vec<(usize, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default().trim();
            match statements.last_mut() {
                Some((_, chain)) if code.starts_with('.') => chain.push_str(code),
                _ => statements.push((i + 1, code.to_owned())),
            }
        }
        found.extend(
            statements
                .into_iter()
                .filter(|(_, code)| needles.iter().any(|n| code.contains(n)))
                .map(|(line, code)| format!("{path}:{line}: {code}")),
        );
    }
    found
}

#[test]
fn the_api_types_and_the_gateway_client_import_nothing_above_them() {
    let above = [
        "crate::controller",
        "crate::runtime",
        "crate::cli",
        "crate::plugin",
        "crate::telemetry",
    ];
    for dir in ["crd", "gateway"] {
        let found = offending(&sources(dir), &above);
        assert!(
            found.is_empty(),
            "src/{dir} imports from above it:\n{}",
            found.join("\n")
        );
    }
    let found = offending(
        &sources("telemetry"),
        &[
            "crate::controller",
            "crate::runtime",
            "crate::crd",
            "crate::gateway",
        ],
    );
    assert!(
        found.is_empty(),
        "telemetry imports ours:\n{}",
        found.join("\n")
    );
}

/// A reconcile speaks to the Tanium server its object uses (`Object::conn`), never to the operator's own
/// connection behind its back: with several connections, that would send an object's requests to the wrong
/// server with the wrong token.
#[test]
fn reconcilers_reach_the_gateway_only_through_their_objects_connection() {
    let mut files = Vec::new();
    for kind in [
        "controller/action",
        "controller/tag",
        "controller/inspection",
    ] {
        files.extend(sources(kind));
    }
    let found = offending(&files, &["ctx.connections"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The check reads a chain rustfmt broke over lines, and not a comment.
#[test]
fn the_check_sees_through_rustfmt_and_past_comments() {
    let text = "let a = self\n    .ctx\n    .connections\n    .own();\n// ctx.connections in a comment\nlet b = 1;\n";
    let found = offending(&[("f.rs".into(), text.into())], &["ctx.connections"]);
    assert_eq!(found, ["f.rs:1: let a = self.ctx.connections.own();"]);
}
