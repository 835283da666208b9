//! The events a reconcile (or a token rotation) raises about an object, published in one go when it is over.

use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::truncate;

/// The events one reconcile raises. They are published in order once the reconcile is over, so that no event write
/// stands between an object's change and the side effect it leads to (a deploy does not wait for its Reason::Previewed
/// event). Events are best effort: a failure to publish is logged, never fatal to the reconcile.
#[derive(Default)]
pub struct Events(Mutex<Vec<Event>>);

impl Events {
    pub fn raise(&self, warning: bool, reason: &str, note: String) {
        // Logged too, inside the reconcile's span: the log then tells an object's story without the apiserver's
        // events, which expire after an hour.
        if warning {
            tracing::warn!(reason, "{note}");
        } else {
            tracing::info!(reason, "{note}");
        }
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(truncate(note, 1000)),
            action: reason.into(),
            secondary: None,
        };
        if let Ok(mut queued) = self.0.lock() {
            queued.push(event);
        }
    }

    /// Through a recorder of its own: kube's `Recorder` keeps every event it published for six minutes, to count
    /// repeats into a series; ours raises an event only when something changed, so that cache only held memory
    /// (70 MB of a 108 MB heap with 10,000 TaniumActions, docs/performance.md).
    pub async fn publish(
        self,
        client: &kube::Client,
        reporter: &Reporter,
        object: &ObjectReference,
    ) {
        let queued = self.0.into_inner().unwrap_or_default();
        if queued.is_empty() {
            return;
        }
        let recorder = Recorder::new(client.clone(), reporter.clone());
        for event in queued {
            if let Err(e) = recorder.publish(&event, object).await {
                tracing::warn!(error = %e, reason = event.reason, "cannot publish event");
            }
        }
    }
}
