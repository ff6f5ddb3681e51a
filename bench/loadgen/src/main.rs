//! `loadgen`: the streams benchmark of chatkit-gateway (run by `bench/bench_streams.sh`;
//! see bench/README.md).
//!
//! In one process: a fake OpenAI-compatible provider streaming stamped deltas, the gateway
//! (started here, pointed at the fake, or already running), N concurrent streamed turns
//! against it, and a sampler of the gateway's memory. With `--hang-up-fraction`, some
//! clients hang up mid-answer and the report says when the fake provider saw each of
//! their calls end ([`hangup`]). Prints a markdown report.
//! A benchmark, not a test: it reports, it never fails on slowness.

/// See Cargo.toml: the harness shares the machine with the gateway it measures.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod client;
mod clock;
mod hangup;
mod proc;
mod provider;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, ExitCode, Stdio},
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use anyhow::{bail, ensure, Context};
use clap::Parser;
use serde_json::Value;

use client::{percentile, Load, Protocol, Target};
use hangup::{hangs_up, Ledger};
use provider::Pacing;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Streams benchmark of chatkit-gateway: N concurrent streamed turns against a fake OpenAI provider"
)]
struct Args {
    /// Which endpoint streams the turns.
    #[arg(long, value_enum, default_value_t = Protocol::Rest)]
    protocol: Protocol,
    /// Concurrent streamed turns.
    #[arg(long, default_value_t = 5000)]
    streams: usize,
    /// Seconds over which the turns are started, evenly.
    #[arg(long, default_value_t = 5.0)]
    ramp: f64,
    /// Content deltas the fake provider streams per turn.
    #[arg(long, default_value_t = 50)]
    deltas: u32,
    /// Seconds over which those deltas are spread.
    #[arg(long, default_value_t = 10.0)]
    over: f64,
    /// Fraction of the clients (0 to 1, spread evenly: with 0.5 every other turn) that
    /// hang up mid-answer, after --hang-up-after-deltas deltas, as a browser's stop button
    /// does. The report then says, for each, how long after the hang-up the fake provider
    /// saw its call end, and how many calls were still open 1 s after.
    #[arg(long, default_value_t = 0.0)]
    hang_up_fraction: f64,
    /// Deltas a client that hangs up reads first (default: half of --deltas, so that with
    /// the default ramp every stream is open before the first hang-up).
    #[arg(long)]
    hang_up_after_deltas: Option<u32>,
    /// Once a call's client has hung up, the fake provider writes an SSE comment to it
    /// every this many ms (for up to 1.5 s), as a model streaming tokens writes: its
    /// HTTP/1.1 server sees a closed connection only by writing, at the second write after
    /// the close (0: never).
    #[arg(long, default_value_t = 20)]
    probe_ms: u64,
    /// Start this gateway binary (`<bin> serve`) pointed at the fake provider. Its
    /// environment is this process's (DATABASE_URL, APP_ENV, RUST_LOG, ...) plus
    /// AGENT_PROVIDER=openai, OPENAI_BASE_URL, OPENAI_API_KEY, HOST and PORT.
    #[arg(long, conflicts_with_all = ["base", "gateway_pid"])]
    gateway_bin: Option<PathBuf>,
    /// Port for the started gateway (default: a free one).
    #[arg(long)]
    gateway_port: Option<u16>,
    /// Where the started gateway's output goes (default: a file in the temp dir).
    #[arg(long)]
    gateway_log: Option<PathBuf>,
    /// Write the started gateway's pid here (so a wrapper can clean up after a crash).
    #[arg(long)]
    gateway_pid_file: Option<PathBuf>,
    /// An already running gateway (it must have been pointed at --provider-port).
    #[arg(long, requires = "gateway_pid")]
    base: Option<String>,
    /// The pid of that gateway, for its memory.
    #[arg(long, requires = "base")]
    gateway_pid: Option<u32>,
    /// The fake provider answers `Connection: close`: the gateway then holds no idle
    /// upstream connections after the load (its memory "after" shows what else remains).
    #[arg(long)]
    provider_close: bool,
    /// The fake provider serves `https` (ALPN h2 and http/1.1, the certificate of the
    /// project's test CA, which the started gateway is told to trust with
    /// `agent.openai.ca_file`), as hosted APIs do.
    #[arg(long)]
    provider_tls: bool,
    /// Port of the fake provider (0: any free one).
    #[arg(long, default_value_t = 0)]
    provider_port: u16,
    /// The client_secret to use; otherwise one is obtained from POST /api/chatkit/session.
    #[arg(long, env = "LOADGEN_CLIENT_SECRET")]
    client_secret: Option<String>,
    /// The upstream (Better Auth) token for that session; otherwise `<gateway-bin>
    /// dev-token --user bench`.
    #[arg(long, env = "LOADGEN_UPSTREAM_TOKEN")]
    upstream_token: Option<String>,
    /// Seconds of idle gateway before the load (the idle RSS is read at the end of it).
    #[arg(long, default_value_t = 2.0)]
    idle: f64,
    /// Seconds after the last stream ends before the "after" RSS is read.
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// A turn still open this many seconds after it started counts as timed out
    /// (default: --over + 60).
    #[arg(long)]
    timeout: Option<f64>,
    /// Keep the client connections to the gateway open between turns (by default each
    /// closes when its stream ends, as 5,000 separate clients would, so that the gateway's
    /// memory after the load is not held by idle keep-alive connections of this client).
    #[arg(long)]
    keep_alive: bool,
    /// Worker threads of this process (it shares the machine with the gateway).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// A word for the report's title (e.g. the database).
    #[arg(long, default_value = "")]
    label: String,
}

