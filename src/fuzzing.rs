//! Entry points for the fuzz targets in `fuzz/` (and the corpus test that replays their seeds in every test run).
//!
//! Everything the Gateway sends reaches the operator through [`transport::read_answer`] and one decoder
//! per operation; [`answer`] runs both on one answer. Whatever the bytes, the result is a value or an error,
//! never a panic. [`filter_translation`] checks that a filter, however odd, reaches the preview and the deploy
//! identically.

use serde_json::json;

use crate::crd::{Filter, Platform};
use crate::gateway::actions::{PackageRef, PerformRequest, Schedule};
use crate::gateway::error::GatewayError;
use crate::gateway::{ActionId, EndpointId};
use crate::gateway::{
    actions, direct_connect, endpoints, introspect, packages, poll, tokens, transport,
};

/// Every operation whose answer the operator decodes, by the name its document carries.
pub const OPERATIONS: &[&str] = &[
    "endpoints",
    "packageSpecs",
    "actionPerform",
    "now",
    "action",
    "pollActions",
    "scheduledAction",
    "scheduledActionsByName",
    "actionStop",
    "scheduledActionDelete",
    "scheduledActionApprove",
    "directConnectOpen",
    "openDirectConnection",
    "directConnectConnectionStatus",
    "directConnectPing",
    "directConnectEndpoint",
    "directConnectProcessTerminate",
    "apiTokenRotate",
    "gatewayFeatures",
];

/// Decode `body` (sent with `status` and `content_type`) as the answer to `operation` (one of
/// [`OPERATIONS`]); `Ok` carries the decoded value's debug form.
pub fn answer(
    operation: &str,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> Result<String, GatewayError> {
    let Some(op) = OPERATIONS.iter().copied().find(|o| *o == operation) else {
        return Err(GatewayError::InvalidRequest(format!(
            "no operation {operation:?}"
        )));
    };
    let raw = transport::read_answer(op, status, content_type, body, true)?;
    let shown = match op {
        "endpoints" => format!("{:?}", endpoints::decode_page(raw)?),
        "packageSpecs" => format!("{:?}", packages::decode_package_specs(raw)?),
        "actionPerform" => format!("{:?}", actions::decode_perform(raw)?),
        "now" => format!("{:?}", actions::decode_now(raw)?),
        "action" => format!("{:?}", actions::decode_action(raw)?),
        "pollActions" => {
            let polled = [
                poll::Polled::Action(ActionId("0".into())),
                poll::Polled::Schedule(crate::gateway::ScheduledActionId("1".into())),
                poll::Polled::Action(ActionId("2".into())),
            ];
            format!("{:?}", poll::decode_batch(raw, &polled)?)
        }
        "scheduledAction" => format!("{:?}", actions::decode_scheduled_action(raw)?),
        "scheduledActionsByName" => {
            format!("{:?}", actions::decode_scheduled_actions_page(raw)?)
        }
        "actionStop" => format!("{:?}", actions::decode_stop(raw)?),
        "scheduledActionDelete" => format!("{:?}", actions::decode_delete(raw)?),
        "scheduledActionApprove" => format!("{:?}", actions::decode_approve(raw)?),
        "directConnectOpen" => match direct_connect::decode_open(raw)? {
            direct_connect::Opened::Current(open) => format!("{:?}", open.connection_id),
            direct_connect::Opened::Absent => "absent".into(),
        },
        "openDirectConnection" => {
            format!(
                "{:?}",
                direct_connect::decode_legacy_open(raw)?.connection_id
            )
        }
        "directConnectConnectionStatus" => direct_connect::decode_status(raw)?,
        "directConnectEndpoint" => format!(
            "{:?}",
            direct_connect::decode_read(op, op, &EndpointId::from("1"), raw)?
        ),
        "apiTokenRotate" => format!("{:?}", tokens::decode_rotate(raw)?),
        "gatewayFeatures" => format!("{:?}", introspect::decode_features(raw)?),
        // The ping, close and kill answers share one shape.
        _ => format!("{:?}", direct_connect::decode_result(op, op, raw)?),
    };
    Ok(shown)
}

/// The fuzz input's layout: the first byte picks the HTTP status and content type, the second the operation,
/// the rest is the body. The checked-in seeds start `"0"` (200, JSON) and a letter (see [`OPERATIONS`]).
pub fn answer_from_bytes(data: &[u8]) -> Option<(&'static str, Result<String, GatewayError>)> {
    let [how, which, body @ ..] = data else {
        return None;
    };
    let (status, content_type) = match how % 8 {
        0..=3 => (200, "application/json"),
        4 => (200, "text/html"),
        5 => (500, "text/plain"),
        6 => (401, "application/json"),
        _ => (302, "text/html"),
    };
    let op = OPERATIONS[usize::from(*which) % OPERATIONS.len()];
    Some((op, answer(op, status, content_type, body)))
}

/// A filter from a manifest reaches the preview (`endpoints`' `EndpointFieldFilter`) and the deploy
/// (`actionPerform`'s `ComputerGroupFilter`) as the same JSON, and reads back as the filter it was. `Err` says
/// how they differ; a filter the operator would refuse is `Ok` (nothing is sent).
pub fn filter_translation(filter: &Filter, platforms: &[Platform]) -> Result<(), String> {
    let targets = crate::crd::Targets {
        action_group: None,
        filter: Some(filter.clone()),
        endpoints: None,
        platforms: platforms.to_vec(),
    };
    let Ok(targets) = crate::controller::wire::targets(&targets) else {
        return Ok(());
    };
    let written = serde_json::to_value(filter).map_err(|e| e.to_string())?;
    let back: Filter = serde_json::from_value(written.clone()).map_err(|e| e.to_string())?;
    if &back != filter {
        return Err(format!("{written} reads back as {back:?}, not {filter:?}"));
    }
    let previewed = crate::controller::preview::query(&targets)
        .wire_filter()
        .ok_or("the preview sends no filter")?;
    let previewed_filter = if platforms.is_empty() {
        previewed.clone()
    } else {
        previewed["filters"][0].clone()
    };
    let deployed = PerformRequest {
        name: "fuzz".into(),
        comment: String::new(),
        package: PackageRef {
            id: None,
            name: Some("p".into()),
            params: Vec::new(),
            sensor_sourced_params: Vec::new(),
        },
        targets,
        schedule: Schedule::default(),
    }
    .to_input();
    let deployed_filter = &deployed["targets"]["targetGroup"]["filter"];
    if previewed_filter != written || deployed_filter != &written {
        return Err(format!(
            "written {written}, previewed {previewed}, deployed {deployed_filter}"
        ));
    }
    let platforms_sent = deployed["targets"]
        .get("platforms")
        .cloned()
        .unwrap_or(json!([]));
    if platforms_sent != json!(platforms) {
        return Err(format!(
            "platforms {platforms:?} deployed as {platforms_sent}"
        ));
    }
    Ok(())
}

/// [`filter_translation`] of any bytes that read as a filter (the fuzz target's entry).
pub fn filter_translation_from_bytes(data: &[u8]) -> Result<(), String> {
    let Ok(filter) = serde_json::from_slice::<Filter>(data) else {
        return Ok(());
    };
    let all = [Platform::Windows, Platform::Linux, Platform::Mac];
    let platforms: Vec<Platform> = all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| data.len() >> i & 1 == 1)
        .map(|(_, p)| p)
        .collect();
    filter_translation(&filter, &platforms)
}
