//! The OpenAPI schema of [`Filter`]. Structural schemas cannot recurse, so the filter is spelled out to a fixed
//! depth; deeper nesting is refused by the apiserver, and `Filter::validate` checks the shape the schema cannot.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Value, json};

use super::Filter;

/// Levels of `filters` a manifest may nest.
pub const CRD_FILTER_DEPTH: usize = 4;
/// Entries in one `filters` list; also keeps the apiserver's CEL cost estimate low.
const MAX_FILTERS: usize = 16;

const OPS: [&str; 11] = [
    "EQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "CONTAINS",
    "STARTS_WITH",
    "ENDS_WITH",
    "MATCHES",
    "UPDATED_AFTER",
    "READ_AFTER",
];

fn level(depth: usize) -> Value {
    let mut properties = json!({
        "sensor": {
            "type": "object",
            "description": "The sensor to compare, e.g. {name: Computer Name} or {name: Running Processes with MD5 Hash, column: MD5 Hash}.",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 256,
                         "description": "The sensor's name, as Tanium lists it (e.g. Computer Name, OS Platform, Custom Tags)."},
                "column": {"type": "string", "maxLength": 256,
                           "description": "For a sensor with several columns, the one to compare (e.g. MD5 Hash)."},
                "params": {
                    "type": "array", "maxItems": 16,
                    "description": "Values for a parameterised sensor's parameters.",
                    "items": {"type": "object", "required": ["name", "value"], "properties": {
                        "name": {"type": "string", "maxLength": 256, "description": "The parameter's name."},
                        "value": {"type": "string", "maxLength": 1024, "description": "The parameter's value."}
                    }}
                }
            }
        },
        "memberOf": {
            "type": "object",
            "description": "Membership of a Tanium computer group, by name or id.",
            "properties": {
                "id": {"type": "string", "maxLength": 64, "description": "The group's Tanium id."},
                "name": {"type": "string", "maxLength": 256, "description": "The group's name, as the Tanium console shows it."}
            }
        },
        "op": {"type": "string", "enum": OPS, "description": "Comparison (default EQ); there is no NEQ: use negated."},
        "value": {"type": "string", "maxLength": 1024,
                  "description": "What the sensor's reading is compared with (a string, also for numbers and times; a regular expression with MATCHES)."},
        "negated": {"type": "boolean", "description": "Invert this comparison or group (there is no NEQ: use negated with EQ)."},
        "any": {"type": "boolean", "description": "Combine filters with OR instead of AND."}
    });
    if depth > 0 {
        properties["filters"] = json!({
            "type": "array",
            "maxItems": MAX_FILTERS,
            "description": "A group: these filters, all of them (AND) or, with any, one of them (OR).",
            "items": level(depth - 1)
        });
    }
    json!({
        "type": "object",
        "description": "A Tanium Gateway filter: a comparison (sensor or memberOf, with op and value) or a group (filters, combined with any), optionally negated.",
        "properties": properties
    })
}

impl JsonSchema for Filter {
    fn schema_name() -> Cow<'static, str> {
        "Filter".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        match level(CRD_FILTER_DEPTH) {
            Value::Object(map) => Schema::from(map),
            _ => Schema::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(v: &Value) -> usize {
        v.pointer("/properties/filters/items")
            .map_or(0, |inner| 1 + depth(inner))
    }

    #[test]
    fn spelled_out_to_the_fixed_depth() {
        let schema = level(CRD_FILTER_DEPTH);
        assert_eq!(depth(&schema), CRD_FILTER_DEPTH);
        assert_eq!(
            schema
                .pointer("/properties/op/enum")
                .and_then(Value::as_array)
                .map(Vec::len),
            Some(11)
        );
    }
}
