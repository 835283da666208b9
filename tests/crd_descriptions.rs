//! `kubectl explain` has something to say about every field a person writes: each field under `spec` of each
//! generated CRD carries a description (objects, lists and leaves alike; the items of a list are described by the
//! list).

use serde_json::Value;
use tanium_operator::crd::crd_files;

/// Every field under `schema` without a description, as a dotted path.
fn undescribed(path: &str, schema: &Value, out: &mut Vec<String>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, field) in properties {
        let here = format!("{path}.{name}");
        let described = field
            .get("description")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.trim().is_empty());
        if !described {
            out.push(here.clone());
        }
        undescribed(&here, field, out);
        if let Some(items) = field.get("items") {
            undescribed(&format!("{here}[]"), items, out);
        }
    }
}

#[test]
fn every_spec_field_has_a_description() {
    let files = crd_files().expect("CRDs serialise");
    let mut missing = Vec::new();
    for (file, yaml) in &files {
        let crd: Value = serde_yaml_ng::from_str(yaml).expect("a CRD is YAML");
        let versions = crd["spec"]["versions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!versions.is_empty(), "{file}: no versions");
        for v in versions {
            let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
            assert!(spec.is_object(), "{file}: no spec schema");
            undescribed(&format!("{file}: spec"), spec, &mut missing);
        }
    }
    assert!(
        missing.is_empty(),
        "{} spec field(s) without a description (a doc comment on the Rust field):\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}

/// The walk itself finds a missing description (so the test above can fail).
#[test]
fn the_walk_finds_an_undescribed_leaf() {
    let schema = serde_json::json!({"properties": {
        "a": {"type": "string", "description": "A."},
        "b": {"type": "object", "description": "B.", "properties": {"c": {"type": "integer"}}},
        "d": {"type": "array", "description": "D.", "items": {"properties": {"e": {"type": "string"}}}}
    }});
    let mut missing = Vec::new();
    undescribed("spec", &schema, &mut missing);
    assert_eq!(missing, ["spec.b.c", "spec.d[].e"]);
}
