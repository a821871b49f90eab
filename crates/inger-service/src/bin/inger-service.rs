//! The service: `inger-service [--mode MODE] [--budget 20ms] [--port 8080] ...`; see `--help`.

use std::process::ExitCode;

use inger_service::budget::Budget;
use inger_service::cli::{Args, parse, parse_duration};
use inger_service::protect::{Mode, process};
use inger_service::server::{Config, Server};

const HELP: &str = "\
inger-service: an HTTP service whose requests each get a CPU budget (loopback only)

  --mode MODE        none | tokio-timeout | blocking-timeout | process | inger   (default inger)
  --budget DURATION  CPU budget of a request, e.g. 20ms                        (default 20ms)
  --slice DURATION   inger: slice a request runs before yielding its thread    (default 1ms)
  --grace DURATION   inger: time to reach a cancellation point and unwind      (default 5ms)
  --port PORT        port on 127.0.0.1; 0 picks a free one                     (default 8080)
  --workers N        async worker threads                                      (default 2)
  --processes N      process: worker processes                                 (default 4)

Endpoints: POST /thumbnail (PNG or JPEG), POST /grep (pattern on the first line, then the
text), POST /json, GET /metrics (Prometheus), GET /health. Over-budget requests get 503.
Prints `listening on http://127.0.0.1:PORT` once ready; stops on SIGINT or SIGTERM.
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("inger-service: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = Args::parse(std::env::args().skip(1), &["help", "worker"])?;
    if args.flag("help") {
        print!("{HELP}");
        return Ok(());
    }
    if args.flag("worker") {
        return process::serve_worker().map_err(|error| format!("worker: {error}"));
    }
    let defaults = Budget::default();
    let mode = args.value("mode", Mode::Inger, parse)?;
    let budget = Budget {
        cpu: args.value("budget", defaults.cpu, parse_duration)?,
        slice: args.value("slice", defaults.slice, parse_duration)?,
        grace: args.value("grace", defaults.grace, parse_duration)?,
    };
    let port = args.value("port", 8080u16, parse)?;
    let workers = args.value("workers", 2usize, parse)?;
    let processes = args.value("processes", 4usize, parse)?;
    args.finish()?;
    if budget.cpu.is_zero() || budget.slice.is_zero() {
        return Err("--budget and --slice must be more than zero".into());
    }
    let program = std::env::current_exe().map_err(|error| format!("own executable: {error}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .map_err(|error| format!("tokio runtime: {error}"))?;
    runtime.block_on(async {
        let mut config = Config::new(mode, program);
        config.budget = budget;
        config.port = port;
        config.processes = processes;
        let server = Server::start(config)
            .await
            .map_err(|error| format!("cannot start on port {port}: {error}"))?;
        println!(
            "listening on http://{} (mode {mode}, budget {:?}, {workers} workers)",
            server.address(),
            budget.cpu
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|error| format!("SIGTERM handler: {error}"))?;
        tokio::select! {
            _ = server.run() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        Ok::<(), String>(())
    })?;
    // Abandoned blocking threads may still be running: do not wait for them.
    runtime.shutdown_background();
    Ok(())
}
