//! What a connection keeps of its token's rotation, between steps and across changes of leader within the process:
//! read by the objects using it (`GatewayToken`) and by the connection's own status; written by the rotation
//! (`super`). It imports nothing of the controllers, so that a `Connection` can hold it.

use std::sync::atomic::Ordering;

use secrecy::{ExposeSecret as _, SecretString};

use crate::crd::Reason;
use crate::gateway::tokens::RotatedToken;

pub fn fingerprint(token: &SecretString) -> String {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(token.expose_secret().as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// What rotation knows between steps and across changes of leader within the process.
#[derive(Default)]
pub struct RotationState {
    /// While set, every object carries `GatewayToken=False` with it.
    trouble: std::sync::Mutex<Option<TokenTrouble>>,
    /// A rotated token the Secret has not taken yet: it exists nowhere else.
    unsaved: std::sync::Mutex<Option<Unsaved>>,
    /// Rotations that failed in a row (a rotation not due, or one that succeeded, resets it).
    pub(super) failures: std::sync::atomic::AtomicU32,
    /// A rotation keeps this token now: it alone hands the client a token (it reads the Secret on every look, and
    /// knows when the client's token is newer than the Secret's).
    pub(super) active: std::sync::atomic::AtomicBool,
}

impl RotationState {
    pub fn trouble(&self) -> Option<TokenTrouble> {
        self.trouble.lock().ok().and_then(|t| t.clone())
    }

    /// Whether a rotation keeps this token now.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// What needs a person now (`None`: nothing).
    pub fn set_trouble(&self, trouble: Option<TokenTrouble>) {
        if let Ok(mut t) = self.trouble.lock() {
            *t = trouble;
        }
    }

    /// Take over what `before` (the rotation of the same token, now stopped) left: a new token not yet written
    /// to the Secret must not be lost with the connection it was made for.
    pub fn take_over(&self, before: &RotationState) {
        if let Some(u) = before.take_unsaved() {
            self.keep_unsaved(u);
        }
    }

    pub(super) fn holds_unsaved(&self) -> bool {
        self.unsaved.lock().is_ok_and(|u| u.is_some())
    }

    pub(super) fn take_unsaved(&self) -> Option<Unsaved> {
        self.unsaved.lock().ok().and_then(|mut u| u.take())
    }

    pub(super) fn keep_unsaved(&self, u: Unsaved) {
        if let Ok(mut slot) = self.unsaved.lock() {
            *slot = Some(u);
        }
    }
}

/// Say `trouble` as the `GatewayToken` condition (False, while a person must act), or remove it: on every object
/// using the connection and on the connection object itself.
pub fn say_trouble(
    conditions: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    trouble: Option<TokenTrouble>,
    generation: Option<i64>,
) {
    match trouble {
        Some(t) => crate::crd::set_condition(
            conditions,
            crate::crd::condition::GATEWAY_TOKEN,
            false,
            t.reason.as_str(),
            t.message,
            generation,
        ),
        None => conditions.retain(|c| c.type_ != crate::crd::condition::GATEWAY_TOKEN),
    }
}

/// What the objects' `GatewayToken` condition says while something needs a person (see `mark_operator_conditions`).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenTrouble {
    pub reason: Reason,
    pub message: String,
}

/// A rotated token not yet in the Secret, and the one it replaced. Held in the `Context`, so that it outlives a
/// change of leader within the process.
pub struct Unsaved {
    pub(super) rotated: RotatedToken,
    pub(super) old: SecretString,
}
