//! `tanium-operator dec`: Direct Endpoint Connect to one endpoint, for one thing (performance, processes, alerts,
//! or ending a process). The connection is closed on every path: success, error, timeout and Ctrl-C.

use std::cell::Cell;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::output::{Table, human_bytes, percent, print, print_data};
use super::{CliError, Format, GatewayArgs, Interrupt, OutputArgs};
use crate::crd::parse_duration;
use crate::gateway::{
    Alert, DirectConnection, Endpoint, EndpointId, EndpointSelector, GatewayClient, GatewayError,
    Process, Reading, Resolved, Signal,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// CPU and memory use, in percent.
    Cpu(CpuArgs),
    /// Running processes, largest resident memory first.
    Processes(ProcessesArgs),
    /// Alerts (Performance module heuristics) since a point in time.
    Alerts(AlertsArgs),
    /// End one process. Refuses without --yes (exit status 2, nothing sent). Sent once, never retried: when
    /// the answer is lost, the process may or may not have been ended.
    Kill(KillArgs),
}

/// Exactly one way to name the endpoint.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The endpoint's Gateway id.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The endpoint's computer name; an error when several endpoints share it.
    #[arg(long)]
    pub computer_name: Option<String>,
}

impl Target {
    fn selector(&self) -> EndpointSelector {
        match (&self.endpoint, &self.computer_name) {
            (Some(id), _) => EndpointSelector::Id(EndpointId(id.clone())),
            (None, Some(name)) => EndpointSelector::ComputerName(name.clone()),
            // clap's group makes one of them required.
            (None, None) => EndpointSelector::ComputerName(String::new()),
        }
    }

