//! The sim's GraphQL schema must be a subset of the real Gateway schema: every type, field,
//! argument, input field, enum value, interface and union member it serves exists in the
//! reference with the same type reference (name, nullability, list wrapping).

use apollo_compiler::Schema;
use apollo_compiler::ast::InputValueDefinition;
use apollo_compiler::schema::ExtendedType;

fn reference_sdl() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../src/gateway/schema.graphql");
    std::fs::read_to_string(path).expect("reference schema readable")
}

fn parse(sdl: &str, name: &str) -> Schema {
    match Schema::parse(sdl, name) {
        Ok(s) => s,
        Err(e) => panic!("{name} does not parse: {}", e.errors),
    }
}

fn check_inputs(
    at: &str,
    sim: &[&InputValueDefinition],
    reference: &[&InputValueDefinition],
    out: &mut Vec<String>,
) {
    for s in sim {
        match reference.iter().find(|r| r.name == s.name) {
            None => out.push(format!("{at}({}) is not in the reference", s.name)),
            Some(r) => {
                if s.ty != r.ty {
                    out.push(format!(
                        "{at}({}) is {} in the sim but {} in the reference",
                        s.name, s.ty, r.ty
                    ));
                }
                if let Some(rd) = &r.default_value {
                    let sd = s.default_value.as_ref().map(|d| d.to_string());
                    if sd.as_deref() != Some(rd.to_string().as_str()) {
                        out.push(format!(
                            "{at}({}) default is {sd:?} in the sim but {rd} in the reference",
                            s.name
                        ));
                    }
                }
            }
        }
    }
}

/// Every way in which `sim_sdl` is not a subset of `reference_sdl`.
fn violations(sim_sdl: &str, reference_sdl: &str) -> Vec<String> {
    let sim = parse(sim_sdl, "sim.graphql");
    let reference = parse(reference_sdl, "gateway-schema.graphql");
    let mut out = Vec::new();
    for (name, ty) in &sim.types {
        if name.starts_with("__") || ty.is_built_in() {
            continue;
        }
        let Some(rty) = reference.types.get(name) else {
            out.push(format!("type {name} is not in the reference"));
            continue;
        };
        match (ty, rty) {
            (ExtendedType::Scalar(_), ExtendedType::Scalar(_)) => {}
            (ExtendedType::Object(s), ExtendedType::Object(r)) => {
                for i in &s.implements_interfaces {
                    if !r.implements_interfaces.contains(i) {
                        out.push(format!("{name} implements {i} only in the sim"));
                    }
                }
                for (fname, f) in &s.fields {
                    let Some(rf) = r.fields.get(fname) else {
                        out.push(format!("{name}.{fname} is not in the reference"));
                        continue;
                    };
                    if f.ty != rf.ty {
                        out.push(format!(
                            "{name}.{fname} is {} in the sim but {} in the reference",
                            f.ty, rf.ty
                        ));
                    }
                    let sa: Vec<_> = f.arguments.iter().map(|a| &**a).collect();
                    let ra: Vec<_> = rf.arguments.iter().map(|a| &**a).collect();
                    check_inputs(&format!("{name}.{fname}"), &sa, &ra, &mut out);
                }
            }
            (ExtendedType::Interface(s), ExtendedType::Interface(r)) => {
                for (fname, f) in &s.fields {
                    match r.fields.get(fname) {
                        Some(rf) if rf.ty == f.ty => {}
                        _ => out.push(format!("interface field {name}.{fname} differs")),
                    }
                }
            }
            (ExtendedType::Union(s), ExtendedType::Union(r)) => {
                for m in &s.members {
                    if !r.members.contains(m) {
                        out.push(format!("union {name} member {m} is not in the reference"));
                    }
                }
            }
            (ExtendedType::Enum(s), ExtendedType::Enum(r)) => {
                for v in s.values.keys() {
                    if !r.values.contains_key(v) {
                        out.push(format!("enum value {name}.{v} is not in the reference"));
                    }
                }
            }
            (ExtendedType::InputObject(s), ExtendedType::InputObject(r)) => {
                let sf: Vec<_> = s.fields.values().map(|f| &***f).collect();
                let rf: Vec<_> = r.fields.values().map(|f| &***f).collect();
                check_inputs(&format!("input {name}"), &sf, &rf, &mut out);
            }
            _ => out.push(format!(
                "{name} is a different kind of type in the reference"
            )),
        }
    }
    out
}

