//! The results poll: many action instances and scheduled actions' newest instances in one aliased document, and
//! what each alias said (a `null` is "not shown now", never "gone").

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::actions::{ACTION_FIELDS, ActionState, WireAction, WireLastAction};
use super::error::GatewayError;
use super::transport::{Document, GatewayClient, RawResponse, Repeat};
use super::{ActionId, ScheduledActionId, decode, parse_time};

/// Actions asked for in one batched poll (GraphQL aliases in one document).
pub const POLL_BATCH: usize = 50;

/// What a results poll reads: an action instance by id, or the newest instance of a scheduled action (a recurring
/// action gets a new instance at each reissue; a future start has none yet).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Polled {
    Action(ActionId),
    Schedule(ScheduledActionId),
}

impl Polled {
    /// The id the alias asks for (a variable of the document).
    pub fn id(&self) -> &str {
        match self {
            Self::Action(id) => &id.0,
            Self::Schedule(id) => &id.0,
        }
    }
}

/// The aliased poll document for `polled`, in order: `a0: action(ref: {id: $a0}) {...}`, or for a scheduled
/// action `a1: scheduledAction(ref: {id: $a1}) { lastAction {...} }`. Ids are variables; the text depends only on
/// which kind each alias reads.
pub fn batch_poll_document(polled: &[Polled]) -> String {
    let mut doc = String::from("query pollActions(");
    for i in 0..polled.len() {
        let _ = write!(doc, "{}$a{i}: ID!", if i == 0 { "" } else { ", " });
    }
    doc.push_str(") {\n  now\n");
    for (i, p) in polled.iter().enumerate() {
        let _ = match p {
            Polled::Action(_) => writeln!(
                doc,
                "  a{i}: action(ref: {{id: $a{i}}}) {{ ...ActionFields }}"
            ),
            Polled::Schedule(_) => writeln!(
                doc,
                "  a{i}: scheduledAction(ref: {{id: $a{i}}}) {{ lastAction {{ ...ActionFields }} }}"
            ),
        };
    }
    doc.push_str("}\n");
    doc.push_str(ACTION_FIELDS);
    doc
}

/// One read of the batched poll, as the Gateway answered it.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// `null`, or an error for this alias only: the Gateway does not show it now. Not "gone": an action may not be
    /// visible yet, or one field's failure reads the same; Tanium does not document when a read is null.
    Absent,
    /// The scheduled action is there and has no instance yet (a future start).
    NotIssued,
    /// The action instance (by id, or a scheduled action's newest).
    State(ActionState),
}

impl Read {
    pub fn state(&self) -> Option<&ActionState> {
        match self {
            Self::State(s) => Some(s),
            Self::Absent | Self::NotIssued => None,
        }
    }
}

type Batch = (Option<jiff::Timestamp>, Vec<(Polled, Read)>);

pub(crate) fn decode_batch(raw: RawResponse, polled: &[Polled]) -> Result<Batch, GatewayError> {
    let Some(mut data) = raw.data.filter(|d| d.is_object()) else {
        return Err(if raw.errors.is_empty() {
            GatewayError::Decode {
                operation: "pollActions",
                message: "no data in the answer".into(),
            }
        } else {
            GatewayError::GraphQl {
                operation: "pollActions",
                errors: raw.errors,
            }
        });
    };
    let now = parse_time(data.get("now").and_then(Value::as_str));
    // A per-alias error (an id the Gateway no longer knows) nulls that alias only; the rest are good.
    let states = polled
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let value = data
                .get_mut(format!("a{i}"))
                .map(Value::take)
                .unwrap_or(Value::Null);
            let read = match p {
                Polled::Action(_) => {
                    let state: Option<WireAction> = decode("pollActions", value)?;
                    state.map_or(Read::Absent, |s| Read::State(s.into()))
                }
                Polled::Schedule(_) => {
                    let scheduled: Option<WireLastAction> = decode("pollActions", value)?;
                    match scheduled {
                        None => Read::Absent,
                        Some(WireLastAction { last_action: None }) => Read::NotIssued,
                        Some(WireLastAction {
                            last_action: Some(s),
                        }) => Read::State(s.into()),
                    }
                }
            };
            Ok((p.clone(), read))
        })
        .collect::<Result<_, GatewayError>>()?;
    Ok((now, states))
}

impl GatewayClient {
    /// Many actions at once, `batch` per request (aliases in one document). `batch = 1` is the naive way.
    pub async fn actions(
        &self,
        ids: &[ActionId],
        batch: usize,
    ) -> Result<HashMap<ActionId, Option<ActionState>>, GatewayError> {
        let polled: Vec<Polled> = ids.iter().cloned().map(Polled::Action).collect();
        let (_, states) = self.poll(&polled, batch).await?;
        Ok(states
            .into_iter()
            .filter_map(|(p, read)| match p {
                Polled::Action(id) => Some((id, read.state().cloned())),
                Polled::Schedule(_) => None,
            })
            .collect())
    }

    /// Action instances and scheduled actions' newest instances, `batch` per request (aliases in one document),
    /// with the Gateway's clock as the last batch saw it (`None` for nothing polled).
    pub async fn poll(
        &self,
        polled: &[Polled],
        batch: usize,
    ) -> Result<(Option<jiff::Timestamp>, HashMap<Polled, Read>), GatewayError> {
        let mut now = None;
        let mut out = HashMap::with_capacity(polled.len());
        for chunk in polled.chunks(batch.clamp(1, POLL_BATCH)) {
            let doc = Document {
                operation: "pollActions",
                query: batch_poll_document(chunk).into(),
                repeat: Repeat::Safe,
                carries_token: false,
                send_by: None,
                server_wait: std::time::Duration::ZERO,
            };
            let variables: serde_json::Map<String, Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("a{i}"), json!(p.id())))
                .collect();
            let (at, states) = self
                .call(&doc, &Value::Object(variables), |raw| {
                    decode_batch(raw, chunk)
                })
                .await?;
            now = at.or(now);
            out.extend(states);
        }
        Ok((now, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_decoding_tolerates_one_unknown_id() {
        let raw: RawResponse = serde_json::from_value(json!({
            "data": {"a0": {"id": "1", "status": "OPEN", "stopped": false, "results": {"completed": 2}}, "a1": null,
                     "a2": {"lastAction": {"id": "9", "status": "OPEN", "stopped": false, "results": {"running": 1}}},
                     "a3": {"lastAction": null}},
            "errors": [{"message": "action not found", "path": ["a1"]}]
        }))
        .unwrap();
        let ids = [
            Polled::Action(ActionId::from("1")),
            Polled::Action(ActionId::from("2")),
            Polled::Schedule(ScheduledActionId::from("5")),
            Polled::Schedule(ScheduledActionId::from("6")),
        ];
        let (_, got) = decode_batch(raw, &ids).unwrap();
        assert_eq!(got[0].1.state().unwrap().results.completed, 2);
        assert_eq!(
            got[1].1,
            Read::Absent,
            "an errored alias is absent, not gone"
        );
        // A scheduled action answers with its newest instance; one not issued yet with none.
        let newest = got[2].1.state().unwrap();
        assert_eq!((newest.id.0.as_str(), newest.results.running), ("9", 1));
        assert_eq!(got[3].1, Read::NotIssued);
        let all_bad: RawResponse =
            serde_json::from_value(json!({"data": null, "errors": [{"message": "boom"}]})).unwrap();
        assert!(matches!(
            decode_batch(all_bad, &ids),
            Err(GatewayError::GraphQl { .. })
        ));
    }
}
