//! `tanium-operator preview -f manifest.yaml`: what the controller would find and decide for each TaniumAction,
//! without deploying anything. It runs the controller's own checks in the controller's order (targets, package,
//! parameters, preview, safety gates) and its digest function, so the digest printed is the one to approve.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize as _, Serialize};

use super::output::{Table, print, print_data};
use super::{CliError, Format, GatewayArgs, OutputArgs};
use crate::controller::{gates, preview};
use crate::crd::{APPROVED_PREVIEW_ANNOTATION, EndpointSample, GROUP, Reason, TaniumAction};
use crate::gateway::{GatewayClient, GatewayError};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 when every TaniumAction in the file would deploy now; 1 when any \
would be held back (NoTargets, TooManyTargets, AwaitingPreviewApproval, Suspended) or is invalid \
(InvalidSpec, UnknownPackage, WrongParams, UnknownEndpoints), or on an error. The operator's admin policy \
(allowed namespaces and packages, the maxTargets ceiling) is not known here and is not checked."
)]
pub struct Args {
    /// Manifest with TaniumAction documents (multi-document YAML); `-` reads stdin. Other kinds are skipped.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Why an action would not deploy now. `reason` is the controller's condition reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hold {
    pub reason: &'static str,
    pub message: String,
}

/// One TaniumAction's preview (the JSON output's `actions[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionPreview {
    pub name: String,
    pub namespace: Option<String>,
    pub package: Option<String>,
    /// Matching endpoints; absent when a check failed before the preview ran.
    pub count: Option<u64>,
    /// At most ten of them.
    pub sample: Vec<EndpointSample>,
    pub digest: Option<String>,
    /// `Live` or `Cached`, and why (see `spec.preview`).
    pub source: Option<crate::crd::PreviewRead>,
    pub source_reason: Option<String>,
    /// Live: endpoints that answered, of those expected.
    pub answered: Option<u64>,
    pub expected: Option<u64>,
    pub would_deploy: bool,
    pub held_by: Option<Hold>,
    /// The `kubectl annotate` that approves this preview, when `requirePreviewApproval` holds it.
    pub approve_command: Option<String>,
}

/// The JSON output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub all_would_deploy: bool,
    pub actions: Vec<ActionPreview>,
}

impl ActionPreview {
    fn new(obj: &TaniumAction) -> Self {
        Self {
            namespace: obj.metadata.namespace.clone(),
            package: Some(obj.spec.package.name.clone()),
            ..Self::named(obj.metadata.name.clone().unwrap_or_default())
        }
    }

    /// Nothing known yet but a name.
    fn named(name: String) -> Self {
        Self {
            name,
            namespace: None,
            package: None,
            count: None,
            sample: Vec::new(),
            digest: None,
            source: None,
            source_reason: None,
            answered: None,
            expected: None,
            would_deploy: false,
            held_by: None,
            approve_command: None,
        }
    }

    fn hold(mut self, reason: Reason, message: String) -> Self {
        self.would_deploy = false;
        self.held_by = Some(Hold {
            reason: reason.as_str(),
            message,
        });
        self
    }

    fn held(self, held: gates::Held) -> Self {
        self.hold(held.reason, held.message)
    }
}

/// The controller's pre-deployment steps for one object, reading from the Gateway and changing nothing. A Gateway
/// error is returned as such (it says nothing about the manifest).
pub async fn evaluate(
    gateway: &GatewayClient,
    obj: &TaniumAction,
) -> Result<ActionPreview, GatewayError> {
    let spec = &obj.spec;
    let out = ActionPreview::new(obj);
    // The operator's admin policy is its own (flags of its deployment): not known here.
    if let Err(held) = gates::check_spec(spec, out.namespace.as_deref().unwrap_or(""), None) {
        return Ok(out.held(held));
    }
    let package = gateway.package_spec(&spec.package.name).await?;
    if let Err(held) = gates::check_package(spec, package.as_ref()) {
        return Ok(out.held(held));
    }
    let found = preview::find(gateway, &spec.targets, &spec.preview).await?;
    if let Err(held) = gates::check_found(&found) {
        return Ok(out.held(held));
    }
    let count = found.count;
    let digest = preview::action_digest(spec, count);
    let verdict = gates::judge_preview(
        spec,
        &found,
        &digest,
        None,
        obj.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(APPROVED_PREVIEW_ANNOTATION))
            .map(String::as_str),
        (&out.name, out.namespace.as_deref()),
    );
    let mut out = ActionPreview {
        count: Some(count),
        sample: found.sample,
        digest: Some(digest),
        source: Some(found.source.read),
        source_reason: Some(found.source.reason),
        answered: found.answered,
        expected: found.expected,
        would_deploy: true,
        ..out
    };
    match verdict {
        gates::Verdict::Deploy => {}
        gates::Verdict::Held(held) => return Ok(out.held(held)),
        gates::Verdict::AwaitingApproval { message, command } => {
            out.approve_command = Some(command);
            return Ok(out.hold(Reason::AwaitingPreviewApproval, message));
        }
    }
    // The controller checks suspend before anything else and then does nothing; previewing anyway shows what
    // unsuspending would do.
    if spec.suspend {
        return Ok(out.hold(
            Reason::Suspended,
            "spec.suspend is true: nothing is deployed until it is false".into(),
        ));
    }
    Ok(out)
}

