//! The Gateway's custom scalars: Time, Cursor, Map.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use jiff::Timestamp;

/// RFC 3339 timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub Timestamp);

#[Scalar(name = "Time")]
impl ScalarType for Time {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => s
                .parse::<Timestamp>()
                .map(Time)
                .map_err(|e| InputValueError::custom(format!("invalid Time \"{s}\": {e}"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// An opaque pagination cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

#[Scalar(name = "Cursor")]
impl ScalarType for Cursor {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Ok(Cursor(s)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// A JSON object (alert labels).
#[derive(Debug, Clone, PartialEq)]
pub struct MapScalar(pub serde_json::Map<String, serde_json::Value>);

#[Scalar(name = "Map")]
impl ScalarType for MapScalar {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value.into_json() {
            Ok(serde_json::Value::Object(m)) => Ok(MapScalar(m)),
            _ => Err(InputValueError::custom("expected an object")),
        }
    }

    fn to_value(&self) -> Value {
        Value::from_json(serde_json::Value::Object(self.0.clone())).unwrap_or(Value::Null)
    }
}