fn secs(s: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .with_context(|| format!("--{name} must be a number of seconds ≥ 0"))
}

/// The gateway this process started; stopped (TERM, then KILL) when dropped.
struct Gateway {
    child: Child,
    pid_file: Option<PathBuf>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            for _ in 0..150 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(f) = &self.pid_file {
            let _ = fs::remove_file(f);
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_gateway(
    args: &Args,
    bin: &PathBuf,
    provider_port: u16,
    log: &PathBuf,
) -> anyhow::Result<(Gateway, String)> {
    let port = match args.gateway_port {
        Some(p) => p,
        None => free_port()?,
    };
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("could not open {}", log.display()))?;
    let mut command = Command::new(bin);
    command
        .arg("serve")
        .env("AGENT_PROVIDER", "openai")
        .env(
            "OPENAI_BASE_URL",
            provider::base(args.provider_tls, provider_port),
        )
        .env("OPENAI_API_KEY", "fake")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    if args.provider_tls {
        command.env(
            "GATEWAY__AGENT__OPENAI__CA_FILE",
            format!("{}/ca.pem", provider::TLS_FIXTURES),
        );
    }
    for (key, default) in [("APP_ENV", "development"), ("RUST_LOG", "warn")] {
        if std::env::var_os(key).is_none() {
            command.env(key, default);
        }
    }
    let child = command
        .spawn()
        .with_context(|| format!("could not start {}", bin.display()))?;
    if let Some(f) = &args.gateway_pid_file {
        fs::write(f, child.id().to_string())?;
    }
    let gateway = Gateway {
        child,
        pid_file: args.gateway_pid_file.clone(),
    };
    Ok((gateway, format!("http://127.0.0.1:{port}")))
}

async fn wait_healthy(base: &str, mut gateway: Option<&mut Gateway>) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Some(g) = gateway.as_deref_mut() {
            if let Some(status) = g.child.try_wait()? {
                bail!("the gateway exited during start-up ({status})");
            }
        }
        let ok = client
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the gateway did not answer {base}/healthz within 30 s")
}