/// TaniumAction documents of a manifest, in order; each either parsed or with why it cannot be. Other kinds
/// are skipped with a note on stderr.
fn documents(
    text: &str,
    origin: &str,
) -> Result<Vec<Result<TaniumAction, ActionPreview>>, CliError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(doc)
            .map_err(|e| CliError::Input(format!("{origin}: document {}: {e}", i + 1)))?;
        if value.is_null() {
            continue;
        }
        let field = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let kind = field("kind").unwrap_or_default();
        let api_version = field("apiVersion").unwrap_or_default();
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("")
            .to_owned();
        if kind != "TaniumAction" || !api_version.starts_with(&format!("{GROUP}/")) {
            let what = if kind.is_empty() {
                "a document without a kind".to_owned()
            } else {
                format!("{kind} {name:?}")
            };
            eprintln!(
                "note: {origin}: document {}: skipping {what}: not a TaniumAction",
                i + 1
            );
            continue;
        }
        out.push(
            serde_yaml_ng::from_value::<TaniumAction>(value).map_err(|e| ActionPreview {
                held_by: Some(Hold {
                    reason: Reason::InvalidSpec.as_str(),
                    message: format!("{origin}: document {}: {e}", i + 1),
                }),
                ..ActionPreview::named(name.clone())
            }),
        );
    }
    Ok(out)
}

pub async fn run(args: Args) -> Result<ExitCode, CliError> {
    let client = args.gateway.client()?;
    run_with(async |_| Ok(client.clone()), &args.file, args.output.format).await
}

/// The preview of `file`, each object against the Gateway `gateway_for` gives for it (the one named on the command
/// line, or with `kubectl tanium preview --from-cluster` the server its connection names), printed as `format`.
pub async fn run_with(
    gateway_for: impl AsyncFn(&TaniumAction) -> Result<GatewayClient, CliError>,
    file: &Path,
    format: Format,
) -> Result<ExitCode, CliError> {
    let (text, origin) = if file.as_os_str() == "-" {
        let text = std::io::read_to_string(std::io::stdin()).map_err(|source| CliError::File {
            path: "stdin".into(),
            source,
        })?;
        (text, "stdin".to_owned())
    } else {
        let bytes = super::read_file(file)?;
        (
            String::from_utf8_lossy(&bytes).into_owned(),
            file.display().to_string(),
        )
    };
    let docs = documents(&text, &origin)?;
    if docs.is_empty() {
        return Err(CliError::Input(format!(
            "{origin}: no TaniumAction in the file"
        )));
    }
    let mut actions = Vec::new();
    for doc in docs {
        actions.push(match doc {
            Ok(obj) => evaluate(&gateway_for(&obj).await?, &obj).await?,
            Err(invalid) => invalid,
        });
    }
    let report = Report {
        all_would_deploy: actions.iter().all(|a| a.would_deploy),
        actions,
    };
    match format {
        format @ (Format::Json | Format::Yaml) => print_data(format, &report)?,
        Format::Table => print(&render(&report))?,
    }
    Ok(if report.all_would_deploy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn render(report: &Report) -> String {
    let mut text = String::new();
    for a in &report.actions {
        let name = match &a.namespace {
            Some(ns) => format!("{ns}/{}", a.name),
            None => a.name.clone(),
        };
        text.push_str(&format!("TaniumAction: {name}\n"));
        if let Some(p) = &a.package {
            text.push_str(&format!("Package:      {p}\n"));
        }
        if let Some(count) = a.count {
            text.push_str(&format!("Matches:      {count} endpoint(s)\n"));
        }
        if let (Some(source), Some(why)) = (a.source, &a.source_reason) {
            let answered = match (a.answered, a.expected) {
                (Some(n), Some(of)) => format!(", {n} of {of} answered"),
                _ => String::new(),
            };
            text.push_str(&format!("Source:       {source:?}{answered} ({why})\n"));
        }
        if let Some(d) = &a.digest {
            text.push_str(&format!("Digest:       {d}\n"));
        }
        if !a.sample.is_empty() {
            let mut t = Table::new(vec!["ID", "COMPUTER NAME"]);
            for s in &a.sample {
                t.row(vec![s.id.clone(), s.name.clone()]);
            }
            text.push_str("Sample:\n");
            for line in t.render().lines() {
                text.push_str(&format!("  {line}\n"));
            }
        }
        match &a.held_by {
            None => text.push_str("Result:       would deploy\n"),
            Some(h) => text.push_str(&format!(
                "Result:       held back: {}: {}\n",
                h.reason, h.message
            )),
        }
        if let Some(c) = &a.approve_command {
            text.push_str(&format!("Approve with: {c}\n"));
        }
        text.push('\n');
    }
    let deploying = report.actions.iter().filter(|a| a.would_deploy).count();
    text.push_str(&format!(
        "{deploying} of {} TaniumAction(s) would deploy\n",
        report.actions.len()
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_kinds_are_skipped_and_bad_specs_reported() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n---\n\
                    apiVersion: tanium-operator.dev/v1alpha1\nkind: TaniumAction\nmetadata: {name: bad}\n\
                    spec: {package: {}}\n---\n\
                    apiVersion: tanium-operator.dev/v1alpha1\nkind: TaniumAction\nmetadata: {name: good}\n\
                    spec:\n  package: {name: P}\n  targets: {endpoints: [\"1\"]}\n";
        let docs = documents(text, "m.yaml").unwrap();
        assert_eq!(docs.len(), 2);
        let bad = docs[0].as_ref().unwrap_err();
        assert_eq!(bad.name, "bad");
        assert_eq!(bad.held_by.as_ref().map(|h| h.reason), Some("InvalidSpec"));
        assert_eq!(
            docs[1].as_ref().map(|a| a.spec.package.name.as_str()).ok(),
            Some("P")
        );
    }
}
