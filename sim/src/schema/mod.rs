//! The sim's GraphQL schema: a subset of the Gateway's, with exactly its names.

mod inputs;
mod mutation;
mod objects;
mod query;
mod scalars;

use async_graphql::{EmptySubscription, Schema};

use crate::config::Generation;

pub use inputs::{FilterInput, parse_filter};
pub use mutation::Mutation;
pub(crate) use mutation::RequestInfo;
pub use query::Query;

pub type GatewaySchema = Schema<Query, Mutation, EmptySubscription>;

pub(crate) fn build(sim: crate::Sim, generation: Generation) -> GatewaySchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .data(sim)
        .data(generation)
        .finish()
}

/// Does this sim play a Gateway that has the newer fields? (Also the `visible` condition that keeps them out of an
/// older Gateway's introspection.)
pub(crate) fn newer(ctx: &async_graphql::Context<'_>) -> bool {
    ctx.data::<Generation>()
        .map_or(true, |g| *g == Generation::Current)
}

/// What an older Gateway answers for a field it does not have.
pub(crate) fn absent(field: &str, on: &str) -> async_graphql::Error {
    async_graphql::Error::new(format!("Cannot query field \"{field}\" on type \"{on}\"."))
}

/// The sim's schema as SDL.
pub fn schema_sdl() -> String {
    Schema::build(Query, Mutation, EmptySubscription)
        .finish()
        .sdl()
}
