//! `kubectl tanium status NAME`: one TaniumAction as a tree (package, preview, the Tanium action's name, each
//! scheduled action with its platforms and newest action instance, result counts with a progress bar,
//! conditions). `-w` prints it again at every change until the action reaches a terminal phase.

use std::process::ExitCode;

use futures::{StreamExt as _, TryStreamExt as _};
use kube::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde::Serialize;

use crate::cli::output::{Table, print, print_data};
use crate::cli::{CliError, Format, OutputArgs};
use crate::controller::wire;
use crate::crd::action::Phase;
use crate::crd::{ResultCounts, TaniumAction};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TaniumAction; without it, every TaniumAction in the namespace (or, with -A, in the cluster), one line
    /// each.
    name: Option<String>,
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// List the TaniumActions of every namespace.
    #[arg(short = 'A', long, conflicts_with = "name")]
    all_namespaces: bool,
    /// Follow it: print it again at every change, until it is Completed, Expired, Stopped or Failed.
    #[arg(short = 'w', long, requires = "name")]
    watch: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// What `status` shows (`-o json|yaml` prints this; `-w -o json` one document per line at each change).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub name: String,
    pub namespace: String,
    pub phase: Phase,
    pub package: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_name: Option<String>,
    pub scheduled_actions: Vec<ScheduledView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<ResultCounts>,
    pub conditions: Vec<ConditionView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledView {
    pub id: String,
    pub platforms: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl View {
    fn of(obj: &TaniumAction, namespace: &str) -> Self {
        let status = obj.status.clone().unwrap_or_default();
        Self {
            name: obj.metadata.name.clone().unwrap_or_default(),
            namespace: namespace.to_owned(),
            phase: status.phase.unwrap_or(Phase::Pending),
            package: obj.spec.package.name.clone(),
            package_id: status.package.map(|p| p.id),
            preview_count: status.preview.as_ref().map(|p| p.count),
            preview_digest: status.preview.map(|p| p.digest),
            action_name: status.deployment.action_name,
            scheduled_actions: status
                .deployment
                .scheduled_actions
                .into_iter()
                .map(|sa| ScheduledView {
                    id: sa.id,
                    platforms: sa
                        .platforms
                        .iter()
                        .map(|&p| wire::platform(p).as_str().to_owned())
                        .collect(),
                    action_id: sa.last_action_id,
                    status: sa.status,
                })
                .collect(),
            results: status.results,
            conditions: status
                .conditions
                .into_iter()
                .map(|c| ConditionView {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                })
                .collect(),
        }
    }

    fn tree(&self) -> String {
        let mut lines = vec![format!(
            "TaniumAction {}/{}: {}",
            self.namespace, self.name, self.phase
        )];
        let mut items: Vec<(String, Vec<String>)> = Vec::new();
        let id = self
            .package_id
            .as_ref()
            .map(|id| format!(" (id {id})"))
            .unwrap_or_default();
        items.push((format!("package    {}{id}", self.package), vec![]));
        if let (Some(count), Some(digest)) = (self.preview_count, &self.preview_digest) {
            items.push((
                format!("preview    {count} endpoint(s), digest {digest}"),
                vec![],
            ));
        }
        if let Some(name) = &self.action_name {
            items.push((format!("tanium     {name}"), vec![]));
        }
        for sa in &self.scheduled_actions {
            let platforms = if sa.platforms.is_empty() {
                "all platforms".to_owned()
            } else {
                sa.platforms.join(", ")
            };
            let child = match &sa.action_id {
                Some(a) => format!(
                    "action {a}   {}",
                    sa.status.as_deref().unwrap_or("status not read yet")
                ),
                None => "no action instance yet".to_owned(),
            };
            items.push((
                format!("scheduled action {}   {platforms}", sa.id),
                vec![child],
            ));
        }
        if let Some(r) = &self.results {
            items.push((format!("results    {}", r.summary()), vec![progress_bar(r)]));
        }
        for c in &self.conditions {
            items.push((
                format!("{:<10} {}  {}: {}", c.type_, c.status, c.reason, c.message),
                vec![],
            ));
        }
        let last = items.len().saturating_sub(1);
        for (i, (item, children)) in items.into_iter().enumerate() {
            let (branch, trunk) = if i == last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            lines.push(format!("{branch}{item}"));
            let last_child = children.len().saturating_sub(1);
            for (j, child) in children.into_iter().enumerate() {
                let twig = if j == last_child {
                    "└─ "
                } else {
                    "├─ "
                };
                lines.push(format!("{trunk}{twig}{child}"));
            }
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

/// `[##########----------]  9/20  45%`: endpoints finished of those targeted.
pub fn progress_bar(r: &ResultCounts) -> String {
    const WIDTH: u64 = 30;
    if r.targeted == 0 {
        return "[no endpoint targeted yet]".into();
    }
    let done = u64::from(r.counts.finished()).min(r.targeted);
    let filled = (done * WIDTH / r.targeted) as usize;
    format!(
        "[{}{}]  {done}/{}  {}%",
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled),
        r.targeted,
        done * 100 / r.targeted
    )
}

/// One line per TaniumAction: what `kubectl get ta` shows, with the Ready message.
pub fn table(views: &[View]) -> String {
    let mut table = Table::new(vec![
        "NAMESPACE",
        "NAME",
        "PHASE",
        "TARGETS",
        "FINISHED",
        "MESSAGE",
    ]);
    for v in views {
        let ready = v.conditions.iter().find(|c| c.type_ == "Ready");
        table.row(vec![
            v.namespace.clone(),
            v.name.clone(),
            v.phase.to_string(),
            v.preview_count.map(|c| c.to_string()).unwrap_or_default(),
            v.results
                .as_ref()
                .map(|r| format!("{}/{}", r.counts.finished(), r.targeted))
                .unwrap_or_default(),
            ready.map(|c| c.message.clone()).unwrap_or_default(),
        ]);
    }
    table.render()
}

async fn list(on: &super::ClusterArgs, args: Args) -> Result<ExitCode, CliError> {
    let (client, ns) = on.namespace(args.namespace).await?;
    let api: Api<TaniumAction> = if args.all_namespaces {
        Api::all(client)
    } else {
        Api::namespaced(client, &ns)
    };
    let mut views: Vec<View> = api
        .list(&kube::api::ListParams::default())
        .await?
        .items
        .iter()
        .map(|obj| View::of(obj, obj.metadata.namespace.as_deref().unwrap_or(&ns)))
        .collect();
    views.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    match args.output.format {
        Format::Table => print(&table(&views))?,
        other => print_data(other, &views)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(on: &super::ClusterArgs, args: Args) -> Result<ExitCode, CliError> {
    let Some(name) = args.name.clone() else {
        return list(on, args).await;
    };
    let (client, ns) = on.namespace(args.namespace).await?;
    let api: Api<TaniumAction> = Api::namespaced(client, &ns);
    let format = args.output.format;
    let show = |view: &View| match format {
        Format::Table => print(&view.tree()),
        // One document per change, each on its own line(s): a stream a script can read as it comes.
        Format::Json => serde_json::to_string(view)
            .map_err(|e| CliError::Output(e.to_string()))
            .and_then(|line| print(&format!("{line}\n"))),
        Format::Yaml => {
            print("---\n")?;
            print_data(Format::Yaml, view)
        }
    };
    if !args.watch {
        let view = View::of(&api.get(&name).await?, &ns);
        match format {
            Format::Table => show(&view)?,
            other => print_data(other, &view)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    let config = watcher::Config::default().fields(&format!("metadata.name={}", name));
    // Actions run for hours: a dropped watch is resumed (with backoff), not the end of `-w`.
    let mut changes = watcher(api.clone(), config).default_backoff().boxed();
    // The object must exist now: a typo would otherwise wait forever.
    api.get(&name).await?;
    let mut last: Option<View> = None;
    loop {
        let next = tokio::select! {
            next = changes.try_next() => next,
            _ = tokio::signal::ctrl_c() => return Err(CliError::Interrupted(String::new())),
        };
        let obj = match next {
            Ok(Some(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj))) => obj,
            Ok(Some(watcher::Event::Delete(_))) => {
                eprintln!("taniumaction {ns}/{} was deleted", name);
                return Ok(ExitCode::FAILURE);
            }
            Ok(Some(watcher::Event::Init | watcher::Event::InitDone)) => continue,
            Ok(None) => return Ok(ExitCode::FAILURE),
            Err(e) => {
                eprintln!("watching {ns}/{}: {e}; resuming", name);
                continue;
            }
        };
        let view = View::of(&obj, &ns);
        if last.as_ref() != Some(&view) {
            show(&view)?;
        }
        if view.phase.is_terminal() {
            return Ok(ExitCode::SUCCESS);
        }
        last = Some(view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::EndpointCounts;

    #[test]
    fn the_bar_fills_with_finished_endpoints_and_never_overflows() {
        let r = |targeted, completed, failed| ResultCounts {
            targeted,
            counts: EndpointCounts {
                completed,
                failed,
                ..EndpointCounts::default()
            },
            waiting_when_stopped: None,
        };
        assert_eq!(progress_bar(&r(0, 0, 0)), "[no endpoint targeted yet]");
        assert_eq!(
            progress_bar(&r(20, 8, 1)),
            format!("[{}{}]  9/20  45%", "#".repeat(13), "-".repeat(17))
        );
        assert_eq!(
            progress_bar(&r(2, 3, 0)),
            format!("[{}]  2/2  100%", "#".repeat(30))
        );
    }
}
