//! The load generator: `inger-load [--quick] [--modes none,inger] [--plot latency.svg] ...`;
//! see `--help` and the crate README.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use inger_service::budget::Budget;
use inger_service::cli::{Args, parse, parse_duration};
use inger_service::client::Client;
use inger_service::load::process::ServiceProcess;
use inger_service::load::report::{self, Row};
use inger_service::load::{self as load, Bodies, Plan};
use inger_service::protect::Mode;

const HELP: &str = "\
inger-load: runs inger-service in each mode under the same open-loop load (loopback only)
and prints benign latency, throughput, hostile requests stopped, CPU after deadlines, RSS.

  --modes LIST       modes to run, comma-separated            (default: all five)
  --requests N       requests per run                         (default 3000; --quick: 1500)
  --rate R           mean arrivals per second (Poisson)       (default 100)
  --hostile SHARE    share of hostile requests, e.g. 0.01     (default 0.01)
  --no-baseline      skip the runs without hostile requests (none and inger at 0 %)
  --budget, --slice, --grace DURATION   passed to the service (defaults 20ms, 1ms, 5ms)
  --workers N        service worker threads                   (default 2)
  --processes N      service worker processes, process mode   (default 4)
  --timeout DURATION client timeout per request               (default 5s)
  --seed N           schedule seed                            (default 1)
  --plot FILE        also write an SVG of benign latency over time
  --metrics-dir DIR  also write each run's final /metrics page to DIR/MODE-SHARE.prom
  --service PATH     an inger-service executable to test      (default: this program)
  --address ADDR     instead, send one run to a service already listening on this
                     loopback address (its mode is read from its /metrics)
";

fn main() -> ExitCode {
    // The service under test is this same program, started with `--serve` (and its `process`
    // mode workers with `--worker`), unless `--service` names another executable.
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--serve") => {
            args.remove(0);
            inger_service::cli::service_main(args)
        }
        Some("--worker") => inger_service::cli::service_main(args),
        _ => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("inger-load: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut args = Args::parse(args, &["help", "quick", "no-baseline"])?;
    if args.flag("help") {
        print!("{HELP}");
        return Ok(());
    }
    let quick = args.flag("quick");
    let no_baseline = args.flag("no-baseline");
    let modes = args.value("modes", Mode::ALL.to_vec(), |list| {
        list.split(',').map(|name| name.trim().parse()).collect()
    })?;
    let defaults = Budget::default();
    let budget = Budget {
        cpu: args.value("budget", defaults.cpu, parse_duration)?,
        slice: args.value("slice", defaults.slice, parse_duration)?,
        grace: args.value("grace", defaults.grace, parse_duration)?,
    };
    let plan = Plan {
        requests: args.value("requests", if quick { 1500 } else { 3000 }, parse)?,
        rate: args.value("rate", 100.0, parse)?,
        hostile_share: args.value("hostile", 0.01, parse)?,
        seed: args.value("seed", 1, parse)?,
        timeout: args.value("timeout", Duration::from_secs(5), parse_duration)?,
        max_in_flight: 1000,
    };
    let workers = args.value("workers", 2usize, parse)?;
    let processes = args.value("processes", 4usize, parse)?;
    let plot = args.value("plot", None, |path| Ok(Some(PathBuf::from(path))))?;
    let metrics_dir = args.value("metrics-dir", None, |path| Ok(Some(PathBuf::from(path))))?;
    let service = args.value("service", None, |path| Ok(Some(PathBuf::from(path))))?;
    let address: Option<std::net::SocketAddr> =
        args.value("address", None, |text| parse(text).map(Some))?;
    args.finish()?;
    if plan.rate.is_nan() || plan.rate <= 0.0 || !(0.0..=1.0).contains(&plan.hostile_share) {
        return Err("--rate must be positive and --hostile within 0..=1".into());
    }
    if let Some(address) = address {
        if !address.ip().is_loopback() {
            return Err(format!("{address} is not a loopback address"));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("tokio runtime: {error}"))?;
        let bodies = Bodies::standard();
        let row = runtime.block_on(one_run(
            Target::Address(address),
            Mode::Inger,
            budget,
            &plan,
            &bodies,
        ));
        print!("{}", report::table(&[row]));
        return Ok(());
    }
    let (service, service_args) = match service {
        Some(path) => (path, Vec::new()),
        None => (
            std::env::current_exe().map_err(|error| format!("own executable: {error}"))?,
            vec!["--serve".to_string()],
        ),
    };
    if !service.exists() {
        return Err(format!("{} not found", service.display()));
    }

    let mut runs: Vec<(Mode, f64)> = Vec::new();
    if !no_baseline && plan.hostile_share > 0.0 {
        for mode in [Mode::None, Mode::Inger] {
            if modes.contains(&mode) || mode == Mode::None {
                runs.push((mode, 0.0));
            }
        }
    }
    runs.extend(modes.iter().map(|&mode| (mode, plan.hostile_share)));

    let seconds = plan.requests as f64 / plan.rate;
    eprintln!(
        "inger-load: {} runs of {} requests at {}/s (about {seconds:.0} s each, at most {:.0} s), budget {:?}, {workers} workers",
        runs.len(),
        plan.requests,
        plan.rate,
        seconds + plan.timeout.as_secs_f64() + 5.0,
        budget.cpu
    );
    let bodies = Bodies::standard();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("tokio runtime: {error}"))?;
    let mut rows = Vec::new();
    for (mode, hostile_share) in runs {
        let plan = Plan {
            hostile_share,
            ..plan.clone()
        };
        let process =
            ServiceProcess::start(&service, &service_args, mode, budget, workers, processes)
                .map_err(|error| format!("starting {}: {error}", service.display()))?;
        let row = runtime.block_on(one_run(
            Target::Process(&process),
            mode,
            budget,
            &plan,
            &bodies,
        ));
        process.stop();
        eprintln!("inger-load: {} done", row.label());
        if let (Some(dir), Some(page)) = (&metrics_dir, &row.metrics) {
            let path = dir.join(format!("{mode}-{}.prom", hostile_share * 100.0));
            std::fs::write(&path, page).map_err(|error| format!("{}: {error}", path.display()))?;
        }
        rows.push(row);
    }

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .map(|line| line.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "# inger-load: {} requests per run at {}/s (Poisson), {} % hostile, budget {:?} (slice {:?}, grace {:?}), {workers} service workers, {processes} worker processes, CPU: {cpu} ({} cores)",
        plan.requests,
        plan.rate,
        plan.hostile_share * 100.0,
        budget.cpu,
        budget.slice,
        budget.grace,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!();
    print!("{}", report::table(&rows));
    println!();
    print!("{}", report::targets(&rows));
    if let Some(path) = plot {
        let svg = inger_service::load::plot::svg(&rows, plan.timeout);
        std::fs::write(&path, svg).map_err(|error| format!("{}: {error}", path.display()))?;
        eprintln!("inger-load: wrote {}", path.display());
    }
    Ok(())
}