async fn client_secret(args: &Args, base: &str) -> anyhow::Result<String> {
    if let Some(s) = &args.client_secret {
        return Ok(s.clone());
    }
    let upstream = match (&args.upstream_token, &args.gateway_bin) {
        (Some(t), _) => t.clone(),
        (None, Some(bin)) => {
            let out = Command::new(bin)
                .args(["dev-token", "--user", "bench"])
                .output()
                .context("could not run dev-token")?;
            ensure!(
                out.status.success(),
                "dev-token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)?.trim().to_owned()
        }
        (None, None) => bail!("give --client-secret or --upstream-token with --base"),
    };
    let response = reqwest::Client::new()
        .post(format!("{base}/api/chatkit/session"))
        .bearer_auth(upstream)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    body.get("client_secret")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("POST /api/chatkit/session answered {status}: {body}"))
}

/// One memory sample of the gateway, with the streams and the fake provider's calls open
/// at that moment.
#[derive(Clone, Copy)]
struct Sample {
    rss_kib: u64,
    open: usize,
    provider_open: u64,
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(us: Option<u32>) -> String {
    us.map_or_else(
        || "–".into(),
        |us| format!("{:.2} ms", f64::from(us) / 1000.0),
    )
}

/// Warnings and errors in the gateway's log: their count, and the kinds seen most (lines
/// without their timestamp, numbers and ids folded to `N`) with a count each.
fn log_summary(log: &PathBuf) -> (usize, Vec<(usize, String)>) {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for line in text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
    {
        total += 1;
        let body = line.split_once(' ').map_or(line, |(_, rest)| rest).trim();
        let mut kind = String::new();
        for word in body.split(' ') {
            let folded = match word.split_once('=') {
                Some((k, v)) if v.chars().any(|c| c.is_ascii_digit()) => format!("{k}=N"),
                _ if word.chars().any(|c| c.is_ascii_digit()) && !word.contains(':') => "N".into(),
                _ => word.to_owned(),
            };
            kind.push_str(&folded);
            kind.push(' ');
        }
        *kinds.entry(kind.chars().take(300).collect()).or_default() += 1;
    }
    let mut kinds: Vec<(usize, String)> = kinds.into_iter().map(|(k, n)| (n, k)).collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.0));
    kinds.truncate(8);
    (total, kinds)
}

/// "s0: 1.2 ms, s1: …": the p99 latency of the deltas written in each second of the load.
fn p99_by_second(deltas: &[client::Timed], start_us: u64) -> String {
    let mut seconds: Vec<Vec<u32>> = Vec::new();
    for &(stamp, latency) in deltas {
        let s = usize::try_from(stamp.saturating_sub(start_us) / 1_000_000).unwrap_or(0);
        if seconds.len() <= s {
            seconds.resize_with(s + 1, Vec::new);
        }
        seconds[s].push(latency);
    }
    let parts: Vec<String> = seconds
        .iter_mut()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(s, v)| {
            v.sort_unstable();
            format!("{s}s {}", ms(percentile(v, 990)).replace(" ms", ""))
        })
        .collect();
    format!("{} (ms)", parts.join(", "))
}

