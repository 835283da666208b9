//! Where the API meets the Gateway client: a manifest's types become what the client sends, and the client's
//! answers become what status records. `crd` and `gateway` know nothing of each other; this is the one place
//! that knows both, so a change to either side's types shows up here and nowhere else.
//!
//! The JSON of the two sides is the same today (a filter copied from Tanium's documentation works unchanged),
//! which `tests/filter_properties.rs` checks through these conversions.

use crate::crd::action::{PackageParam, PackageSpec, Schedule};
use crate::crd::inspection::{EndpointRef, Signal};
use crate::crd::{
    EndpointCounts, Filter, FilterOp, GroupRef, MAX_TARGET_ENDPOINTS, Platform, Targets,
};
use crate::gateway;

/// How the client speaks to a connection object's server, with `token` (read from its Secret): the operator's and
/// `kubectl tanium preview --from-cluster`'s.
pub fn gateway_config(
    server: &crate::crd::connection::Server,
    token: secrecy::SecretString,
) -> gateway::GatewayConfig {
    let mut config = gateway::GatewayConfig::new(server.gateway_url.clone(), token);
    config.ca_bundle_pem = server
        .ca_bundle
        .as_ref()
        .map(|pem| pem.clone().into_bytes());
    config.tls = if server.insecure_skip_tls_verify {
        gateway::TlsVerification::Insecure
    } else {
        gateway::TlsVerification::Verify
    };
    config.request_timeout =
        std::time::Duration::from_secs(u64::from(server.request_timeout_seconds));
    config.max_concurrent_requests = usize::from(server.concurrency);
    config
}

/// The targets as `actionPerform` and the preview take them, once the shape the schema cannot say (the
/// filter's nesting, the number of ids) is checked; the message names the field.
pub fn targets(t: &Targets) -> Result<gateway::Targets, String> {
    let target = match (&t.filter, &t.endpoints) {
        (Some(f), None) => {
            let filter = gateway::Filter::from(f);
            filter
                .validate()
                .map_err(|e| format!("spec.targets: {e}"))?;
            gateway::Target::Filter(filter)
        }
        (None, Some(ids)) if ids.is_empty() || ids.len() > MAX_TARGET_ENDPOINTS => {
            return Err(format!(
                "spec.targets.endpoints: between 1 and {MAX_TARGET_ENDPOINTS} ids, got {}",
                ids.len()
            ));
        }
        (None, Some(ids)) => gateway::Target::Endpoints(
            ids.iter()
                .map(|id| gateway::EndpointId(id.clone()))
                .collect(),
        ),
        _ => return Err("spec.targets: exactly one of filter or endpoints".into()),
    };
    Ok(gateway::Targets {
        action_group: group(&t.action_group()),
        target,
        platforms: t.platforms.iter().copied().map(platform).collect(),
    })
}

/// The package and its values (`PackageRefInput`), by name.
pub fn package(p: &PackageSpec) -> gateway::PackageRef {
    gateway::PackageRef {
        id: None,
        name: Some(p.name.clone()),
        params: p.params.clone(),
        sensor_sourced_params: p.sensor_sourced_params.iter().map(param).collect(),
    }
}

/// What Tanium's package needs that the manifest's values do not give (positional and sensor-sourced
/// parameters).
pub fn missing_params(p: &PackageSpec, package: &gateway::PackageSpec) -> Result<(), String> {
    let sensor_sourced: Vec<&str> = p
        .sensor_sourced_params
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    package.check_params(&p.params, &sensor_sourced)
}

pub fn schedule(s: &Schedule) -> gateway::Schedule {
    gateway::Schedule {
        distribute_seconds: s.distribute_seconds,
        expire_seconds: s.expire_seconds,
        reissue_seconds: s.reissue_seconds,
        start_time: s.start_time,
        end_time: s.end_time,
    }
}

/// `None` only for an object the schema would have refused (neither or both of id and computer name).
pub fn selector(e: &EndpointRef) -> Option<gateway::EndpointSelector> {
    match (&e.id, &e.computer_name) {
        (Some(id), None) => Some(gateway::EndpointSelector::Id(gateway::EndpointId(
            id.clone(),
        ))),
        (None, Some(name)) => Some(gateway::EndpointSelector::ComputerName(name.clone())),
        _ => None,
    }
}

pub fn signal(s: Signal) -> gateway::Signal {
    match s {
        Signal::Sigint => gateway::Signal::Sigint,
        Signal::Sigkill => gateway::Signal::Sigkill,
        Signal::Sigterm => gateway::Signal::Sigterm,
    }
}

pub fn platform(p: Platform) -> gateway::Platform {
    match p {
        Platform::Unknown => gateway::Platform::Unknown,
        Platform::Windows => gateway::Platform::Windows,
        Platform::Linux => gateway::Platform::Linux,
        Platform::Mac => gateway::Platform::Mac,
        Platform::Solaris => gateway::Platform::Solaris,
        Platform::Aix => gateway::Platform::Aix,
    }
}

