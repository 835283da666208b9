pub mod cli;
pub mod controller;
pub mod crd;
pub mod gateway;
pub mod plugin;
pub mod runtime;
pub mod telemetry;
