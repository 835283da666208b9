pub mod cli;
pub mod controller;
pub mod crd;
/// Entry points for the fuzz targets in `fuzz/`: above every layer, since they drive the preview and the client.
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod plugin;
pub mod runtime;
pub mod telemetry;
