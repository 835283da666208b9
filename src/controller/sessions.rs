//! The Direct Connect connections TaniumEndpointInspections keep open between refreshes: held by the process, not
//! by an object, so that deletion, a failed refresh and shutdown can each close what is open.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::gateway::{DirectConnection, GatewayClient};

/// Direct Connect connections kept open between refreshes, by object uid. Closed on deletion and when the
/// controllers stop.
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<String, DirectConnection>>);

impl Sessions {
    pub(super) fn get(&self, uid: &str) -> Option<DirectConnection> {
        self.0.lock().ok()?.get(uid).cloned()
    }

    pub(super) fn put(&self, uid: &str, conn: DirectConnection) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(uid.to_owned(), conn);
        }
    }

    pub(super) fn take(&self, uid: &str) -> Option<DirectConnection> {
        self.0.lock().ok()?.remove(uid)
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Close one object's connection, if it has one. A failure is logged: the Gateway drops idle connections
    /// anyway.
    pub async fn close(&self, gateway: &GatewayClient, uid: &str) {
        if let Some(conn) = self.take(uid) {
            close_quietly(gateway, &conn).await;
        }
    }

    /// Close every connection (the controllers are stopping).
    pub async fn close_all(&self, gateway: &GatewayClient) {
        let all: Vec<DirectConnection> = match self.0.lock() {
            Ok(mut s) => s.drain().map(|(_, c)| c).collect(),
            Err(_) => return,
        };
        if !all.is_empty() {
            tracing::info!(
                connections = all.len(),
                "closing Direct Connect connections"
            );
        }
        futures::future::join_all(all.iter().map(|c| close_quietly(gateway, c))).await;
    }
}

async fn close_quietly(gateway: &GatewayClient, conn: &DirectConnection) {
    match gateway.dc_close(conn).await {
        Ok(_) => {
            tracing::debug!(connection = %conn.id, endpoint = %conn.endpoint, "connection closed")
        }
        Err(e) => {
            tracing::info!(connection = %conn.id, error = %e, "cannot close connection; it idles out")
        }
    }
}
