//! The client's GraphQL documents against the real Gateway schema (`src/gateway/schema.graphql`, a copy of
//! `../shared/reference/gateway-schema.graphql`).

use apollo_compiler::{ExecutableDocument, Schema};
use tanium_operator::gateway::{
    self,
    poll::{Polled, batch_poll_document},
};

fn schema() -> apollo_compiler::validation::Valid<Schema> {
    Schema::parse_and_validate(gateway::SCHEMA, "gateway-schema.graphql")
        .expect("reference schema is valid")
}

#[test]
fn schema_copy_matches_the_shared_reference() {
    let reference = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/gateway-schema.graphql");
    match std::fs::read_to_string(&reference) {
        Ok(text) => assert_eq!(
            text,
            gateway::SCHEMA,
            "src/gateway/schema.graphql differs from {}; copy it over",
            reference.display()
        ),
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "SKIPPED: {} not readable ({e}); CI checks it",
                reference.display()
            );
        }
        Err(e) => panic!("{} must be readable in CI: {e}", reference.display()),
    }
}

#[test]
fn every_fixed_document_validates() {
    let schema = schema();
    let docs = gateway::documents();
    assert!(docs.len() >= 20, "only {} documents registered", docs.len());
    for (name, text) in docs {
        let doc = ExecutableDocument::parse_and_validate(&schema, text, format!("{name}.graphql"))
            .unwrap_or_else(|e| panic!("document {name} does not validate:\n{e}"));
        let op = doc
            .operations
            .get(Some(name))
            .unwrap_or_else(|_| panic!("document {name} has no operation called {name}"));
        assert_eq!(op.name.as_ref().map(|n| n.as_str()), Some(name));
    }
}

#[test]
fn batched_poll_documents_validate() {
    let schema = schema();
    for n in [1, 2, 17, 50] {
        // Action instances, and every third a scheduled action's newest instance (recurring actions).
        let polled: Vec<Polled> = (0..n)
            .map(|i| match i % 3 {
                2 => Polled::Schedule(gateway::ScheduledActionId(i.to_string())),
                _ => Polled::Action(gateway::ActionId(i.to_string())),
            })
            .collect();
        let text = batch_poll_document(&polled);
        ExecutableDocument::parse_and_validate(&schema, &text, "pollActions.graphql")
            .unwrap_or_else(|e| panic!("batch of {n} does not validate:\n{e}"));
        assert_eq!(
            text.matches(": action(ref:").count() + text.matches(": scheduledAction(ref:").count(),
            n
        );
        assert_eq!(text.matches(": scheduledAction(ref:").count(), n / 3);
    }
}

#[test]
fn validation_catches_a_wrong_field() {
    // Proves the check above can fail: a misspelt field and a wrong argument type are both refused.
    let schema = schema();
    let typo = "query q($id: ID!) { action(ref: {id: $id}) { statuss } }";
    assert!(ExecutableDocument::parse_and_validate(&schema, typo, "typo.graphql").is_err());
    let wrong_type = "query q($id: Int!) { action(ref: {id: $id}) { status } }";
    assert!(ExecutableDocument::parse_and_validate(&schema, wrong_type, "wrong.graphql").is_err());
}
