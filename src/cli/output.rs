//! Human tables and JSON on stdout.

use std::io::Write as _;

use serde::Serialize;

use super::{CliError, Format};

/// Columns aligned to their widest cell; the last column is not padded, so lines carry no trailing blanks.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: Vec<&'static str>) -> Self {
        Self {
            headers,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let cell = sanitize(cell);
                if i + 1 < row.len() {
                    let pad = widths.get(i).copied().unwrap_or(0);
                    line.push_str(&format!("{cell:<pad$}   "));
                } else {
                    line.push_str(&cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A value from an endpoint (a process name, a command line) must not be able to break the table or send
/// terminal escapes.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a message.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Output(e.to_string()))
        }
        _ => Ok(()),
    }
}

/// JSON or YAML of the same document (field names camelCase and stable); a table is each command's own.
pub fn print_data(format: Format, value: &impl Serialize) -> Result<(), CliError> {
    let text = match format {
        Format::Yaml => {
            serde_yaml_ng::to_string(value).map_err(|e| CliError::Output(e.to_string()))?
        }
        Format::Json | Format::Table => {
            let mut text =
                serde_json::to_string_pretty(value).map_err(|e| CliError::Output(e.to_string()))?;
            text.push('\n');
            text
        }
    };
    print(&text)
}

/// Bytes in binary units, e.g. `4.1 MiB`.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes.unsigned_abs() < 1024 {
        return format!("{bytes} B");
    }
    // Precision beyond one decimal is noise for a process table.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value.abs() < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

pub fn percent(p: f64) -> String {
    format!("{p:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(4_300_800), "4.1 MiB");
        assert_eq!(human_bytes(59_842_560), "57.1 MiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn table_aligns_and_strips_control_characters() {
        let mut t = Table::new(vec!["ID", "NAME"]);
        t.row(vec!["1".into(), "a\x1b[31mb".into()]);
        t.row(vec!["12345".into(), "c".into()]);
        assert_eq!(t.render(), "ID      NAME\n1       a [31mb\n12345   c\n");
    }
}
