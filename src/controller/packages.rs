//! `packageSpecs`, cached for a few minutes: every object of a kind tends to name the same few packages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::gateway::{GatewayClient, GatewayError, PackageSpec};

/// Entries kept at most; a larger catalogue just refetches.
const MAX_ENTRIES: usize = 512;

pub struct PackageCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Option<PackageSpec>)>>,
}

impl PackageCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The package called `name`, or `None` when the Gateway has none (that answer is cached too).
    pub async fn get(
        &self,
        gateway: &GatewayClient,
        name: &str,
    ) -> Result<Option<PackageSpec>, GatewayError> {
        if let Ok(entries) = self.entries.lock()
            && let Some((at, spec)) = entries.get(name)
            && at.elapsed() < self.ttl
        {
            return Ok(spec.clone());
        }
        let spec = gateway.package_spec(name).await?;
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(name.to_owned(), (Instant::now(), spec.clone()));
        }
        Ok(spec)
    }
}
