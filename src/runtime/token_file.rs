//! The API token as a mounted file: read at start, re-read while running, so that a rotated Secret needs no
//! restart. The token itself is never logged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use crate::gateway::GatewayClient;

/// The token in `path`, trimmed.
pub fn read(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
}

/// Re-read the token file and hand a changed token to the client: a rotated Secret needs no restart. The token
/// itself is never logged.
pub async fn reload(path: PathBuf, loaded: String, gateway: GatewayClient, every: Duration) {
    // Start from what the client was built with: a rotation between that read and this task is not missed.
    let mut current = Some(loaded);
    loop {
        tokio::time::sleep(every).await;
        match read(&path) {
            Ok(token) if Some(&token) != current.as_ref() && !token.is_empty() => {
                gateway.set_token(SecretString::from(token.clone()));
                current = Some(token);
                tracing::info!(file = %path.display(), "API token reloaded");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read the API token file; keeping the current token")
            }
        }
    }
}
