//! The targeting filter. One type serialises to both `EndpointFieldFilter` (preview through `endpoints`) and
//! `ComputerGroupFilter` (deploy through `actionPerform`), so the preview is of exactly what is deployed.

use serde::{Deserialize, Serialize};

use super::error::GatewayError;

/// Comparison operators shared by every Gateway filter input (`FieldFilterOp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterOp {
    #[default]
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
    UpdatedAfter,
    ReadAfter,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SensorParam {
    pub name: String,
    pub value: String,
}

/// A sensor (and optionally one of its columns) to compare.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SensorRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<SensorParam>,
}

/// A computer group or action group by name or id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct GroupRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A Gateway filter: either a leaf (a sensor compared with `value` under `op`, or `memberOf` a group) or a node
/// combining `filters` (AND, or OR with `any`). `negated` inverts either. The shape is the Gateway's own, so
/// filters copied from Tanium's documentation work unchanged; [`Filter::validate`] rejects mixed shapes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<SensorRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_of: Option<GroupRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<FilterOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub negated: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any: bool,
}

/// Deeper filters are almost certainly a mistake, and the Gateway's evaluation cost grows with depth.
pub const MAX_FILTER_DEPTH: usize = 8;

impl Filter {
    /// `sensor op value`.
    pub fn sensor(name: &str, op: FilterOp, value: &str) -> Self {
        Self {
            sensor: Some(SensorRef {
                name: name.into(),
                column: None,
                params: Vec::new(),
            }),
            op: Some(op),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// `sensor[column] op value`.
    pub fn sensor_column(name: &str, column: &str, op: FilterOp, value: &str) -> Self {
        let mut f = Self::sensor(name, op, value);
        if let Some(s) = f.sensor.as_mut() {
            s.column = Some(column.into());
        }
        f
    }

    pub fn all(filters: Vec<Filter>) -> Self {
        Self {
            filters,
            ..Self::default()
        }
    }

    pub fn any(filters: Vec<Filter>) -> Self {
        Self {
            filters,
            any: true,
            ..Self::default()
        }
    }

    pub fn negate(mut self) -> Self {
        self.negated = !self.negated;
        self
    }

    /// Every sensor the filter compares, in order, each once.
    pub fn sensors(&self) -> Vec<&SensorRef> {
        fn walk<'a>(f: &'a Filter, out: &mut Vec<&'a SensorRef>) {
            if let Some(s) = &f.sensor
                && !out
                    .iter()
                    .any(|o| o.name.eq_ignore_ascii_case(&s.name) && o.params == s.params)
            {
                out.push(s);
            }
            for child in &f.filters {
                walk(child, out);
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// Check the shape before it reaches the Gateway; the message names the offending node.
    pub fn validate(&self) -> Result<(), GatewayError> {
        self.validate_at("filter", 1)
    }

    fn validate_at(&self, at: &str, depth: usize) -> Result<(), GatewayError> {
        let bad = |msg: &str| Err(GatewayError::InvalidRequest(format!("{at}: {msg}")));
        if depth > MAX_FILTER_DEPTH {
            return bad(&format!("nested deeper than {MAX_FILTER_DEPTH} levels"));
        }
        let leaf_kinds = usize::from(self.sensor.is_some()) + usize::from(self.member_of.is_some());
        match (leaf_kinds, self.filters.is_empty()) {
            (0, true) => bad("needs a sensor, memberOf, or filters"),
            (1.., false) => {
                bad("is either a comparison (sensor/memberOf) or a group (filters), not both")
            }
            (2.., true) => bad("compares a sensor or tests memberOf, not both"),
            (0, false) => {
                if self.op.is_some() || self.value.is_some() {
                    return bad("a group of filters takes no op or value");
                }
                for (i, f) in self.filters.iter().enumerate() {
                    f.validate_at(&format!("{at}.filters[{i}]"), depth + 1)?;
                }
                Ok(())
            }
            (1, true) => {
                if let Some(s) = &self.sensor {
                    if s.name.trim().is_empty() {
                        return bad("sensor name is empty");
                    }
                    if self.value.is_none() {
                        return bad("a sensor comparison needs a value");
                    }
                }
                if let Some(g) = &self.member_of
                    && g.id.is_none()
                    && g.name.is_none()
                {
                    return bad("memberOf needs a group name or id");
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_in_the_gateway_shape() {
        let f = Filter::all(vec![
            Filter::sensor_column(
                "Running Processes with MD5 Hash",
                "MD5 Hash",
                FilterOp::Eq,
                "4bf0d5083604b3f8c67c6d0dd310e355",
            ),
            Filter::sensor("OS Platform", FilterOp::Eq, "Windows"),
        ]);
        // The seed's kill-process variables, field for field.
        let seed = serde_json::json!({"filters": [
            {"op": "EQ", "sensor": {"name": "Running Processes with MD5 Hash", "column": "MD5 Hash"},
             "value": "4bf0d5083604b3f8c67c6d0dd310e355"},
            {"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Windows"}
        ]});
        assert_eq!(serde_json::to_value(&f).unwrap(), seed);
        let back: Filter = serde_json::from_value(seed).unwrap();
        assert_eq!(back, f);
        f.validate().unwrap();
    }

    #[test]
    fn negation_and_any() {
        let f = Filter::any(vec![
            Filter::sensor("Custom Tags", FilterOp::Contains, "x").negate(),
        ]);
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            serde_json::json!({"any": true, "filters": [
                {"sensor": {"name": "Custom Tags"}, "op": "CONTAINS", "value": "x", "negated": true}]})
        );
    }

    #[test]
    fn rejects_mixed_and_empty_shapes() {
        assert!(Filter::default().validate().is_err());
        let mut mixed = Filter::sensor("Computer Name", FilterOp::Eq, "a");
        mixed
            .filters
            .push(Filter::sensor("OS Platform", FilterOp::Eq, "Linux"));
        let msg = mixed.validate().unwrap_err().to_string();
        assert!(msg.contains("not both"), "{msg}");
        let mut no_value = Filter::sensor("Computer Name", FilterOp::Eq, "a");
        no_value.value = None;
        assert!(no_value.validate().is_err());
        let nested_bad = Filter::all(vec![Filter::all(vec![Filter::default()])]);
        let msg = nested_bad.validate().unwrap_err().to_string();
        assert!(msg.contains("filter.filters[0].filters[0]"), "{msg}");
        let mut deep = Filter::sensor("Computer Name", FilterOp::Eq, "a");
        for _ in 0..MAX_FILTER_DEPTH {
            deep = Filter::all(vec![deep]);
        }
        assert!(deep.validate().is_err());
    }
}
