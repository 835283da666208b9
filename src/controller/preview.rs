//! The preview the Tanium console forces before an action goes out: how many endpoints, which ones (a sample),
//! and a digest that a person approves.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::wire;
use crate::crd::{
    APPROVED_PREVIEW_ANNOTATION, EndpointSample, Preview, PreviewRead, PreviewSettings,
    PreviewSource, TaniumActionSpec, Targets,
};
use crate::gateway::endpoints::{EndpointQuery, LiveSource};
use crate::gateway::sensors::SensorInfo;
use crate::gateway::{self, EndpointId, Filter, FilterOp, GatewayClient, GatewayError, SensorRef};

/// Endpoints shown in status; the count covers the rest.
pub const SAMPLE_SIZE: u32 = 10;

/// What the preview found, before a digest is attached.
pub struct Found {
    pub count: u64,
    pub sample: Vec<EndpointSample>,
    /// Listed endpoint ids the Gateway does not know.
    pub unknown_ids: Vec<EndpointId>,
    pub source: Choice,
    /// Live: how many endpoints answered, of how many the Gateway expected.
    pub answered: Option<u64>,
    pub expected: Option<u64>,
}

/// Where a preview reads, and why there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub read: PreviewRead,
    pub reason: String,
}

impl Choice {
    fn live(reason: impl Into<String>) -> Self {
        Self {
            read: PreviewRead::Live,
            reason: reason.into(),
        }
    }
    fn cached(reason: impl Into<String>) -> Self {
        Self {
            read: PreviewRead::Cached,
            reason: reason.into(),
        }
    }
}

/// Where to read a preview of a query that compares `used` sensors, given what the Gateway said of them (`None`:
/// the sensor catalog could not be read). `Auto` reads the Tanium Data Service only when it holds every sensor
/// compared, collected at most `max_reading_age` seconds ago; anything it cannot vouch for is asked live, as the
/// action will be.
pub fn choose(
    settings: &PreviewSettings,
    used: &[&SensorRef],
    catalog: Option<&[SensorInfo]>,
) -> Choice {
    match settings.source {
        PreviewSource::Live => return Choice::live("spec.preview.source is Live"),
        PreviewSource::Cached => return Choice::cached("spec.preview.source is Cached"),
        PreviewSource::Auto => {}
    }
    if used.is_empty() {
        return Choice::cached("the targets compare no sensor");
    }
    let Some(catalog) = catalog else {
        return Choice::live("the sensor catalog could not be read");
    };
    for sensor in used {
        let Some(info) = catalog
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(&sensor.name))
        else {
            return Choice::live(format!(
                "sensor {:?} is not in the sensor catalog",
                sensor.name
            ));
        };
        if !info.collected_with(&sensor.params) {
            return Choice::live(format!(
                "the Tanium Data Service does not collect sensor {:?}",
                sensor.name
            ));
        }
        if let Some(age) = info.max_age_seconds
            && age > settings.max_reading_age
        {
            return Choice::live(format!(
                "cached readings of sensor {:?} may be {age} s old, more than spec.preview.maxReadingAge ({} s)",
                sensor.name, settings.max_reading_age
            ));
        }
    }
    Choice::cached("the Tanium Data Service collects every sensor the targets compare")
}

/// Why a live preview does not count yet, if it does not: fewer endpoints answered than `min_percent` of those
/// the Gateway expected. A short count would let more endpoints through than maxTargets or an approval allowed.
pub fn incomplete(found: &Found, min_percent: u8) -> Option<String> {
    let (Some(answered), Some(expected)) = (found.answered, found.expected) else {
        return (found.source.read == PreviewRead::Live)
            .then(|| "the live answer did not say how many endpoints answered".to_string());
    };
    (answered.saturating_mul(100) < expected.saturating_mul(u64::from(min_percent))).then(|| {
        format!(
            "a live preview: {answered} of {expected} expected endpoints answered, fewer than \
             spec.preview.minAnsweredPercent ({min_percent}%); it is asked again later. A longer \
             spec.preview.maxWaitTime lets slow endpoints answer"
        )
    })
}

/// What the preview asks `endpoints`: the targets' filter exactly as `actionPerform` is given it (the same
/// [`wire::targets`]), AND the platforms as `OS Platform` comparisons (`actionPerform` takes them as a field of
/// its own), or the listed ids.
pub fn query(targets: &gateway::Targets) -> EndpointQuery {
    let platforms = (!targets.platforms.is_empty()).then(|| {
        Filter::any(
            targets
                .platforms
                .iter()
                .map(|p| Filter::sensor("OS Platform", FilterOp::Eq, p.as_str()))
                .collect(),
        )
    });
    let (filter, ids) = targets.target.clone().into_query();
    let filter = match (filter, platforms) {
        (Some(f), Some(p)) => Some(Filter::all(vec![f, p])),
        (f, p) => f.or(p),
    };
    EndpointQuery {
        filter,
        page_size: if ids.is_empty() {
            SAMPLE_SIZE
        } else {
            ids.len() as u32
        },
        ids,
        ..EndpointQuery::default()
    }
}