#[allow(clippy::too_many_lines)] // one straight sequence: set up, load, measure, report
async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.streams > 0, "--streams must be at least 1");
    ensure!(args.deltas > 0, "--deltas must be at least 1");
    let over = secs(args.over, "over")?;
    let ramp = secs(args.ramp, "ramp")?;
    let timeout = secs(args.timeout.unwrap_or(args.over + 60.0), "timeout")?;
    ensure!(
        (0.0..=1.0).contains(&args.hang_up_fraction),
        "--hang-up-fraction must be between 0 and 1"
    );
    let hang_up_after = args.hang_up_after_deltas.unwrap_or(args.deltas / 2).max(1);
    ensure!(
        args.hang_up_fraction == 0.0 || hang_up_after < args.deltas,
        "--hang-up-after-deltas must be below --deltas (a hang-up mid-answer)"
    );
    let hanging = (0..args.streams)
        .filter(|&i| hangs_up(i, args.hang_up_fraction))
        .count();
    let _epoch = clock::now_us();

    let pacing = Pacing {
        deltas: args.deltas,
        over,
        close: args.provider_close,
        probe: (args.probe_ms > 0).then(|| Duration::from_millis(args.probe_ms)),
    };
    let ledger = Arc::new(Ledger::new(args.streams));
    ensure!(
        !(args.provider_tls && args.protocol == Protocol::Direct),
        "--provider-tls is for the gateway's side: the direct protocol speaks plain http"
    );
    let (provider_port, provider_stats) = provider::serve(
        args.provider_port,
        pacing,
        args.provider_tls,
        ledger.clone(),
    )
    .await?;
    eprintln!(
        "[loadgen] fake provider on {}",
        provider::base(args.provider_tls, provider_port)
    );

    let log = args.gateway_log.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("loadgen-gateway-{}.log", std::process::id()))
    });
    let (mut gateway, base, pid) = match (&args.gateway_bin, &args.base, args.gateway_pid) {
        (Some(bin), _, _) => {
            let (g, base) = start_gateway(&args, bin, provider_port, &log)?;
            let pid = g.child.id();
            eprintln!(
                "[loadgen] gateway pid {pid} on {base}, log {}",
                log.display()
            );
            (Some(g), base, pid)
        }
        (None, Some(base), Some(pid)) => (None, base.trim_end_matches('/').to_owned(), pid),
        _ => bail!("give --gateway-bin, or --base and --gateway-pid"),
    };
    wait_healthy(&base, gateway.as_mut()).await?;
    let secret = client_secret(&args, &base).await?;
    let pid_s = pid.to_string();

    let load = Arc::new(Load::default());
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampler = {
        let (load, samples, pid_s) = (load.clone(), samples.clone(), pid_s.clone());
        let provider_stats = provider_stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Some(m) = proc::memory(&pid_s) else { break };
                let open = load.open.load(Ordering::Relaxed);
                let provider_open = provider_stats.open.load(Ordering::Relaxed);
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Sample {
                        rss_kib: m.rss_kib,
                        open,
                        provider_open,
                    });
            }
        })
    };

    tokio::time::sleep(secs(args.idle, "idle")?).await;
    let idle = proc::memory(&pid_s).context("the gateway has gone")?;
    let cpu_before = proc::cpu(&pid_s);
    let self_cpu_before = proc::cpu("self");
    eprintln!(
        "[loadgen] idle RSS {}; starting {} {:?} streams over {:?}",
        mib(idle.rss_kib),
        args.streams,
        args.protocol,
        ramp
    );

    // The gateway holds two sockets per stream; this process holds two as well.
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(if args.keep_alive { usize::MAX } else { 0 })
        .build()?;
    let target = Arc::new(Target {
        client,
        base: if args.protocol == Protocol::Direct {
            format!("http://127.0.0.1:{provider_port}")
        } else {
            base.clone()
        },
        secret,
        protocol: args.protocol,
        timeout,
        ledger: ledger.clone(),
    });
    let started = tokio::time::Instant::now();
    let load_start_us = clock::now_us();
    let deltas = usize::try_from(args.deltas).unwrap_or(usize::MAX);
    let mut turns = Vec::with_capacity(args.streams);
    let n = u32::try_from(args.streams).unwrap_or(u32::MAX);
    for i in 0..args.streams {
        let at = ramp.mul_f64(f64::from(u32::try_from(i).unwrap_or(u32::MAX)) / f64::from(n));
        tokio::time::sleep_until(started + at).await;
        let hang_up = hangs_up(i, args.hang_up_fraction).then_some(hang_up_after);
        turns.push(tokio::spawn(client::turn(
            target.clone(),
            i,
            load.clone(),
            deltas,
            hang_up.and_then(|n| usize::try_from(n).ok()),
        )));
    }
    let mut last_report = tokio::time::Instant::now();
    for t in turns {
        t.await?;
        if last_report.elapsed() > Duration::from_secs(2) {
            last_report = tokio::time::Instant::now();
            eprintln!(
                "[loadgen] {:>5.1} s: {} open, {} ended; {} provider calls open",
                started.elapsed().as_secs_f64(),
                load.open.load(Ordering::Relaxed),
                load.ended.load(Ordering::Relaxed),
                provider_stats.open.load(Ordering::Relaxed)
            );
        }
    }
    let load_time = started.elapsed();
    let cpu_load = cpu_before
        .zip(proc::cpu(&pid_s))
        .map(|(a, b)| b.saturating_sub(a));
    let self_cpu = self_cpu_before
        .zip(proc::cpu("self"))
        .map(|(a, b)| b.saturating_sub(a));
    let at_end = proc::memory(&pid_s).unwrap_or_default();
    let provider_open_at_end = provider_stats.open.load(Ordering::Relaxed);
    eprintln!("[loadgen] all turns ended after {load_time:?}; settling");
    // Not a server left wholly idle (an allocator may give memory back only when its
    // threads run again): a trickle of health checks, as any deployed instance sees.
    let settle_until = tokio::time::Instant::now() + secs(args.settle, "settle")?;
    let health = reqwest::Client::new();
    while tokio::time::Instant::now() < settle_until {
        let _ = health.get(format!("{base}/healthz")).send().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = proc::memory(&pid_s).unwrap_or_default();
    let provider_open_after = provider_stats.open.load(Ordering::Relaxed);
    let left = ledger.summary();
    sampler.abort();

    let samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let max_open_sampled = samples.iter().map(|s| s.open).max().unwrap_or(0);
    let rss_full = samples
        .iter()
        .filter(|s| s.open == max_open_sampled)
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(0);
    let sampled_max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let per_stream = (max_open_sampled > 0).then(|| {
        rss_full.saturating_sub(idle.rss_kib) as f64 * 1024.0 / max_open_sampled as f64 / 1000.0
    });

    let mut results = std::mem::take(&mut *load.results.lock().unwrap_or_else(|p| p.into_inner()));
    // Read back after every memory figure is taken: these requests change none of them.
    let answers = read_back(&base, &target.secret, &results.threads).await;
    let mut latencies: Vec<u32> = results.deltas.iter().map(|d| d.1).collect();
    latencies.sort_unstable();
    results.setup_us.sort_unstable();
    let lat = |pm| percentile(&latencies, pm);
    let by_second = p99_by_second(&results.deltas, load_start_us);
    let setup = |pm| percentile(&results.setup_us, pm);
    let staying = u64::try_from(args.streams - hanging).unwrap_or(u64::MAX);
    let hanging_u64 = u64::try_from(hanging).unwrap_or(u64::MAX);
    let expected = u64::from(args.deltas) * staying + u64::from(hang_up_after) * hanging_u64;
    let provider_open_full = samples
        .iter()
        .filter(|s| s.open == max_open_sampled)
        .map(|s| s.provider_open)
        .max()
        .unwrap_or(0);

    let mut out = String::new();
    let proto = match args.protocol {
        Protocol::Rest => "REST `POST /api/chatkit/messages` (SSE)",
        Protocol::Chatkit => "ChatKit `POST /chatkit` `threads.create` (SSE)",
        Protocol::Direct => {
            "the fake provider directly, no gateway (the harness's own latency floor; the gateway idles)"
        }
    };
    let label = if args.label.is_empty() {
        String::new()
    } else {
        format!(", {}", args.label)
    };
    writeln!(out, "### Streams: {proto}{label}")?;
    writeln!(out)?;
    writeln!(
        out,
        "{} streamed turns started over {:.1} s, each a new thread; the fake provider streams {} deltas over {:.1} s per turn. Load lasted {:.1} s.",
        args.streams,
        ramp.as_secs_f64(),
        args.deltas,
        over.as_secs_f64(),
        load_time.as_secs_f64()
    )?;
    if hanging > 0 {
        writeln!(
            out,
            "**{hanging} of the clients hang up** ({}), each after reading {hang_up_after} deltas; {}",
            every(args.hang_up_fraction),
            Some(args.probe_ms).filter(|&p| p > 0).map_or_else(
                || "the provider does not probe.".to_owned(),
                |p| format!("from the hang-up on, the fake provider writes an SSE comment to that call every {p} ms (for up to 1.5 s), so that it sees the close by a failed write if not before.")
            )
        )?;
    }
    writeln!(out)?;
    writeln!(out, "| measure | value | goal |")?;
    writeln!(out, "| --- | ---: | --- |")?;
    if hanging > 0 {
        writeln!(
            out,
            "| turns completed / hung up as planned / errored | {} / {} / {} | {} / {hanging} / 0 |",
            results.completed,
            results.hung_up,
            results.errored(),
            args.streams - hanging
        )?;
    } else {
        writeln!(
            out,
            "| turns completed / errored | {} / {} | no errors |",
            results.completed,
            results.errored()
        )?;
    }
    writeln!(
        out,
        "| deltas timed at the client / written by the provider / expected{} | {} / {} / {} | |",
        if hanging > 0 {
            " (for the clients that hang up, the deltas they read)"
        } else {
            ""
        },
        latencies.len(),
        provider_stats.deltas_written.load(Ordering::Relaxed),
        expected
    )?;
    if hanging > 0 {
        hang_up_rows(&mut out, &left, &provider_stats)?;
    }
    writeln!(
        out,
        "| streams open at once (peak; largest in a sample) | {} ; {} | {} |",
        load.max_open.load(Ordering::Relaxed),
        max_open_sampled,
        args.streams
    )?;
    writeln!(out, "| gateway RSS idle | {} | |", mib(idle.rss_kib))?;
    writeln!(
        out,
        "| gateway RSS at full concurrency ({max_open_sampled} open) | {} | |",
        mib(rss_full)
    )?;
    writeln!(
        out,
        "| **RSS per open stream** (full − idle) / open | **{}** | ≤ 30 KB |",
        per_stream.map_or_else(|| "–".into(), |kb| format!("{kb:.1} KB"))
    )?;
    writeln!(
        out,
        "| gateway peak RSS (VmHWM; largest 250 ms sample) | {} ; {} | |",
        mib(after.hwm_kib.max(at_end.hwm_kib)),
        mib(sampled_max)
    )?;
    writeln!(
        out,
        "| gateway RSS when the last stream ended; {:.0} s later (`/healthz` 10/s meanwhile) | {} ; {} | near idle |",
        args.settle,
        mib(at_end.rss_kib),
        mib(after.rss_kib)
    )?;
    writeln!(
        out,
        "| **delta latency provider → client** p50 / p90 / p99 / p99.9 / max | {} / {} / **{}** / {} / {} | p99 ≤ 5 ms |",
        ms(lat(500)),
        ms(lat(900)),
        ms(lat(990)),
        ms(lat(999)),
        ms(latencies.last().copied())
    )?;
    writeln!(
        out,
        "| turn set-up (request → response head) p50 / p99 / max | {} / {} / {} | |",
        ms(setup(500)),
        ms(setup(990)),
        ms(results.setup_us.last().copied())
    )?;
    if args.protocol != Protocol::Direct {
        writeln!(
            out,
            "| largest request body the gateway sent the provider (JSON text) | {} bytes | |",
            provider_stats.max_request_bytes.load(Ordering::Relaxed)
        )?;
    }
    writeln!(
        out,
        "| fake provider calls: made / open at most / open at full concurrency / when the last stream ended / {:.0} s later | {} / {} / {provider_open_full} / {provider_open_at_end} / {provider_open_after} | after: 0 |",
        args.settle,
        provider_stats.requests.load(Ordering::Relaxed),
        provider_stats.max_open.load(Ordering::Relaxed),
    )?;
    if let Some(answers) = &answers {
        writeln!(
            out,
            "| answers read back after the settle (`GET /api/chatkit/threads/{{id}}`, the last assistant message's status): clients that stayed; clients that hung up | {} ; {} | stayed: completed; hung up: ChatKit cancelled, REST completed |",
            answers.stayed,
            answers.hung_up
        )?;
    }
    writeln!(
        out,
        "| CPU during the load: gateway ; loadgen (provider + clients) | {} ; {} | |",
        cpu_load.map_or_else(|| "–".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        self_cpu.map_or_else(|| "–".into(), |d| format!("{:.1} s", d.as_secs_f64()))
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Delta latency p99 by second of the load (when the provider wrote the delta; the turns start in the first {:.0} s): {by_second}",
        ramp.as_secs_f64()
    )?;
    if hanging > 0 {
        writeln!(out)?;
        writeln!(
            out,
            "Provider saw the call end after the client left, p99 by second of the hang-up: {}",
            p99_by_second(&left.by_hang_up, load_start_us)
        )?;
    }
    if !results.errors.is_empty() {
        writeln!(out)?;
        writeln!(out, "Errors:")?;
        for (kind, (count, example)) in &results.errors {
            if example.is_empty() {
                writeln!(out, "- {kind}: {count}")?;
            } else {
                writeln!(out, "- {kind}: {count} (e.g. `{example}`)")?;
            }
        }
    }
    if gateway.is_some() {
        let (count, first) = log_summary(&log);
        if count > 0 {
            writeln!(out)?;
            writeln!(out, "Gateway log: {count} warning/error lines, by kind:")?;
            writeln!(out, "```")?;
            for (n, kind) in first {
                writeln!(out, "{n:>6} × {kind}")?;
            }
            writeln!(out, "```")?;
        }
    }
    print!("{out}");
    drop(gateway.take());
    Ok(())
}

/// Which turns `fraction` of them are, in words.
fn every(fraction: f64) -> String {
    if fraction >= 1.0 {
        "every turn".to_owned()
    } else if (fraction - 0.5).abs() < 1e-9 {
        "every other turn".to_owned()
    } else {
        format!("{:.1}% of the turns, spread evenly", fraction * 100.0)
    }
}

/// The rows about the clients that hung up, from the fake provider's side.
fn hang_up_rows(
    out: &mut String,
    left: &hangup::Summary,
    stats: &provider::ProviderStats,
) -> std::fmt::Result {
    let ended = |pm| percentile(&left.ended_after_us, pm);
    writeln!(
        out,
        "| calls whose client hung up: **provider saw the call end after the client left** p50 / p99 / max ({} calls ended) | {} / {} / **{}** | ≤ 1 s |",
        left.ended_after_us.len(),
        ms(ended(500)),
        ms(ended(990)),
        ms(left.ended_after_us.last().copied())
    )?;
    writeln!(
        out,
        "| **calls still open 1 s after their client left** (of {} hang-ups; still open now; hang-ups without a call) | **{}** ({}; {}) | 0 |",
        left.hung_up, left.open_after_1s, left.still_open, left.without_call
    )?;
    writeln!(
        out,
        "| calls that wrote the whole answer although their client had left; calls started after the client left; probe comments written | {} ; {} ; {} | ChatKit 0 ; 0 (REST streams finish: their contract) |",
        left.finished_anyway,
        left.started_after,
        stats.probes.load(Ordering::Relaxed)
    )?;
    Ok(())
}

/// How the answers were recorded: per status of the thread's last assistant message, for
/// the turns that stayed and those that hung up.
struct Answers {
    stayed: Tally,
    hung_up: Tally,
}

/// Counts by status ("completed 2500, cancelled 3"), and the fewest stamped deltas in
/// one of those answers.
#[derive(Default)]
struct Tally {
    by_status: BTreeMap<String, usize>,
    fewest_deltas: Option<usize>,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.by_status.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self
            .by_status
            .iter()
            .map(|(status, n)| format!("{status} {n}"))
            .collect();
        f.write_str(&parts.join(", "))?;
        if let Some(n) = self.fewest_deltas {
            write!(f, " (fewest deltas in one: {n})")?;
        }
        Ok(())
    }
}

