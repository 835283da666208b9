//! The preview the Tanium console forces before an action goes out: how many endpoints, which ones (a sample),
//! and a digest that a person approves.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::crd::{APPROVED_PREVIEW_ANNOTATION, EndpointSample, Preview, TaniumActionSpec, Targets};
use crate::gateway::endpoints::EndpointQuery;
use crate::gateway::{EndpointId, Filter, FilterOp, GatewayClient, GatewayError};

/// Endpoints shown in status; the count covers the rest.
pub const SAMPLE_SIZE: u32 = 10;

/// What the preview found, before a digest is attached.
pub struct Found {
    pub count: u64,
    pub sample: Vec<EndpointSample>,
    /// Listed endpoint ids the Gateway does not know.
    pub unknown_ids: Vec<EndpointId>,
}

/// What the preview asks `endpoints`: the targets' filter exactly as `actionPerform` is given it
/// ([`Targets::to_gateway`]), AND the platforms as `OS Platform` comparisons (`actionPerform` takes them as a
/// field of its own), or the listed ids.
pub fn query(targets: &Targets) -> EndpointQuery {
    let platforms = (!targets.platforms.is_empty()).then(|| {
        Filter::any(
            targets
                .platforms
                .iter()
                .map(|p| Filter::sensor("OS Platform", FilterOp::Eq, p.as_str()))
                .collect(),
        )
    });
    let filter = match (&targets.filter, platforms) {
        (Some(f), Some(p)) => Some(Filter::all(vec![f.clone(), p])),
        (f, p) => f.clone().or(p),
    };
    let ids = targets.endpoints.clone().unwrap_or_default();
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

/// Ask the Gateway which endpoints the targets select: one request for a filter, one for a list of ids.
pub async fn find(gateway: &GatewayClient, targets: &Targets) -> Result<Found, GatewayError> {
    let query = query(targets);
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
    let ns = namespace
        .filter(|ns| !ns.is_empty())
        .map(|ns| format!(" -n {ns}"))
        .unwrap_or_default();
    format!(
        "kubectl annotate taniumaction {name}{ns} --overwrite {APPROVED_PREVIEW_ANNOTATION}={digest}"
    )
}

impl Found {
    pub fn into_preview(self, digest: String) -> Preview {
        Preview {
            count: self.count,
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
}