/// Ask the Gateway which endpoints the targets select: where it is read is [`choose`]n first (one `sensors`
/// request when `Auto` meets a sensor), then one request for a filter, one for a list of ids.
pub async fn find(
    gateway: &GatewayClient,
    targets: &Targets,
    settings: &PreviewSettings,
) -> Result<Found, GatewayError> {
    let targets = wire::targets(targets).map_err(GatewayError::InvalidRequest)?;
    let mut query = query(&targets);
    let used = query
        .filter
        .as_ref()
        .map(Filter::sensors)
        .unwrap_or_default();
    let catalog = if settings.source == PreviewSource::Auto && !used.is_empty() {
        let names: Vec<&str> = used.iter().map(|s| s.name.as_str()).collect();
        match gateway.sensors_named(&names).await {
            Ok(c) => Some(c),
            // Without the catalog the preview asks live: slower, never wrong for want of a collected sensor.
            Err(e) if e.is_retryable() || matches!(e, GatewayError::TokenRejected { .. }) => {
                return Err(e);
            }
            Err(e) => {
                tracing::info!(error = %e, "sensor catalog unreadable; previewing live");
                None
            }
        }
    } else {
        None
    };
    let source = choose(settings, &used, catalog.as_deref());
    let live = source.read == PreviewRead::Live;
    if live {
        query.live = Some(LiveSource {
            expected_count: None,
            stable_wait_time: None,
            max_wait_time: settings.max_wait_time,
        });
    }
    let ids = &query.ids;
    let page = gateway.endpoints_page(&query, None).await?;
    let unknown_ids = ids
        .iter()
        .filter(|id| !page.endpoints.iter().any(|e| &e.id == *id))
        .cloned()
        .collect();
    Ok(Found {
        count: page.total,
        sample: page
            .endpoints
            .into_iter()
            .take(SAMPLE_SIZE as usize)
            .map(|e| EndpointSample {
                id: e.id.0,
                name: e.name,
            })
            .collect(),
        unknown_ids,
        source,
        answered: page.responded.filter(|_| live),
        expected: page.expected.filter(|_| live),
    })
}

