//! The filter language shared by `EndpointFieldFilter`, `ComputerGroupFilter`, `FieldFilter` and
//! `SensorValueFilter`, as a pure evaluator over anything that can report values.

use std::cmp::Ordering;

use regex::Regex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("unknown sensor \"{0}\"")]
    UnknownSensor(String),
    #[error("unknown column \"{column}\" for sensor \"{sensor}\"")]
    UnknownColumn { sensor: String, column: String },
    #[error("unknown filter path \"{0}\"")]
    UnknownPath(String),
    #[error("unknown computer group \"{0}\"")]
    UnknownGroup(String),
    #[error("invalid regular expression \"{pattern}\": {message}")]
    BadRegex { pattern: String, message: String },
    #[error("filter operator {0} is not supported here")]
    UnsupportedOp(&'static str),
}

#[derive(Debug, Clone)]
pub enum Op {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
    Contains,
    StartsWith,
    EndsWith,
    Matches(Regex),
}

impl Op {
    /// Parses an operator name; MATCHES compiles `value` once so evaluation stays cheap.
    pub fn parse(name: &str, value: &str) -> Result<Self, FilterError> {
        Ok(match name {
            "EQ" => Op::Eq,
            "LT" => Op::Lt,
            "LTE" => Op::Lte,
            "GT" => Op::Gt,
            "GTE" => Op::Gte,
            "CONTAINS" => Op::Contains,
            "STARTS_WITH" => Op::StartsWith,
            "ENDS_WITH" => Op::EndsWith,
            "MATCHES" => Op::Matches(Regex::new(value).map_err(|e| FilterError::BadRegex {
                pattern: value.to_string(),
                message: e.to_string(),
            })?),
            "UPDATED_AFTER" => return Err(FilterError::UnsupportedOp("UPDATED_AFTER")),
            "READ_AFTER" => return Err(FilterError::UnsupportedOp("READ_AFTER")),
            _ => return Err(FilterError::UnsupportedOp("unknown")),
        })
    }
}

