//! The sim's filter evaluator (`tanium_sim::matches`, tuned: short-circuits, ASCII fast paths, one compiled
//! regex) agrees with a plain reference evaluator written from the rules alone, on generated filters and
//! subjects. The rules: text comparisons ignore case; LT/LTE/GT/GTE compare as numbers when both sides are
//! finite numbers and as case-folded text otherwise; a multi-valued reading matches when any row does;
//! `negated` inverts the whole node.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use proptest::prelude::*;
use regex::Regex;
use tanium_sim::{Filter, FilterError, Op, Subject, Target, matches};

/// Paths and their rows (zero or more values each).
#[derive(Debug, Clone)]
struct Fields(BTreeMap<&'static str, Vec<String>>);

impl Subject for Fields {
    fn values(&self, target: &Target) -> Result<Vec<String>, FilterError> {
        let Target::Path(p) = target else {
            return Err(FilterError::UnknownPath(format!("{target:?}")));
        };
        self.0
            .get(p.as_str())
            .cloned()
            .ok_or_else(|| FilterError::UnknownPath(p.clone()))
    }
}

const PATHS: &[&str] = &["name", "tags", "cpu"];

/// Values chosen to sit on the rules' edges: case, Unicode case folding, numbers that are not finite, numbers
/// with spaces, text that compares differently as numbers.
const VALUES: &[&str] = &[
    "", "1", "9", "10", "-2.5", "1e3", " 5 ", "NaN", "inf", "-inf", "Host-01", "host-01", "HOST",
    "abc", "ABC", "é", "É", "straße", "STRASSE", "\u{212A}", "k", "x y", "Z", "a",
];

const PATTERNS: &[&str] = &["^h", "(?i)^host", r"\d+", "a|b", ".*", "^$", "É"];

const OPS: &[&str] = &[
    "EQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "CONTAINS",
    "STARTS_WITH",
    "ENDS_WITH",
    "MATCHES",
];

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(VALUES).prop_map(str::to_string)
}

fn leaf() -> impl Strategy<Value = Filter> {
    (
        prop::sample::select(PATHS),
        prop::sample::select(OPS),
        value(),
        prop::sample::select(PATTERNS),
        any::<bool>(),
    )
        .prop_map(|(path, op, value, pattern, negated)| {
            let value = if op == "MATCHES" {
                pattern.to_string()
            } else {
                value
            };
            Filter::Leaf {
                target: Target::Path(path.into()),
                op: Op::parse(op, &value).expect("every operator and pattern here parses"),
                value,
                negated,
            }
        })
}

fn filter() -> impl Strategy<Value = Filter> {
    let base = prop_oneof![
        6 => leaf(),
        1 => any::<bool>().prop_map(|negated| Filter::All { negated }),
    ];
    base.prop_recursive(4, 32, 4, |inner| {
        (
            prop::collection::vec(inner, 0..4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(filters, any, negated)| Filter::Node {
                filters,
                any,
                negated,
            })
    })
}

fn subject() -> impl Strategy<Value = Fields> {
    prop::collection::vec(prop::collection::vec(value(), 0..3), PATHS.len())
        .prop_map(|rows| Fields(PATHS.iter().copied().zip(rows).collect()))
}

/// The rules, written plainly: every child evaluated, every comparison from scratch.
fn reference(filter: &Filter, s: &Fields) -> bool {
    match filter {
        Filter::All { negated } => !negated,
        Filter::Leaf {
            target: Target::Path(path),
            op,
            value,
            negated,
        } => {
            let hit = s.0[path.as_str()]
                .iter()
                .any(|actual| reference_compare(op, actual, value));
            hit != *negated
        }
        Filter::Node {
            filters,
            any,
            negated,
        } => {
            let results: Vec<bool> = filters.iter().map(|f| reference(f, s)).collect();
            let hit = if *any {
                results.contains(&true)
            } else {
                !results.contains(&false)
            };
            hit != *negated
        }
        other => panic!("not generated here: {other:?}"),
    }
}

fn reference_compare(op: &Op, actual: &str, expected: &str) -> bool {
    let (a, e) = (actual.to_lowercase(), expected.to_lowercase());
    let number = |x: &str| x.trim().parse::<f64>().ok().filter(|n| n.is_finite());
    let order = match (number(actual), number(expected)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.cmp(&e),
    };
    match op {
        Op::Eq => a == e,
        Op::Contains => a.contains(&e),
        Op::StartsWith => a.starts_with(&e),
        Op::EndsWith => a.ends_with(&e),
        Op::Matches(_) => Regex::new(expected).is_ok_and(|re| re.is_match(actual)),
        Op::Lt => order == Ordering::Less,
        Op::Lte => order != Ordering::Greater,
        Op::Gt => order == Ordering::Greater,
        Op::Gte => order != Ordering::Less,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_sim_agrees_with_the_reference(f in filter(), s in subject()) {
        let sim = matches(&f, &s);
        prop_assert_eq!(sim, Ok(reference(&f, &s)), "filter {:?} on {:?}", f, s);
    }
}

/// The edges the generator is built around, pinned, so that a change to the rules shows here by name.
#[test]
fn the_edges_by_name() {
    let one = |op: &str, actual: &str, expected: &str| {
        tanium_sim::compare(&Op::parse(op, expected).unwrap(), actual, expected)
    };
    // Numbers as numbers, but only finite ones; everything else as case-folded text.
    assert!(one("LT", "9", "10"));
    assert!(one("LT", " 5 ", "10"));
    assert!(
        !one("LT", "NaN", "10") && one("GT", "NaN", "10"),
        "NaN is text"
    );
    assert!(
        one("GT", "inf", "10"),
        "inf is text, and \"i\" sorts after \"1\""
    );
    assert!(one("LT", "abc", "ABD"), "text order ignores case");
    assert!(one("GTE", "HOST", "host") && one("LTE", "HOST", "host"));
    // Unicode case folding, beyond ASCII.
    assert!(one("EQ", "\u{212A}", "k"));
    assert!(one("EQ", "É", "é"));
}