/// The service a run is sent to.
enum Target<'a> {
    /// One this program started (its resident set and CPU time are read from /proc).
    Process(&'a ServiceProcess),
    /// One already listening (only its /metrics is read).
    Address(std::net::SocketAddr),
}

impl Target<'_> {
    fn address(&self) -> std::net::SocketAddr {
        match self {
            Target::Process(process) => process.address(),
            Target::Address(address) => *address,
        }
    }

    fn cpu_time(&self) -> Duration {
        match self {
            Target::Process(process) => process.cpu_time(),
            Target::Address(_) => Duration::ZERO,
        }
    }

    fn resident_bytes(&self) -> u64 {
        match self {
            Target::Process(process) => process.resident_bytes(),
            Target::Address(_) => 0,
        }
    }
}

async fn one_run(
    process: Target<'_>,
    mut mode: Mode,
    budget: Budget,
    plan: &Plan,
    bodies: &Bodies,
) -> Row {
    let client = Client::new(process.address());
    // Warm-up: one of each benign request, so first-use costs are not in the figures.
    let warm = Plan {
        requests: 8,
        rate: 50.0,
        hostile_share: 0.0,
        ..plan.clone()
    };
    let _ = load::drive(&client, &warm, bodies).await;
    let cpu_before = process.cpu_time();
    let started = Instant::now();
    let mut rss_over_time = Vec::new();
    let samples = {
        let drive = load::drive(&client, plan, bodies);
        tokio::pin!(drive);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                samples = &mut drive => break samples,
                _ = tick.tick() => rss_over_time.push((started.elapsed().as_secs_f64(), process.resident_bytes())),
            }
        }
    };
    let rss_end = process.resident_bytes();
    let server_cpu = process.cpu_time().saturating_sub(cpu_before);
    let metrics = match tokio::time::timeout(Duration::from_secs(3), client.get("/metrics")).await {
        Ok(Ok(answer)) if answer.status == 200 => {
            Some(String::from_utf8_lossy(&answer.body).into_owned())
        }
        _ => None,
    };
    rss_over_time.push((started.elapsed().as_secs_f64(), rss_end));
    if let (Target::Address(_), Some(page)) = (&process, &metrics)
        && let Some(named) = Mode::ALL.into_iter().find(|m| {
            inger_service::metrics::sample(page, &format!("inger_service_info{{mode=\"{m}\"}}"))
                .is_some()
        })
    {
        mode = named;
    }
    Row {
        mode,
        hostile_share: plan.hostile_share,
        budget: budget.cpu,
        samples,
        metrics,
        rss_end,
        rss_over_time,
        server_cpu,
    }
}