/// A digest of what would be deployed (`intent`: the deployment-defining spec) to how many endpoints. The
/// approval annotation must carry it; when either changes, a new approval is needed.
pub fn digest(intent: &impl Serialize, count: u64) -> String {
    let mut hasher = Sha256::new();
    // serde_json writes struct fields in declaration order: stable for a given operator version.
    hasher.update(serde_json::to_vec(intent).unwrap_or_default());
    hasher.update(count.to_be_bytes());
    let bytes = hasher.finalize();
    let hex: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The digest of a TaniumAction: what defines its deployment (package, targets, schedule) and the preview's count.
/// The controller's approval gate and `tanium-operator preview` both call this, so the digest a person copies from
/// the CLI is the one the controller expects in the annotation.
pub fn action_digest(spec: &TaniumActionSpec, count: u64) -> String {
    let intent = serde_json::json!({
        "package": spec.package,
        "targets": spec.targets,
        "schedule": spec.schedule,
    });
    digest(&intent, count)
}

/// The command that approves a preview. Without a namespace it names none, so kubectl uses the current context's
/// (where an unqualified manifest is applied, too).
pub fn approve_command(name: &str, namespace: Option<&str>, digest: &str) -> String {
    approve_command_for("taniumaction", name, namespace, digest)
}

/// [`approve_command`] for an object of another kind (`resource`: kubectl's name for it, e.g. `taniumtag`).
pub fn approve_command_for(
    resource: &str,
    name: &str,
    namespace: Option<&str>,
    digest: &str,
) -> String {
    let ns = namespace
        .filter(|ns| !ns.is_empty())
        .map(|ns| format!(" -n {ns}"))
        .unwrap_or_default();
    format!(
        "kubectl annotate {resource} {name}{ns} --overwrite {APPROVED_PREVIEW_ANNOTATION}={digest}"
    )
}

impl Found {
    pub fn into_preview(self, digest: String) -> Preview {
        Preview {
            count: self.count,
            source: Some(self.source.read),
            source_reason: Some(self.source.reason),
            answered: self.answered,
            expected: self.expected,
            sample: self.sample,
            digest,
            observed_at: Time(jiff::Timestamp::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_changes_with_intent_and_count() {
        let a = digest(&("pkg", ["x"]), 5);
        assert_eq!(a, digest(&("pkg", ["x"]), 5));
        assert_ne!(a, digest(&("pkg", ["y"]), 5));
        assert_ne!(a, digest(&("pkg", ["x"]), 6));
        assert!(a.starts_with("sha256:") && a.len() == 7 + 16);
    }

    fn spec(yaml: &str) -> TaniumActionSpec {
        serde_yaml_ng::from_str(yaml).expect("spec")
    }

    #[test]
    fn action_digest_covers_the_deployment_not_the_safety_settings() {
        let base = spec(
            "package: {name: Custom Tagging - Add Tags, params: [x]}\n\
             targets: {filter: {sensor: {name: OS Platform}, op: EQ, value: Linux}}\n",
        );
        let d = action_digest(&base, 3);
        // Pinned: a change here invalidates every approval annotation already written by people.
        assert_eq!(d, "sha256:a997ee644274fd3b");
        let mut safer = base.clone();
        safer.safety.max_targets = Some(1);
        safer.safety.require_preview_approval = true;
        assert_eq!(
            action_digest(&safer, 3),
            d,
            "safety may change without a new approval"
        );
        let mut other = base.clone();
        other.package.params = vec!["y".into()];
        assert_ne!(action_digest(&other, 3), d);
        assert_ne!(action_digest(&base, 4), d);
    }

    #[test]
    fn approve_command_names_the_namespace_when_known() {
        assert_eq!(
            approve_command("a", Some("ns"), "sha256:1"),
            "kubectl annotate taniumaction a -n ns --overwrite tanium-operator.dev/approved-preview=sha256:1"
        );
        assert_eq!(
            approve_command("a", None, "sha256:1"),
            "kubectl annotate taniumaction a --overwrite tanium-operator.dev/approved-preview=sha256:1"
        );
    }

    fn info(name: &str, harvested: bool, age: Option<u64>) -> SensorInfo {
        SensorInfo {
            name: name.into(),
            harvested,
            max_age_seconds: age,
            parameterizations: Vec::new(),
        }
    }

    fn sensor(name: &str) -> SensorRef {
        SensorRef {
            name: name.into(),
            column: None,
            params: Vec::new(),
        }
    }

    #[test]
    fn auto_reads_the_cache_only_where_it_holds_fresh_readings() {
        let auto = PreviewSettings::default();
        let platform = sensor("OS Platform");
        let md5 = sensor("Running Processes with MD5 Hash");
        let catalog = vec![
            info("os platform", true, Some(600)),
            info("Running Processes with MD5 Hash", false, Some(600)),
            info("Custom Tags", true, Some(3600)),
        ];
        let read = |used: &[&SensorRef], c: Option<&[SensorInfo]>| choose(&auto, used, c).read;
        assert_eq!(read(&[], None), PreviewRead::Cached);
        assert_eq!(read(&[&platform], Some(&catalog)), PreviewRead::Cached);
        let why = choose(&auto, &[&platform, &md5], Some(&catalog));
        assert_eq!(why.read, PreviewRead::Live);
        assert!(why.reason.contains("does not collect"), "{why:?}");
        let stale = choose(&auto, &[&sensor("Custom Tags")], Some(&catalog));
        assert_eq!(stale.read, PreviewRead::Live);
        assert!(stale.reason.contains("3600 s old"), "{stale:?}");
        assert_eq!(
            read(&[&sensor("Unheard Of")], Some(&catalog)),
            PreviewRead::Live
        );
        assert_eq!(
            read(&[&platform], None),
            PreviewRead::Live,
            "no catalog: ask live"
        );
        let patient = PreviewSettings {
            max_reading_age: 3600,
            ..auto
        };
        assert_eq!(
            choose(&patient, &[&sensor("Custom Tags")], Some(&catalog)).read,
            PreviewRead::Cached
        );
        for (source, read) in [
            (PreviewSource::Live, PreviewRead::Live),
            (PreviewSource::Cached, PreviewRead::Cached),
        ] {
            let told = PreviewSettings { source, ..auto };
            assert_eq!(choose(&told, &[&md5], Some(&catalog)).read, read);
            assert_eq!(choose(&told, &[], None).read, read);
        }
    }

    fn found(read: PreviewRead, answered: Option<u64>, expected: Option<u64>) -> Found {
        Found {
            count: 3,
            sample: Vec::new(),
            unknown_ids: Vec::new(),
            source: Choice {
                read,
                reason: String::new(),
            },
            answered,
            expected,
        }
    }

    #[test]
    fn a_live_preview_counts_only_when_enough_endpoints_answered() {
        let live = |a, e| found(PreviewRead::Live, Some(a), Some(e));
        assert_eq!(incomplete(&live(10, 10), 100), None);
        assert!(incomplete(&live(9, 10), 100).is_some_and(|m| m.contains("9 of 10")));
        assert_eq!(incomplete(&live(95, 100), 95), None);
        assert!(incomplete(&live(94, 100), 95).is_some());
        assert_eq!(
            incomplete(&live(0, 0), 100),
            None,
            "nothing expected, nothing missing"
        );
        assert!(incomplete(&found(PreviewRead::Live, None, None), 100).is_some());
        assert_eq!(
            incomplete(&found(PreviewRead::Cached, None, None), 100),
            None
        );
    }
}