/// What a leaf compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Path(String),
    Sensor {
        name: String,
        column: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupRef {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Filter {
    /// Matches everything (an empty filter object).
    All {
        negated: bool,
    },
    Leaf {
        target: Target,
        op: Op,
        value: String,
        negated: bool,
    },
    MemberOf {
        group: GroupRef,
        negated: bool,
    },
    Node {
        filters: Vec<Filter>,
        any: bool,
        negated: bool,
    },
}

/// Something a filter can be evaluated against (an endpoint, a package, a sensor row).
pub trait Subject {
    /// All values of the target; a multi-valued sensor returns one per row.
    fn values(&self, target: &Target) -> Result<Vec<String>, FilterError>;
    fn member_of(&self, group: &GroupRef) -> Result<bool, FilterError> {
        Err(FilterError::UnknownGroup(
            group.name.clone().or(group.id.clone()).unwrap_or_default(),
        ))
    }
}

pub fn matches(filter: &Filter, subject: &impl Subject) -> Result<bool, FilterError> {
    let (hit, negated) = match filter {
        Filter::All { negated } => (true, *negated),
        Filter::Leaf {
            target,
            op,
            value,
            negated,
        } => {
            // Tanium semantics: a multi-valued reading matches when any of its rows does.
            let values = subject.values(target)?;
            (values.iter().any(|v| compare(op, v, value)), *negated)
        }
        Filter::MemberOf { group, negated } => (subject.member_of(group)?, *negated),
        Filter::Node {
            filters,
            any,
            negated,
        } => {
            let mut result = !*any;
            for f in filters {
                let m = matches(f, subject)?;
                if *any && m {
                    result = true;
                    break;
                }
                if !*any && !m {
                    result = false;
                    break;
                }
            }
            (result, *negated)
        }
    };
    Ok(hit != negated)
}

/// Compares an actual value with the filter's value. Text comparisons ignore case, as Tanium's do.
pub fn compare(op: &Op, actual: &str, expected: &str) -> bool {
    match op {
        // The ASCII check avoids two allocations in the common case; the fallback covers Unicode.
        Op::Eq => {
            actual.eq_ignore_ascii_case(expected)
                || actual.to_lowercase() == expected.to_lowercase()
        }
        Op::Contains => actual.to_lowercase().contains(&expected.to_lowercase()),
        Op::StartsWith => actual.to_lowercase().starts_with(&expected.to_lowercase()),
        Op::EndsWith => actual.to_lowercase().ends_with(&expected.to_lowercase()),
        Op::Matches(re) => re.is_match(actual),
        Op::Lt => ordering(actual, expected) == Ordering::Less,
        Op::Lte => ordering(actual, expected) != Ordering::Greater,
        Op::Gt => ordering(actual, expected) == Ordering::Greater,
        Op::Gte => ordering(actual, expected) != Ordering::Less,
    }
}

/// As numbers when both are finite numbers ("NaN" and "inf" parse as floats but are text to a person), otherwise
/// as text, ignoring case like every other comparison.
fn ordering(a: &str, b: &str) -> Ordering {
    let number = |s: &str| s.trim().parse::<f64>().ok().filter(|n| n.is_finite());
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.to_lowercase().cmp(&b.to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rec(Vec<(&'static str, Vec<&'static str>)>);

    impl Subject for Rec {
        fn values(&self, target: &Target) -> Result<Vec<String>, FilterError> {
            let key = match target {
                Target::Path(p) => p.as_str(),
                Target::Sensor { name, .. } => name.as_str(),
            };
            self.0
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.iter().map(|s| s.to_string()).collect())
                .ok_or_else(|| FilterError::UnknownPath(key.to_string()))
        }
    }

    fn leaf(path: &str, op: &str, value: &str, negated: bool) -> Filter {
        Filter::Leaf {
            target: Target::Path(path.into()),
            op: Op::parse(op, value).unwrap(),
            value: value.into(),
            negated,
        }
    }

    fn rec() -> Rec {
        Rec(vec![
            ("name", vec!["Host-01"]),
            ("tags", vec!["PCI", "Finance"]),
            ("cpu", vec!["9"]),
            ("none", vec![]),
        ])
    }

    #[test]
    fn eq_is_case_insensitive_and_any_row_matches() {
        assert!(matches(&leaf("name", "EQ", "host-01", false), &rec()).unwrap());
        assert!(matches(&leaf("tags", "EQ", "finance", false), &rec()).unwrap());
        assert!(!matches(&leaf("tags", "EQ", "dmz", false), &rec()).unwrap());
    }

    #[test]
    fn negation_applies_to_the_whole_multi_valued_reading() {
        assert!(!matches(&leaf("tags", "EQ", "PCI", true), &rec()).unwrap());
        assert!(matches(&leaf("none", "EQ", "PCI", true), &rec()).unwrap());
    }

    #[test]
    fn numeric_comparison_when_both_parse() {
        // As strings "9" > "10"; numerically it is less.
        assert!(matches(&leaf("cpu", "LT", "10", false), &rec()).unwrap());
        assert!(!matches(&leaf("cpu", "GT", "10", false), &rec()).unwrap());
        assert!(matches(&leaf("name", "GTE", "Host-00", false), &rec()).unwrap());
    }

    #[test]
    fn string_ops_and_regex() {
        assert!(matches(&leaf("name", "STARTS_WITH", "HOST", false), &rec()).unwrap());
        assert!(matches(&leaf("name", "ENDS_WITH", "-01", false), &rec()).unwrap());
        assert!(matches(&leaf("name", "CONTAINS", "st-0", false), &rec()).unwrap());
        assert!(matches(&leaf("name", "MATCHES", "^Host-\\d+$", false), &rec()).unwrap());
        assert!(!matches(&leaf("name", "MATCHES", "^host", false), &rec()).unwrap());
        assert!(matches!(
            Op::parse("MATCHES", "("),
            Err(FilterError::BadRegex { .. })
        ));
    }

    #[test]
    fn nodes_combine_with_and_or_and_negation() {
        let and = Filter::Node {
            filters: vec![
                leaf("name", "EQ", "host-01", false),
                leaf("tags", "EQ", "DMZ", false),
            ],
            any: false,
            negated: false,
        };
        assert!(!matches(&and, &rec()).unwrap());
        let or = Filter::Node {
            filters: vec![
                leaf("name", "EQ", "host-01", false),
                leaf("tags", "EQ", "DMZ", false),
            ],
            any: true,
            negated: false,
        };
        assert!(matches(&or, &rec()).unwrap());
        let nor = Filter::Node {
            filters: vec![leaf("name", "EQ", "host-01", false)],
            any: true,
            negated: true,
        };
        assert!(!matches(&nor, &rec()).unwrap());
    }

    #[test]
    fn unknown_path_is_an_error() {
        assert_eq!(
            matches(&leaf("nope", "EQ", "x", false), &rec()).unwrap_err(),
            FilterError::UnknownPath("nope".into())
        );
    }
}
