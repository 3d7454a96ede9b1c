//! Helpers the benchmarks share (`mod common;` in each bench target).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use testkit::fake_openai::FakeOpenAi;

pub(crate) fn env_num<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid number")),
        Err(_) => Ok(None),
    }
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `$CARGO_TARGET_DIR` if set (at run time, else at build time), else the `target` directory the
/// benchmark executable lives in (`target/<profile>/deps/overhead-…`).
pub(crate) fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = option_env!("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Starts the fake upstream on its own thread and runtime, so its work is not scheduled behind
/// the load generator's tasks. Returns its base URL; it lives until the process exits.
#[allow(dead_code)] // Not every bench target that includes `common` uses it.
pub(crate) fn start_fake_upstream(api_key: Option<&'static str>) -> anyhow::Result<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("fake-upstream".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let mut fake = FakeOpenAi::builder().record_requests(false);
                if let Some(key) = api_key {
                    fake = fake.api_key(key);
                }
                match fake.start().await {
                    Ok(fake) => {
                        let _ = tx.send(Ok(fake.base_url()));
                        // Keep serving until the process ends.
                        std::future::pending::<()>().await;
                        drop(fake);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    rx.recv().context("fake upstream thread died")?
}

/// The load of a closed-and-open-loop benchmark, from `BENCH_QUICK`, `BENCH_SECS`,
/// `BENCH_CONCURRENCY` and `BENCH_RATE` (quick when not run by `cargo bench`).
#[derive(Debug, Clone)]
#[allow(dead_code)] // Not every bench target that includes `common` uses it.
pub(crate) struct Settings {
    pub(crate) quick: bool,
    pub(crate) secs: f64,
    pub(crate) concurrency: usize,
    pub(crate) rate: u32,
}

impl Settings {
    #[allow(dead_code)]
    pub(crate) fn from_env() -> anyhow::Result<Self> {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
            || !std::env::args().any(|a| a == "--bench");
        let (secs, concurrency, rate) = if quick {
            (1.0, 16, 100)
        } else {
            (10.0, 32, 500)
        };
        let s = Settings {
            quick,
            secs: env_num("BENCH_SECS")?.unwrap_or(secs),
            concurrency: env_num("BENCH_CONCURRENCY")?.unwrap_or(concurrency),
            rate: env_num("BENCH_RATE")?.unwrap_or(rate),
        };
        if !(s.secs > 0.0 && s.secs <= 600.0) {
            bail!("BENCH_SECS must be in (0, 600]");
        }
        if s.concurrency == 0 || s.concurrency > 1024 {
            bail!("BENCH_CONCURRENCY must be in 1..=1024");
        }
        if s.rate == 0 || s.rate > 20_000 {
            bail!("BENCH_RATE must be in 1..=20000");
        }
        Ok(s)
    }
}

/// The CPU time (user + system) process `pid` has used so far, from `/proc/<pid>/stat`.
#[allow(dead_code)] // Not every bench target that includes `common` uses it.
pub(crate) fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?;
    // Linux reports in USER_HZ, 100 on every mainstream architecture.
    Ok(Duration::from_millis(ticks * 10))
}

/// The nearest-rank percentile `p` (0 to 100) of `sorted` (ascending); 0 when empty.
#[allow(dead_code)] // Not every bench target that includes `common` uses it.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `ok` requests over `elapsed_secs`, per second (0 for an empty phase).
#[allow(dead_code)] // Not every bench target that includes `common` uses it.
pub(crate) fn per_second(ok: usize, elapsed_secs: f64) -> f64 {
    if elapsed_secs > 0.0 {
        ok as f64 / elapsed_secs
    } else {
        0.0
    }
}
