//! Running the operator as a replica among others: the controllers on their watches (`controllers`), leader
//! election with a fence for side effects (`lease`, `leader`), readiness, the token file, and shutdown.

pub mod controllers;
pub mod leader;
pub mod lease;
pub mod readiness;
pub mod token_file;

pub use controllers::run;

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        () = term => {},
    }
}
