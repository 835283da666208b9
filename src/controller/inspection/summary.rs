//! What an inspection keeps of an endpoint's answer: bounded, rounded, clipped summaries, so that status stays
//! small whatever the endpoint runs.

use crate::crd::inspection::{
    AlertEntry, AlertSummary, MAX_ALERTS_LISTED, ProcessEntry, ProcessSummary,
};
use crate::gateway::{Alert, Process};

/// Longest process name or alert key kept in status.
const MAX_TEXT: usize = 256;

pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn clip(s: String) -> String {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

pub(super) fn processes(
    all: Vec<Process>,
    name_contains: Option<&str>,
    top: usize,
) -> ProcessSummary {
    let count = all.len() as u64;
    let needle = name_contains.map(str::to_lowercase);
    let mut matching: Vec<Process> = all
        .into_iter()
        .filter(|p| {
            needle
                .as_ref()
                .is_none_or(|n| p.name.to_lowercase().contains(n))
        })
        .collect();
    let matched = needle.is_some().then_some(matching.len() as u64);
    matching.sort_by(|a, b| {
        b.memory_resident_bytes
            .cmp(&a.memory_resident_bytes)
            .then(a.pid.cmp(&b.pid))
    });
    ProcessSummary {
        count,
        matched,
        top: matching
            .into_iter()
            .take(top)
            .map(|p| ProcessEntry {
                pid: p.pid,
                ppid: p.ppid,
                name: clip(p.name),
                user_name: clip(p.user_name),
                memory_resident_bytes: p.memory_resident_bytes,
                cpu_usage_percent: round2(p.cpu_usage_percent),
            })
            .collect(),
    }
}

pub(super) fn alerts(mut all: Vec<Alert>) -> AlertSummary {
    let firing = |a: &Alert| a.firing.unwrap_or(a.resolved_at.is_none());
    let count = all.len() as u64;
    let firing_count = all.iter().filter(|a| firing(a)).count() as u64;
    // RFC 3339 times in one zone sort as text; firing ones first.
    all.sort_by(|a, b| {
        firing(b)
            .cmp(&firing(a))
            .then_with(|| b.start.cmp(&a.start))
    });
    AlertSummary {
        count,
        firing: firing_count,
        recent: all
            .into_iter()
            .take(MAX_ALERTS_LISTED)
            .map(|a| AlertEntry {
                firing: firing(&a),
                kind: a.kind.map(clip),
                key: a.key.map(clip),
                start: a.start,
                resolved_at: a.resolved_at,
                value: a.value,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: i64, name: &str, memory: i64) -> Process {
        Process {
            pid,
            ppid: 1,
            name: name.into(),
            command_line: "secret --password=hunter2".into(),
            user_name: "root".into(),
            group_name: String::new(),
            cpu_usage_percent: 1.234,
            memory_resident_bytes: memory,
        }
    }

    #[test]
    fn processes_are_counted_filtered_and_bounded() {
        let all: Vec<Process> = (1..=5000)
            .map(|i| process(i, if i % 2 == 0 { "nginx" } else { "Java" }, i * 10))
            .collect();
        let s = processes(all.clone(), None, 3);
        assert_eq!(s.count, 5000);
        assert_eq!(s.matched, None);
        assert_eq!(
            s.top.iter().map(|p| p.pid).collect::<Vec<_>>(),
            [5000, 4999, 4998]
        );
        let s = processes(all, Some("JAVA"), 2);
        assert_eq!((s.count, s.matched), (5000, Some(2500)));
        assert_eq!(
            s.top.iter().map(|p| p.pid).collect::<Vec<_>>(),
            [4999, 4997]
        );
        assert_eq!(s.top[0].cpu_usage_percent, 1.23);
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            !text.contains("hunter2"),
            "command lines stay out of status"
        );
    }

    #[test]
    fn alerts_list_firing_then_newest() {
        let alert = |key: &str, start: &str, resolved: bool| Alert {
            key: Some(key.into()),
            kind: Some("available-mem".into()),
            labels: None,
            start: Some(start.into()),
            resolved_at: resolved.then(|| "2026-01-01T00:00:00Z".into()),
            value: Some(1.0),
            firing: None,
        };
        let all: Vec<Alert> = (0..30)
            .map(|i| {
                alert(
                    &format!("k{i}"),
                    &format!("2026-01-01T00:{i:02}:00Z"),
                    i != 3,
                )
            })
            .collect();
        let s = alerts(all);
        assert_eq!((s.count, s.firing), (30, 1));
        assert_eq!(s.recent.len(), MAX_ALERTS_LISTED);
        assert_eq!(s.recent[0].key.as_deref(), Some("k3"));
        assert_eq!(s.recent[1].key.as_deref(), Some("k29"));
    }

    #[test]
    fn long_text_is_clipped_on_a_char_boundary() {
        let s = clip("é".repeat(300));
        assert!(s.len() <= MAX_TEXT + "…".len());
        assert!(s.ends_with('…'));
    }
}
