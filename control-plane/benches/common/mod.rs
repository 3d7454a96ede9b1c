//! Helpers both benchmarks share (`mod common;` in each bench target).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
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
