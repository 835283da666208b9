//! The preview the Tanium console forces before an action goes out: how many endpoints, which ones (a sample),
//! and a digest that a person approves.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::crd::{EndpointSample, Preview, Targets};
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

/// Ask the Gateway which endpoints the targets select: one request for a filter, one for a list of ids.
pub async fn find(gateway: &GatewayClient, targets: &Targets) -> Result<Found, GatewayError> {
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
    let query = EndpointQuery {
        filter,
        page_size: if ids.is_empty() {
            SAMPLE_SIZE
        } else {
            ids.len() as u32
        },
        ids: ids.clone(),
        ..EndpointQuery::default()
    };
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
}
