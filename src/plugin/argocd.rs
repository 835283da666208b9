//! `kubectl tanium argocd-health`: Argo CD health checks for the five kinds, as a patch for `argocd-cm`. The Lua
//! lives in `argocd/resource_customizations/tanium-operator.dev/<Kind>/health.lua`, Argo CD's own layout (with
//! `health_test.yaml` and `testdata/`, so the checks can be contributed upstream as they are), is tested against
//! real objects in `tests/argocd_health.rs`, and is built in here.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Serialize;

use crate::cli::output::print_data;
use crate::cli::{CliError, Format, OutputArgs};
use crate::crd::GROUP;

/// (kind, Lua) for every kind the operator serves.
pub const HEALTH_CHECKS: [(&str, &str); 5] = [
    (
        "TaniumAction",
        include_str!(
            "../../argocd/resource_customizations/tanium-operator.dev/TaniumAction/health.lua"
        ),
    ),
    (
        "TaniumTag",
        include_str!(
            "../../argocd/resource_customizations/tanium-operator.dev/TaniumTag/health.lua"
        ),
    ),
    (
        "TaniumEndpointInspection",
        include_str!(
            "../../argocd/resource_customizations/tanium-operator.dev/TaniumEndpointInspection/health.lua"
        ),
    ),
    (
        "TaniumConnection",
        include_str!(
            "../../argocd/resource_customizations/tanium-operator.dev/TaniumConnection/health.lua"
        ),
    ),
    (
        "ClusterTaniumConnection",
        include_str!(
            "../../argocd/resource_customizations/tanium-operator.dev/ClusterTaniumConnection/health.lua"
        ),
    ),
];

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Install: kubectl tanium argocd-health | kubectl -n argocd patch configmap argocd-cm \
--type merge --patch-file /dev/stdin"
)]
pub struct Args {
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Serialize)]
struct Patch {
    data: BTreeMap<String, &'static str>,
}

/// The `argocd-cm` key Argo CD reads a kind's health check from.
pub fn key(kind: &str) -> String {
    format!("resource.customizations.health.{GROUP}_{kind}")
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let patch = Patch {
        data: HEALTH_CHECKS
            .iter()
            .map(|(kind, lua)| (key(kind), *lua))
            .collect(),
    };
    let format = match args.output.format {
        Format::Table => Format::Yaml,
        other => other,
    };
    print_data(format, &patch)?;
    Ok(ExitCode::SUCCESS)
}
