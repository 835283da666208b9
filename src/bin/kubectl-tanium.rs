//! `kubectl tanium`: see `tanium_operator::plugin`. Install with `cargo install --path . --bin kubectl-tanium`
//! (or put the binary anywhere on PATH); kubectl finds it by its name.

use clap::Parser as _;
use tanium_operator::plugin::{Plugin, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Plugin::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubectl tanium: {e}");
            e.exit_code()
        }
    }
}