#[test]
fn sim_schema_is_a_subset_of_the_gateway_schema() {
    let sdl = tanium_sim::schema_sdl();
    let v = violations(&sdl, &reference_sdl());
    assert!(
        v.is_empty(),
        "the sim's schema strays from the Gateway's:\n{}",
        v.join("\n")
    );
}

#[test]
fn sim_schema_is_valid_and_serves_the_operations_the_operator_needs() {
    let sdl = tanium_sim::schema_sdl();
    let schema = Schema::parse_and_validate(sdl, "sim.graphql").expect("valid SDL");
    let query = schema.get_object("Query").expect("Query");
    for f in [
        "now",
        "endpoints",
        "packageSpecs",
        "scheduledActions",
        "scheduledAction",
        "action",
        "actionGroups",
        "actionGroup",
        "directConnectEndpoint",
        "directConnectConnectionStatus",
        "directEndpoint",
    ] {
        assert!(query.fields.contains_key(f), "Query.{f} missing");
    }
    let mutation = schema.get_object("Mutation").expect("Mutation");
    for f in [
        "actionPerform",
        "actionStop",
        "scheduledActionApprove",
        "scheduledActionDelete",
        "directConnectOpen",
        "directConnectClose",
        "directConnectPing",
        "directConnectProcessTerminate",
        "openDirectConnection",
        "closeDirectConnection",
        "pingDirectConnection",
        "killProcess",
    ] {
        assert!(mutation.fields.contains_key(f), "Mutation.{f} missing");
    }
}

#[test]
fn checker_catches_renames_wrapping_and_invented_names() {
    let sdl = tanium_sim::schema_sdl();
    let reference = reference_sdl();

    let renamed = sdl.replacen("computerID: String!", "computerId: String!", 1);
    assert_ne!(renamed, sdl, "fixture text must be present");
    let v = violations(&renamed, &reference);
    assert!(v.iter().any(|m| m.contains("Endpoint.computerId")), "{v:?}");

    let loosened = sdl.replacen("totalRecords: Int!", "totalRecords: Int", 1);
    assert_ne!(loosened, sdl);
    assert!(!violations(&loosened, &reference).is_empty());

    let listed = sdl.replacen("values: [String!]!", "values: [String]!", 1);
    assert_ne!(listed, sdl);
    assert!(!violations(&listed, &reference).is_empty());

    let invented = format!("{sdl}\ntype SimOnly {{ x: Int }}\n");
    assert!(
        violations(&invented, &reference)
            .iter()
            .any(|m| m.contains("SimOnly"))
    );

    let enum_case = sdl.replacen("\tWindows\n", "\tWINDOWS\n", 1);
    assert_ne!(enum_case, sdl);
    assert!(
        violations(&enum_case, &reference)
            .iter()
            .any(|m| m.contains("WINDOWS"))
    );

    let bad_default = sdl.replacen("first: Int = 20", "first: Int = 10", 1);
    assert_ne!(bad_default, sdl);
    assert!(!violations(&bad_default, &reference).is_empty());
}

#[test]
fn sdl_has_no_admin_controls() {
    let sdl = tanium_sim::schema_sdl().to_lowercase();
    for word in ["faults", "audit", "advance", "clock"] {
        assert!(
            !sdl.contains(word),
            "admin word {word:?} leaked into the GraphQL schema"
        );
    }
}
