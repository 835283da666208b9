//! `tanium-operator endpoints`: which endpoints a filter selects, with the same filter shape a TaniumAction's
//! `spec.targets.filter` takes.

use std::path::PathBuf;

use serde::Serialize;

use super::output::{Table, print, print_data};
use super::{CliError, Format, GatewayArgs, OutputArgs};
use crate::gateway::endpoints::EndpointQuery;
use crate::gateway::{Endpoint, Filter};

/// Largest page asked for; a larger --limit takes several pages.
const MAX_PAGE: usize = 500;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A filter as YAML or JSON, shaped like a TaniumAction's spec.targets.filter, e.g.
    /// '{sensor: {name: OS Platform}, op: EQ, value: Linux}'.
    #[arg(long, conflicts_with = "filter_file")]
    pub filter: Option<String>,
    /// Read the filter (YAML or JSON) from this file; `-` reads stdin.
    #[arg(long)]
    pub filter_file: Option<PathBuf>,
    /// Show at most this many endpoints (the total is still reported).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The JSON output: `{"total": N, "endpoints": [{id, computerName, platform, ipAddress}]}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    pub total: u64,
    pub endpoints: Vec<Row>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub id: String,
    pub computer_name: String,
    pub platform: Option<&'static str>,
    pub ip_address: Option<String>,
}

impl From<Endpoint> for Row {
    fn from(e: Endpoint) -> Self {
        Self {
            id: e.id.0,
            computer_name: e.name,
            platform: e.platform.map(|p| p.as_str()),
            ip_address: e.ip_address,
        }
    }
}

/// Parse and validate a filter before anything is sent.
pub fn parse_filter(text: &str, origin: &str) -> Result<Filter, CliError> {
    // YAML is a superset of JSON: one parser takes both.
    let filter: Filter = serde_yaml_ng::from_str(text)
        .map_err(|e| CliError::Input(format!("{origin}: not a filter: {e}")))?;
    filter
        .validate()
        .map_err(|e| CliError::Input(format!("{origin}: {e}")))?;
    Ok(filter)
}

fn read_filter(args: &Args) -> Result<Option<Filter>, CliError> {
    match (&args.filter, &args.filter_file) {
        (Some(text), _) => parse_filter(text, "--filter").map(Some),
        (None, Some(path)) => {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).map_err(|source| CliError::File {
                    path: "stdin".into(),
                    source,
                })?
            } else {
                String::from_utf8_lossy(&super::read_file(path)?).into_owned()
            };
            parse_filter(&text, &path.display().to_string()).map(Some)
        }
        (None, None) => Ok(None),
    }
}

pub async fn run(args: Args) -> Result<std::process::ExitCode, CliError> {
    let filter = read_filter(&args)?;
    let client = args.gateway.client()?;
    let query = EndpointQuery {
        filter,
        page_size: u32::try_from(args.limit.clamp(1, MAX_PAGE)).unwrap_or(1),
        ..EndpointQuery::default()
    };
    let mut endpoints = Vec::new();
    let mut cursor: Option<String> = None;
    let total = loop {
        let page = client.endpoints_page(&query, cursor.as_deref()).await?;
        // An empty page that still offers a cursor would otherwise be followed forever.
        let progressed = !page.endpoints.is_empty();
        endpoints.extend(page.endpoints);
        match page.next_cursor {
            Some(next) if progressed && endpoints.len() < args.limit => cursor = Some(next),
            _ => break page.total,
        }
    };
    endpoints.truncate(args.limit);
    let listing = Listing {
        total,
        endpoints: endpoints.into_iter().map(Row::from).collect(),
    };
    match args.output.format {
        format @ (Format::Json | Format::Yaml) => print_data(format, &listing)?,
        Format::Table => {
            let mut table = Table::new(vec!["ID", "COMPUTER NAME", "PLATFORM", "IP"]);
            for e in &listing.endpoints {
                table.row(vec![
                    e.id.clone(),
                    e.computer_name.clone(),
                    e.platform.unwrap_or("-").to_owned(),
                    e.ip_address.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            let mut text = if table.is_empty() {
                String::new()
            } else {
                table.render()
            };
            text.push_str(&format!(
                "showing {} of {}\n",
                listing.endpoints.len(),
                listing.total
            ));
            print(&text)?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_from_yaml_or_json_and_are_validated() {
        let y = parse_filter("{sensor: {name: OS Platform}, op: EQ, value: Linux}", "f").unwrap();
        let j = parse_filter(
            r#"{"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Linux"}"#,
            "f",
        )
        .unwrap();
        assert_eq!(y, j);
        let e = parse_filter("{sensor: {name: OS Platform}, op: EQ}", "--filter")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--filter") && e.contains("needs a value"), "{e}");
        let e = parse_filter("{op: NOPE}", "--filter")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a filter"), "{e}");
    }
}
