//! A filter is previewed and deployed as the same thing, for any filter a manifest can hold.
//!
//! 1. Serialisation: the preview's `endpoints` filter variable and the deploy's `targetGroup.filter` carry the
//!    filter's JSON unchanged, and it reads back as the same filter (`fuzzing::filter_translation`,
//!    which the `filter_translation` fuzz target also calls).
//! 2. Meaning: read the way the Gateway (here the sim) reads them, as `EndpointFieldFilter` for the preview and
//!    `ComputerGroupFilter` plus `platforms` for the deploy, the two select exactly the same endpoints of a fleet,
//!    and fail alike when the filter cannot be evaluated (an unknown sensor, a bad regex).

use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::json;
use tanium_operator::controller::{preview, wire};
use tanium_operator::crd::targets::{Filter, FilterOp, GroupRef, Platform, SensorRef, Targets};
use tanium_operator::fuzzing::filter_translation;
use tanium_operator::gateway::actions::{PackageRef, PerformRequest, Schedule};
use tanium_sim::{EndpointSpec, FilterInput, matches, parse_filter};

const SENSORS: &[(&str, Option<&str>)] = &[
    ("Computer Name", None),
    ("OS Platform", None),
    ("Custom Tags", None),
    ("IP Address", None),
    ("Running Processes with MD5 Hash", Some("MD5 Hash")),
    ("Running Processes with MD5 Hash", Some("Name")),
    ("No Such Sensor", None),
];

/// Real values of the fleet beside hostile and odd ones: injection attempts, quotes, Unicode, an invalid regex.
const VALUES: &[&str] = &[
    "Windows",
    "linux",
    "tanium-server-01",
    "PCI",
    "Finance",
    "10.",
    "sshd",
    "4bf0d5083604b3f8c67c6d0dd310e355",
    "win",
    "",
    "\"}) { __schema { types { name } } } #",
    "' OR 1=1 --",
    "ünïcødé",
    "(",
    ".*",
    "^tanium-.*-0[1-3]$",
];

const GROUPS: &[&str] = &["All Computers", "All Windows", "All Linux", "No Such Group"];

fn op() -> impl Strategy<Value = FilterOp> {
    prop::sample::select(vec![
        FilterOp::Eq,
        FilterOp::Lt,
        FilterOp::Lte,
        FilterOp::Gt,
        FilterOp::Gte,
        FilterOp::Contains,
        FilterOp::StartsWith,
        FilterOp::EndsWith,
        FilterOp::Matches,
        FilterOp::UpdatedAfter,
    ])
}

fn leaf() -> impl Strategy<Value = Filter> {
    let sensor = (
        prop::sample::select(SENSORS),
        op(),
        prop::sample::select(VALUES),
        any::<bool>(),
    )
        .prop_map(|((name, column), op, value, negated)| Filter {
            sensor: Some(SensorRef {
                name: name.into(),
                column: column.map(Into::into),
                params: Vec::new(),
            }),
            op: Some(op),
            value: Some(value.into()),
            negated,
            ..Filter::default()
        });
    let member_of = (prop::sample::select(GROUPS), any::<bool>(), any::<bool>()).prop_map(
        |(group, by_name, negated)| Filter {
            member_of: Some(if by_name {
                GroupRef {
                    id: None,
                    name: Some(group.into()),
                }
            } else {
                GroupRef {
                    id: Some(group.len().to_string()),
                    name: None,
                }
            }),
            negated,
            ..Filter::default()
        },
    );
    prop_oneof![5 => sensor, 1 => member_of]
}

fn filter() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        (
            prop::collection::vec(inner, 1..4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(filters, any, negated)| Filter {
                filters,
                any,
                negated,
                ..Filter::default()
            })
    })
}

fn platforms() -> impl Strategy<Value = Vec<Platform>> {
    prop::sample::subsequence(
        vec![Platform::Windows, Platform::Linux, Platform::Mac],
        0..=2,
    )
}

/// The seeded fixtures (with processes, tags, both platforms) and generated endpoints.
static FLEET: LazyLock<Vec<EndpointSpec>> = LazyLock::new(|| tanium_sim::generate_fleet(40, 7));

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn preview_and_deploy_send_the_same_filter(f in filter(), p in platforms()) {
        let targets = Targets { action_group: None, filter: Some(f.clone()), endpoints: None, platforms: p.clone() };
        prop_assert!(wire::targets(&targets).is_ok(), "the generator makes valid filters: {f:?}");
        prop_assert_eq!(filter_translation(&f, &p), Ok(()));
    }

    #[test]
    fn preview_and_deploy_select_the_same_endpoints(f in filter(), p in platforms()) {
        let targets = Targets { action_group: None, filter: Some(f.clone()), endpoints: None, platforms: p.clone() };
        let targets = wire::targets(&targets).expect("a filter target");
        let previewed = preview::query(&targets).wire_filter().expect("a filter is sent");
        let deployed = PerformRequest {
            name: "n".into(),
            comment: String::new(),
            package: PackageRef { id: None, name: Some("p".into()), params: vec![], sensor_sourced_params: vec![] },
            targets,
            schedule: Schedule::default(),
        }
        .to_input();
        let preview_filter = parse_filter(FilterInput::EndpointField, previewed);
        let deploy_filter = parse_filter(FilterInput::ComputerGroup, deployed["targets"]["targetGroup"]["filter"].clone());
        let (preview_filter, deploy_filter) = match (preview_filter, deploy_filter) {
            (Ok(a), Ok(b)) => (a, b),
            // Refused alike (an operator the sim does not evaluate): nothing is previewed or deployed.
            (Err(_), Err(_)) => return Ok(()),
            (a, b) => return Err(TestCaseError::fail(format!("read differently: preview {a:?}, deploy {b:?}"))),
        };
        let sent_platforms = deployed["targets"].get("platforms").cloned().unwrap_or(json!([]));
        for ep in FLEET.iter() {
            let in_platforms = p.is_empty() || p.iter().any(|&p| wire::platform(p).as_str() == ep.platform.as_str());
            let by_preview = matches(&preview_filter, ep);
            let by_deploy = matches(&deploy_filter, ep).map(|hit| hit && in_platforms);
            prop_assert_eq!(
                &by_preview, &by_deploy,
                "endpoint {} ({}): filter {} platforms {}", ep.id, ep.platform.as_str(),
                serde_json::to_string(&f).unwrap_or_default(), sent_platforms
            );
        }
    }
}

/// The generator reaches both outcomes on the fleet, so the agreement above is not between two empty sets.
#[test]
fn the_fleet_tells_filters_apart() {
    let hit = |f: &tanium_operator::gateway::Filter| {
        let parsed = parse_filter(FilterInput::ComputerGroup, json!(f)).expect("parses");
        FLEET
            .iter()
            .filter(|ep| matches(&parsed, *ep) == Ok(true))
            .count()
    };
    let windows = hit(&tanium_operator::gateway::Filter::sensor(
        "OS Platform",
        tanium_operator::gateway::FilterOp::Eq,
        "Windows",
    ));
    assert!(
        windows > 0 && windows < FLEET.len(),
        "{windows} of {}",
        FLEET.len()
    );
    let sshd = hit(&tanium_operator::gateway::Filter::sensor_column(
        "Running Processes with MD5 Hash",
        "Name",
        tanium_operator::gateway::FilterOp::Eq,
        "sshd",
    ));
    assert!(sshd > 0 && sshd < FLEET.len(), "{sshd} of {}", FLEET.len());
}
