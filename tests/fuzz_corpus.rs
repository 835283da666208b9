//! The fuzz targets' checked-in seeds (`fuzz/corpus/`), replayed in every test run on stable Rust: every answer
//! the operator decodes has a real seed that decodes, error seeds are errors, and no seed panics (a crash the
//! fuzzer once found, added to the corpus, stays fixed). The fuzzing itself: `scripts/fuzz`.

use std::path::{Path, PathBuf};

use tanium_operator::fuzzing::{OPERATIONS, answer_from_bytes, filter_translation_from_bytes};

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let bytes = std::fs::read(&path).expect("a seed");
            (name(&path), bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

fn name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn gateway_answer_seeds_decode_as_their_names_say() {
    let seeds = seeds("gateway_answer");
    for (name, bytes) in &seeds {
        let (op, result) = answer_from_bytes(bytes).expect("a seed has a header");
        // Named `<operation>-ok…` or `<operation>-err…`; anything else (found by the fuzzer) must only not panic.
        let Some((named_op, kind)) = name.split_once('-') else {
            continue;
        };
        if !OPERATIONS.contains(&named_op) {
            continue;
        }
        assert_eq!(op, named_op, "{name}: its header picks another operation");
        if kind.starts_with("ok") {
            assert!(result.is_ok(), "{name}: {result:?}");
        } else if kind.starts_with("err") {
            assert!(result.is_err(), "{name}: {result:?}");
        }
    }
    for op in OPERATIONS {
        assert!(
            seeds
                .iter()
                .any(|(name, _)| name.starts_with(&format!("{op}-ok"))),
            "no seed decodes an answer to {op}"
        );
    }
}

#[test]
fn filter_translation_seeds_translate_alike() {
    for (name, bytes) in seeds("filter_translation") {
        assert_eq!(filter_translation_from_bytes(&bytes), Ok(()), "{name}");
    }
}