impl Tally {
    fn add(&mut self, status: String, deltas: Option<usize>) {
        *self.by_status.entry(status).or_default() += 1;
        if let Some(n) = deltas {
            self.fewest_deltas = Some(self.fewest_deltas.map_or(n, |m| m.min(n)));
        }
    }
}

/// The status of the last assistant message of a thread (`GET /api/chatkit/threads/{id}`)
/// and the stamped deltas in its text; a word for what went wrong otherwise.
fn last_answer(thread: &Value) -> (String, Option<usize>) {
    let answer = thread["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "assistant"));
    match answer {
        Some(m) => (
            m["status"].as_str().unwrap_or("(no status)").to_owned(),
            m["content"].as_str().map(|t| provider::stamps(t).count()),
        ),
        None => ("no answer".to_owned(), None),
    }
}

/// Reads every thread back after the load (8 at a time); `None` if there is none (the
/// direct protocol).
async fn read_back(base: &str, secret: &str, threads: &[(String, bool)]) -> Option<Answers> {
    use futures_util::StreamExt;
    if threads.is_empty() {
        return None;
    }
    let client = reqwest::Client::new();
    let reads = futures_util::stream::iter(threads)
        .map(|(id, hung_up)| {
            let request = client
                .get(format!("{base}/api/chatkit/threads/{id}?limit=100"))
                .bearer_auth(secret)
                .timeout(Duration::from_secs(10));
            async move {
                let read = match request.send().await {
                    Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                        Ok(thread) => last_answer(&thread),
                        Err(_) => ("unreadable".to_owned(), None),
                    },
                    Ok(r) => (format!("HTTP {}", r.status().as_u16()), None),
                    Err(_) => ("unread".to_owned(), None),
                };
                (*hung_up, read)
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let mut answers = Answers {
        stayed: Tally::default(),
        hung_up: Tally::default(),
    };
    for (hung_up, (status, deltas)) in reads {
        let tally = if hung_up {
            &mut answers.hung_up
        } else {
            &mut answers.stayed
        };
        tally.add(status, deltas);
    }
    Some(answers)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // Dropping `run` on a signal stops the gateway it started.
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = term.recv() => bail!("terminated"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_counted_by_kind() {
        let log = std::env::temp_dir().join(format!("loadgen-test-{}.log", std::process::id()));
        fs::write(
            &log,
            "2026-11-22T09:35:12.1Z  WARN x: request failed status=503 micros=5016929\n\
             2026-11-22T09:35:13.2Z  WARN x: request failed status=503 micros=17\n\
             2026-11-22T09:35:13.3Z  INFO x: listening port=1\n\
             2026-11-22T09:35:14.4Z ERROR y: broke\n",
        )
        .unwrap();
        let (total, kinds) = log_summary(&log);
        let _ = fs::remove_file(&log);
        assert_eq!(total, 3);
        assert_eq!(kinds.len(), 2);
        assert_eq!(kinds[0].0, 2);
        assert!(kinds[0].1.contains("status=N micros=N"), "{}", kinds[0].1);
    }

    #[test]
    fn the_last_answer_is_read_with_its_deltas() {
        let text = format!("{}{}", provider::stamp(1, 5), provider::stamp(2, 6));
        let thread = serde_json::json!({"id": "th", "messages": [
            {"role": "user", "content": "bench turn 1", "status": "completed"},
            {"role": "assistant", "content": text, "status": "cancelled"},
        ]});
        assert_eq!(last_answer(&thread), ("cancelled".to_owned(), Some(2)));
        let unanswered = serde_json::json!({"messages": [{"role": "user", "status": "failed"}]});
        assert_eq!(last_answer(&unanswered), ("no answer".to_owned(), None));
        let mut tally = Tally::default();
        tally.add("cancelled".to_owned(), Some(26));
        tally.add("cancelled".to_owned(), Some(25));
        tally.add("completed".to_owned(), Some(50));
        assert_eq!(
            tally.to_string(),
            "cancelled 2, completed 1 (fewest deltas in one: 25)"
        );
        assert_eq!(Tally::default().to_string(), "none");
        assert_eq!(every(0.5), "every other turn");
        assert_eq!(every(0.25), "25.0% of the turns, spread evenly");
    }
}
