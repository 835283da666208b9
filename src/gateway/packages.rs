//! `packageSpecs`: what a package is called, and which parameters it takes.

use serde::Deserialize;
use serde_json::json;

use super::data_field;
use super::error::GatewayError;
use super::transport::{Document, GatewayClient, RawResponse, Repeat};

const PACKAGE_SPECS: &str = r#"query packageSpecs($name: String!) {
  packageSpecs(first: 2, filter: {path: "name", op: EQ, value: $name}) {
    edges {
      node {
        id
        name
        command
        expireSeconds
        commandTimeoutSeconds
        params { key label defaultValue }
        sensorSourcedParams { name }
      }
    }
  }
}"#;

pub(crate) const DOCUMENTS: [(&str, &str); 1] = [("packageSpecs", PACKAGE_SPECS)];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageSpecParam {
    /// Positional key: `$1`, `$2`, …
    pub key: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub default_value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SensorSourcedParamSpec {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageSpec {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub expire_seconds: i64,
    #[serde(default)]
    pub command_timeout_seconds: i64,
    #[serde(default, deserialize_with = "super::null_as_empty")]
    pub params: Vec<PackageSpecParam>,
    #[serde(default, deserialize_with = "super::null_as_empty")]
    pub sensor_sourced_params: Vec<SensorSourcedParamSpec>,
}

#[derive(Deserialize)]
struct Connection {
    edges: Vec<Edge>,
}

#[derive(Deserialize)]
struct Edge {
    node: PackageSpec,
}

impl PackageSpec {
    /// Check the values a deployment would pass: one per positional param, one per sensor-sourced param, by name.
    /// The message says what the package expects, so a person can fix the manifest.
    pub fn check_params(&self, params: &[String], sensor_sourced: &[&str]) -> Result<(), String> {
        if params.len() != self.params.len() {
            let keys: Vec<_> = self
                .params
                .iter()
                .map(|p| {
                    if p.label.is_empty() {
                        p.key.clone()
                    } else {
                        format!("{} ({})", p.key, p.label)
                    }
                })
                .collect();
            return Err(format!(
                "package {:?} takes {} parameter(s) [{}], the manifest gives {}",
                self.name,
                self.params.len(),
                keys.join(", "),
                params.len()
            ));
        }
        let wanted: Vec<&str> = self
            .sensor_sourced_params
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let mut given = sensor_sourced.to_vec();
        given.sort_unstable();
        let mut expected = wanted.clone();
        expected.sort_unstable();
        if given != expected {
            return Err(format!(
                "package {:?} takes sensor-sourced parameter(s) [{}], the manifest gives [{}]",
                self.name,
                wanted.join(", "),
                sensor_sourced.join(", ")
            ));
        }
        Ok(())
    }
}

/// The `packageSpecs` answer, pure, so that `crate::fuzzing` can feed it arbitrary answers.
pub(crate) fn decode_package_specs(raw: RawResponse) -> Result<Vec<PackageSpec>, GatewayError> {
    let conn: Connection = data_field("packageSpecs", raw, "packageSpecs")?;
    Ok(conn.edges.into_iter().map(|e| e.node).collect())
}

impl GatewayClient {
    /// The package called exactly `name`, if there is one.
    pub async fn package_spec(&self, name: &str) -> Result<Option<PackageSpec>, GatewayError> {
        let doc = Document::fixed("packageSpecs", PACKAGE_SPECS, Repeat::Safe);
        let found = self
            .call(&doc, &json!({ "name": name }), decode_package_specs)
            .await?;
        // The Gateway's EQ may be case-insensitive; a package is only ours when the name is exact.
        Ok(found.into_iter().find(|p| p.name == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PackageSpec {
        serde_json::from_value(json!({
            "id": "7", "name": "Kill Process", "params": [{"key": "$1", "label": "Signal"}],
            "sensorSourcedParams": [{"name": "Running Processes with MD5 Hash_MD5 Hash"}]
        }))
        .unwrap()
    }

    #[test]
    fn param_checks_name_what_is_expected() {
        let s = spec();
        s.check_params(&["9".into()], &["Running Processes with MD5 Hash_MD5 Hash"])
            .unwrap();
        let e = s
            .check_params(&[], &["Running Processes with MD5 Hash_MD5 Hash"])
            .unwrap_err();
        assert!(
            e.contains("takes 1 parameter(s) [$1 (Signal)], the manifest gives 0"),
            "{e}"
        );
        let e = s.check_params(&["9".into()], &["MD5"]).unwrap_err();
        assert!(e.contains("sensor-sourced"), "{e}");
    }

    #[test]
    fn null_lists_decode_as_empty() {
        let s: PackageSpec = serde_json::from_value(
            json!({"id": "1", "name": "x", "params": null, "sensorSourcedParams": null}),
        )
        .unwrap();
        assert!(s.params.is_empty() && s.sensor_sourced_params.is_empty());
    }
}