    fn describe(&self) -> String {
        match (&self.endpoint, &self.computer_name) {
            (Some(id), _) => format!("endpoint {id}"),
            (None, Some(name)) => format!("the endpoint named {name:?}"),
            (None, None) => "no endpoint".into(),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct On {
    #[command(flatten)]
    pub target: Target,
    /// How long to wait for the connection to become ready (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ready_timeout: Duration,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub struct CpuArgs {
    #[command(flatten)]
    pub on: On,
}

#[derive(clap::Args, Debug)]
pub struct ProcessesArgs {
    #[command(flatten)]
    pub on: On,
    /// Only processes whose name contains this (case-insensitive).
    #[arg(long)]
    pub name_contains: Option<String>,
    /// Show the N largest by resident memory.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
}

#[derive(clap::Args, Debug)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub on: On,
    /// How far back (e.g. 30m, 24h, 7d).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub since: Duration,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignalArg {
    #[default]
    #[value(name = "SIGTERM")]
    Sigterm,
    #[value(name = "SIGKILL")]
    Sigkill,
    #[value(name = "SIGINT")]
    Sigint,
}

impl SignalArg {
    fn gateway(self) -> Signal {
        match self {
            Self::Sigterm => Signal::Sigterm,
            Self::Sigkill => Signal::Sigkill,
            Self::Sigint => Signal::Sigint,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sigterm => "SIGTERM",
            Self::Sigkill => "SIGKILL",
            Self::Sigint => "SIGINT",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    #[command(flatten)]
    pub on: On,
    /// Process id.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=i64::from(i32::MAX)))]
    pub pid: i64,
    /// Process name; must match the pid's, so that a reused pid is not ended by mistake.
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum, ignore_case = true, default_value_t = SignalArg::Sigterm)]
    pub signal: SignalArg,
    /// Really end the process. Without it, nothing is sent.
    #[arg(long)]
    pub yes: bool,
}

/// Which endpoint answered (every JSON output carries it).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRef {
    pub id: String,
    pub computer_name: String,
}

impl From<&Endpoint> for EndpointRef {
    fn from(e: &Endpoint) -> Self {
        Self {
            id: e.id.0.clone(),
            computer_name: e.name.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuReport {
    pub endpoint: EndpointRef,
    pub cpu_usage_percent: f64,
    pub memory_used_percent: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessReport {
    pub endpoint: EndpointRef,
    /// Processes that passed `--name-contains`, before `--top`.
    pub matched: usize,
    pub processes: Vec<Process>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertReport {
    pub endpoint: EndpointRef,
    pub since: String,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KillReport {
    pub endpoint: EndpointRef,
    pub pid: i64,
    pub name: String,
    pub signal: &'static str,
    /// `ended` or `noSuchProcess`.
    pub outcome: &'static str,
}

pub async fn run(args: Args) -> Result<ExitCode, CliError> {
    match args.command {
        Command::Cpu(a) => cpu(a).await,
        Command::Processes(a) => processes(a).await,
        Command::Alerts(a) => alerts(a).await,
        Command::Kill(a) => kill(a).await,
    }
}

fn no_data(what: &str, endpoint: &Endpoint) -> CliError {
    CliError::Endpoint(format!(
        "endpoint {} ({}) returned no {what} (does it have the Performance module?)",
        endpoint.id, endpoint.name
    ))
}

async fn cpu(args: CpuArgs) -> Result<ExitCode, CliError> {
    let format = args.on.output.format;
    let (endpoint, perf) = with_connection(&args.on, None, async |client, conn| {
        let what = Reading {
            performance: true,
            processes: false,
            alerts_since: None,
        };
        Ok(client.dc_read(conn, what).await?.performance)
    })
    .await?;
    let perf = perf.ok_or_else(|| no_data("performance data", &endpoint))?;
    let report = CpuReport {
        endpoint: EndpointRef::from(&endpoint),
        cpu_usage_percent: perf.cpu_usage_percent,
        memory_used_percent: perf.memory_used_percent,
    };
    match format {
        format @ (Format::Json | Format::Yaml) => print_data(format, &report)?,
        Format::Table => {
            let mut t = Table::new(vec!["ENDPOINT", "COMPUTER NAME", "CPU%", "MEMORY%"]);
            t.row(vec![
                report.endpoint.id.clone(),
                report.endpoint.computer_name.clone(),
                percent(report.cpu_usage_percent),
                percent(report.memory_used_percent),
            ]);
            print(&t.render())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--name-contains` (case-insensitive), then the `top` largest by resident memory.
pub fn select_processes(
    mut all: Vec<Process>,
    name_contains: Option<&str>,
    top: usize,
) -> (usize, Vec<Process>) {
    if let Some(needle) = name_contains.map(str::to_lowercase) {
        all.retain(|p| p.name.to_lowercase().contains(&needle));
    }
    let matched = all.len();
    all.sort_by(|a, b| {
        b.memory_resident_bytes
            .cmp(&a.memory_resident_bytes)
            .then(a.pid.cmp(&b.pid))
    });
    all.truncate(top);
    (matched, all)
}

async fn processes(args: ProcessesArgs) -> Result<ExitCode, CliError> {
    let format = args.on.output.format;
    let (endpoint, all) = with_connection(&args.on, None, async |client, conn| {
        let what = Reading {
            performance: false,
            processes: true,
            alerts_since: None,
        };
        Ok(client.dc_read(conn, what).await?.processes)
    })
    .await?;
    let all = all.ok_or_else(|| no_data("process list", &endpoint))?;
    let (matched, processes) = select_processes(all, args.name_contains.as_deref(), args.top);
    let report = ProcessReport {
        endpoint: EndpointRef::from(&endpoint),
        matched,
        processes,
    };
    match format {
        format @ (Format::Json | Format::Yaml) => print_data(format, &report)?,
        Format::Table => {
            let mut t = Table::new(vec!["PID", "PPID", "NAME", "USER", "MEMORY", "CPU%"]);
            for p in &report.processes {
                t.row(vec![
                    p.pid.to_string(),
                    p.ppid.to_string(),
                    p.name.clone(),
                    p.user_name.clone(),
                    human_bytes(p.memory_resident_bytes),
                    percent(p.cpu_usage_percent),
                ]);
            }
            let mut text = if t.is_empty() {
                String::new()
            } else {
                t.render()
            };
            text.push_str(&format!(
                "showing {} of {} process(es) on endpoint {} ({})\n",
                report.processes.len(),
                report.matched,
                report.endpoint.id,
                report.endpoint.computer_name
            ));
            print(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn alerts(args: AlertsArgs) -> Result<ExitCode, CliError> {
    let format = args.on.output.format;
    let since = jiff::SignedDuration::try_from(args.since)
        .ok()
        .and_then(|d| jiff::Timestamp::now().checked_sub(d).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let (endpoint, alerts) = with_connection(&args.on, None, async |client, conn| {
        let what = Reading {
            performance: false,
            processes: false,
            alerts_since: Some(since),
        };
        Ok(client.dc_read(conn, what).await?.alerts)
    })
    .await?;
    let alerts = alerts.ok_or_else(|| no_data("alerts", &endpoint))?;
    let report = AlertReport {
        endpoint: EndpointRef::from(&endpoint),
        since: since.to_string(),
        alerts,
    };
    match format {
        format @ (Format::Json | Format::Yaml) => print_data(format, &report)?,
        Format::Table => {
            let dash = || "-".to_owned();
            let mut t = Table::new(vec![
                "TYPE", "KEY", "STARTED", "RESOLVED", "VALUE", "FIRING",
            ]);
            for a in &report.alerts {
                t.row(vec![
                    a.kind.clone().unwrap_or_else(dash),
                    a.key.clone().unwrap_or_else(dash),
                    a.start.clone().unwrap_or_else(dash),
                    a.resolved_at.clone().unwrap_or_else(dash),
                    a.value.map(|v| format!("{v:.2}")).unwrap_or_else(dash),
                    a.firing
                        .map(|f| if f { "yes" } else { "no" }.to_owned())
                        .unwrap_or_else(dash),
                ]);
            }
            let mut text = if t.is_empty() {
                String::new()
            } else {
                t.render()
            };
            text.push_str(&format!(
                "{} alert(s) since {} on endpoint {} ({})\n",
                report.alerts.len(),
                report.since,
                report.endpoint.id,
                report.endpoint.computer_name
            ));
            print(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn kill(args: KillArgs) -> Result<ExitCode, CliError> {
    let signal = args.signal;
    if !args.yes {
        eprintln!(
            "would end process {} named {:?} with {} on {}; nothing was sent. Re-run with --yes to end it.",
            args.pid,
            args.name,
            signal.name(),
            args.on.target.describe()
        );
        return Ok(ExitCode::from(2));
    }
    let format = args.on.output.format;
    let (pid, name) = (args.pid, args.name.clone());
    // Set just before the terminate request: from then on an interrupt cannot tell whether it took effect.
    let sent = Cell::new(false);
    let (endpoint, ended) = with_connection(&args.on, Some(&sent), async |client, conn| {
        sent.set(true);
        match client
            .dc_terminate(conn, pid, &name, signal.gateway())
            .await
        {
            Ok(ended) => Ok(ended),
            Err(e @ GatewayError::OutcomeUnknown { .. }) => Err(CliError::Endpoint(format!(
                "process {pid} {name:?} on endpoint {}: the process may or may not have been ended \
                 (not retried; check with `dec processes`): {e}",
                conn.endpoint
            ))),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    let report = KillReport {
        endpoint: EndpointRef::from(&endpoint),
        pid,
        name: args.name,
        signal: signal.name(),
        outcome: if ended { "ended" } else { "noSuchProcess" },
    };
    match format {
        format @ (Format::Json | Format::Yaml) => print_data(format, &report)?,
        Format::Table if ended => print(&format!(
            "ended: process {} {:?} on endpoint {} ({}) with {}\n",
            report.pid,
            report.name,
            report.endpoint.id,
            report.endpoint.computer_name,
            report.signal
        ))?,
        Format::Table => print(&format!(
            "no such process (pid and name must both match): {} {:?} on endpoint {} ({})\n",
            report.pid, report.name, report.endpoint.id, report.endpoint.computer_name
        ))?,
    }
    Ok(if ended {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn resolve(client: &GatewayClient, target: &Target) -> Result<Endpoint, CliError> {
    match client.find_endpoint(&target.selector()).await? {
        Resolved::One(e) => Ok(e),
        Resolved::None => Err(CliError::Endpoint(format!(
            "Tanium knows no {}",
            match (&target.endpoint, &target.computer_name) {
                (Some(id), _) => format!("endpoint with id {id}"),
                (None, name) => format!("endpoint named {:?}", name.as_deref().unwrap_or("")),
            }
        ))),
        Resolved::Several { total, some } => {
            let listed: Vec<String> = some
                .iter()
                .map(|e| {
                    format!(
                        "{} ({})",
                        e.id,
                        e.ip_address.as_deref().unwrap_or("no IP address")
                    )
                })
                .collect();
            Err(CliError::Endpoint(format!(
                "{total} endpoints are named {:?} (e.g. {}); pick one with --endpoint ID",
                target.computer_name.as_deref().unwrap_or(""),
                listed.join(", ")
            )))
        }
    }
}

/// Resolve the endpoint, open a connection, wait until it is ready, run `work`, and close the connection
/// whatever happened. Ctrl-C ends the wait or the work, never the close. `sent`, when given, turns an
/// interrupt after it was set into "may or may not have taken effect".
async fn with_connection<T>(
    on: &On,
    sent: Option<&Cell<bool>>,
    work: impl AsyncFnOnce(&GatewayClient, &DirectConnection) -> Result<T, CliError>,
) -> Result<(Endpoint, T), CliError> {
    // Installed before anything is opened: from here on Ctrl-C is ours to handle, so it cannot end the process
    // between the open and the close.
    let mut interrupt = Interrupt::install()?;
    let client = on.gateway.client()?;
    let endpoint = tokio::select! {
        r = resolve(&client, &on.target) => r?,
        () = interrupt.recv() => return Err(CliError::Interrupted(String::new())),
    };
    // Not raced against Ctrl-C: until it answers there is no connection id to close. An interrupt meanwhile
    // waits in the handler and ends the wait below at once.
    let opening = client.dc_open_start(&endpoint.id).await?;
    let conn = opening.connection.clone();
    let result = tokio::select! {
        r = async {
            client.dc_wait_ready(opening, on.ready_timeout).await?;
            work(&client, &conn).await
        } => r,
        () = interrupt.recv() => Err(CliError::Interrupted(
            if sent.is_some_and(Cell::get) {
                "; the request was already sent: the process may or may not have been ended".into()
            } else {
                String::new()
            },
        )),
    };
    if let Err(e) = client.dc_close(&conn).await {
        eprintln!(
            "warning: could not close the Direct Connect connection to endpoint {}: {e} (it closes by itself \
             after two minutes idle)",
            endpoint.id
        );
    }
    result.map(|t| (endpoint, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i64, name: &str, mem: i64) -> Process {
        Process {
            pid,
            ppid: 1,
            name: name.into(),
            command_line: String::new(),
            user_name: String::new(),
            group_name: String::new(),
            cpu_usage_percent: 0.0,
            memory_resident_bytes: mem,
        }
    }

    #[test]
    fn processes_filter_case_insensitively_then_take_the_largest() {
        let all = vec![
            p(1, "Notepad.exe", 10),
            p(2, "svchost.exe", 99),
            p(3, "notepad++.exe", 30),
            p(4, "NOTEPAD.EXE", 20),
        ];
        let (matched, top) = select_processes(all, Some("notepad"), 2);
        assert_eq!(matched, 3);
        assert_eq!(top.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![3, 4]);
    }
}
