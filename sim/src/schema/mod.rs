//! The sim's GraphQL schema: a subset of the Gateway's, with exactly its names.

mod inputs;
mod mutation;
mod objects;
mod query;
mod scalars;

use async_graphql::{EmptySubscription, Schema};

pub use inputs::{FilterInput, parse_filter};
pub use mutation::Mutation;
pub(crate) use mutation::RequestInfo;
pub use query::Query;

pub type GatewaySchema = Schema<Query, Mutation, EmptySubscription>;

pub(crate) fn build(sim: crate::Sim) -> GatewaySchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .data(sim)
        .finish()
}

/// The sim's schema as SDL.
pub fn schema_sdl() -> String {
    Schema::build(Query, Mutation, EmptySubscription)
        .finish()
        .sdl()
}
