//! tanium-sim: a stateful simulator of the Tanium API Gateway (GraphQL over HTTP).
//!
//! [`start`] binds an HTTP server that answers `POST /plugin/products/gateway/graphql` like the
//! Gateway (a subset of its schema, see [`schema_sdl`]) and an admin API under `/admin/` for
//! tests: audit, faults, clock and fleet changes. State is driven by simulated time and is
//! deterministic from the fleet seed.

mod actions;
mod audit;
mod clock;
mod config;
mod det;
mod direct_connect;
mod faults;
mod filter;
mod fleet;
mod groups;
mod http;
mod packages;
mod paging;
mod records;
mod schema;
mod sensors;
mod state;

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use audit::{AuditEntry, AuditOutcome, RequestRecord};
pub use config::{
    AfterCommit, Faults, FleetSource, Generation, ListingModes, SimConfig, SourceModes, TokenUser,
};
pub use filter::{Filter, FilterError, GroupRef, Op, Subject, Target, compare, matches};
pub use fleet::{
    AlertSpec, EndpointSpec, Platform, ProcessSpec, SSHD_MD5, generate as generate_fleet,
};
pub use http::GRAPHQL_PATH;
pub use schema::{FilterInput, parse_filter, schema_sdl};
pub use state::Sim;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load fleet file {path}: {message}")]
    Fleet { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A running simulator; dropping it without [`SimServer::shutdown`] leaves the server running
/// until the runtime ends.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    sim: Sim,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl SimServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL; the GraphQL endpoint is at `{url}/plugin/products/gateway/graphql`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn graphql_url(&self) -> String {
        format!("{}{}", self.url(), GRAPHQL_PATH)
    }

    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Builds the state, binds and starts serving; returns as soon as the socket is bound.
pub async fn start(config: SimConfig) -> Result<SimServer, SimError> {
    if !(0.0..=1.0).contains(&config.action_failure_rate) {
        return Err(SimError::Config(format!(
            "action_failure_rate must be within 0..=1, got {}",
            config.action_failure_rate
        )));
    }
    if config.tokens.is_empty() {
        return Err(SimError::Config("at least one token is required".into()));
    }
    let fleet = match &config.fleet {
        FleetSource::Generated { size, seed } => fleet::generate(*size, *seed),
        FleetSource::File(path) => fleet::load_file(path)?,
    };
    let sim = Sim::new(state::State::new(&config, fleet));
    let schema = schema::build(sim.clone(), config.generation);
    let app = http::router(sim.clone(), schema);
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| SimError::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: config.bind,
        source,
    })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "tanium-sim server stopped with an error");
        }
    });
    tracing::info!(%addr, endpoints = sim.endpoint_count(), "tanium-sim started");
    Ok(SimServer {
        addr,
        sim,
        stop: Some(stop),
        task,
    })
}
