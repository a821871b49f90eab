//! The service: `inger-service [--mode MODE] [--budget 20ms] [--port 8080] ...`; see `--help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match inger_service::cli::service_main(std::env::args().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("inger-service: {message}");
            ExitCode::FAILURE
        }
    }
}
