//! `kubectl tanium approve NAME`: the person's half of `requirePreviewApproval`. It shows what the operator
//! previewed (count, sample, digest), asks, and writes that digest into the approval annotation, on the very
//! version of the object it showed: if the preview changed in between, the write is refused and nothing is
//! approved.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::cli::CliError;
use crate::cli::output::print;
use crate::crd::action::Phase;
use crate::crd::{APPROVED_PREVIEW_ANNOTATION, TaniumAction};

/// A person's tool, not the operator: the approval is theirs in managedFields.
const FIELD_MANAGER: &str = "kubectl-tanium";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TaniumAction.
    name: String,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Approve without asking (for scripts; the preview is still printed).
    #[arg(long)]
    yes: bool,
}

pub async fn run(on: &super::ClusterArgs, args: Args) -> Result<ExitCode, CliError> {
    let (client, ns) = on.namespace(args.namespace).await?;
    let api: Api<TaniumAction> = Api::namespaced(client, &ns);
    let obj = api.get(&args.name).await?;
    let status = obj.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(Phase::Pending);
    let Some(preview) = status.preview.as_ref() else {
        return Err(CliError::Input(format!(
            "taniumaction {ns}/{} has no preview yet (phase {phase})",
            args.name
        )));
    };
    if phase != Phase::AwaitingPreviewApproval {
        return Err(CliError::Input(format!(
            "taniumaction {ns}/{} is {phase}, not AwaitingPreviewApproval: nothing to approve",
            args.name
        )));
    }
    let mut shown = format!(
        "TaniumAction {ns}/{}: package {:?} to {} endpoint(s)\n",
        args.name, obj.spec.package.name, preview.count
    );
    for e in &preview.sample {
        shown.push_str(&format!("  {}  {}\n", e.id, e.name));
    }
    if preview.count > preview.sample.len() as u64 {
        shown.push_str(&format!(
            "  … and {} more\n",
            preview.count - preview.sample.len() as u64
        ));
    }
    shown.push_str(&format!("Preview digest: {}\n", preview.digest));
    print(&shown)?;
    if !args.yes && !confirm(preview.count)? {
        print("Not approved.\n")?;
        return Ok(ExitCode::FAILURE);
    }
    // On the version shown: a preview that changed since is not the one the person approved.
    let patch = json!({
        "metadata": {
            "resourceVersion": obj.metadata.resource_version,
            "annotations": {APPROVED_PREVIEW_ANNOTATION: preview.digest},
        }
    });
    match api
        .patch(
            &args.name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            return Err(CliError::Input(format!(
                "taniumaction {ns}/{} changed while it was shown; nothing approved, run again",
                args.name
            )));
        }
        Err(e) => return Err(e.into()),
    }
    print(&format!(
        "Approved: {APPROVED_PREVIEW_ANNOTATION}={}\n",
        preview.digest
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// A "y" on stdin. Without a terminal and without --yes nothing is approved by accident: a line must still say so.
fn confirm(count: u64) -> Result<bool, CliError> {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "Deploy to these {count} endpoint(s)? [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Input(format!("reading the answer: {e}")))?;
    if answer.is_empty() && !std::io::stdin().is_terminal() {
        let _ = writeln!(
            err,
            "(no answer on stdin; pass --yes to approve without asking)"
        );
    }
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