/// The platform a scheduled action runs on, as status records it.
pub fn platform_of(p: gateway::Platform) -> Platform {
    match p {
        gateway::Platform::Unknown => Platform::Unknown,
        gateway::Platform::Windows => Platform::Windows,
        gateway::Platform::Linux => Platform::Linux,
        gateway::Platform::Mac => Platform::Mac,
        gateway::Platform::Solaris => Platform::Solaris,
        gateway::Platform::Aix => Platform::Aix,
    }
}

/// One action instance's counts, as status records them.
pub fn counts(r: &gateway::ActionResults) -> EndpointCounts {
    EndpointCounts {
        waiting: r.waiting,
        downloading: r.downloading,
        running: r.running,
        waiting_to_retry: r.waiting_to_retry,
        completed: r.completed,
        expired: r.expired,
        failed: r.failed,
        pending_verification: r.pending_verification,
        verified: r.verified,
        failed_verification: r.failed_verification,
    }
}

fn group(g: &GroupRef) -> gateway::GroupRef {
    gateway::GroupRef {
        id: g.id.clone(),
        name: g.name.clone(),
    }
}

fn param(p: &PackageParam) -> gateway::PackageParam {
    gateway::PackageParam {
        name: p.name.clone(),
        value: p.value.clone(),
    }
}

fn op(o: FilterOp) -> gateway::FilterOp {
    match o {
        FilterOp::Eq => gateway::FilterOp::Eq,
        FilterOp::Lt => gateway::FilterOp::Lt,
        FilterOp::Lte => gateway::FilterOp::Lte,
        FilterOp::Gt => gateway::FilterOp::Gt,
        FilterOp::Gte => gateway::FilterOp::Gte,
        FilterOp::Contains => gateway::FilterOp::Contains,
        FilterOp::StartsWith => gateway::FilterOp::StartsWith,
        FilterOp::EndsWith => gateway::FilterOp::EndsWith,
        FilterOp::Matches => gateway::FilterOp::Matches,
        FilterOp::UpdatedAfter => gateway::FilterOp::UpdatedAfter,
        FilterOp::ReadAfter => gateway::FilterOp::ReadAfter,
    }
}

impl From<&Filter> for gateway::Filter {
    fn from(f: &Filter) -> Self {
        Self {
            sensor: f.sensor.as_ref().map(|s| gateway::SensorRef {
                name: s.name.clone(),
                column: s.column.clone(),
                params: s
                    .params
                    .iter()
                    .map(|p| gateway::SensorParam {
                        name: p.name.clone(),
                        value: p.value.clone(),
                    })
                    .collect(),
            }),
            member_of: f.member_of.as_ref().map(group),
            op: f.op.map(op),
            value: f.value.clone(),
            negated: f.negated,
            filters: f.filters.iter().map(Self::from).collect(),
            any: f.any,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_manifest_filter_is_sent_as_written() {
        let written = json!({"filters": [
            {"sensor": {"name": "Running Processes with MD5 Hash", "column": "MD5 Hash",
                        "params": [{"name": "p", "value": "v"}]},
             "op": "STARTS_WITH", "value": "4bf0"},
            {"memberOf": {"name": "Servers"}, "negated": true}
        ], "any": true});
        let f: Filter = serde_json::from_value(written.clone()).unwrap();
        assert_eq!(json!(gateway::Filter::from(&f)), written);
    }

    #[test]
    fn targets_name_the_field_they_fail_on() {
        let t = |v| serde_json::from_value::<Targets>(v).unwrap();
        let nested = (0..10).fold(
            json!({"sensor": {"name": "s"}, "value": "v"}),
            |f, _| json!({"filters": [f]}),
        );
        let e = targets(&t(json!({"filter": nested}))).unwrap_err();
        assert!(
            e.starts_with("spec.targets:") && e.contains("deeper"),
            "{e}"
        );
        let ids: Vec<String> = (0..26).map(|i| i.to_string()).collect();
        let e = targets(&t(json!({"endpoints": ids}))).unwrap_err();
        assert!(e.contains("between 1 and 25 ids, got 26"), "{e}");
        let e = targets(&t(json!({}))).unwrap_err();
        assert!(e.contains("exactly one of filter or endpoints"), "{e}");
        let ok = targets(&t(json!({"endpoints": ["a"], "platforms": ["AIX"]}))).unwrap();
        assert_eq!(ok.platforms, vec![gateway::Platform::Aix]);
        assert_eq!(ok.action_group.name.as_deref(), Some("All Computers"));
    }

    #[test]
    fn the_schema_nests_no_deeper_than_the_client_accepts() {
        const { assert!(crate::crd::CRD_FILTER_DEPTH < gateway::filter::MAX_FILTER_DEPTH) };
        assert_eq!(MAX_TARGET_ENDPOINTS, gateway::actions::MAX_TARGET_ENDPOINTS);
    }
}
