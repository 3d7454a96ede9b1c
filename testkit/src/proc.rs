//! Launching the `control-plane` and `data-plane` binaries as child processes for end-to-end tests
//! and the benchmark.
//!
//! A process is started with `SWITCHYARD_LISTEN=127.0.0.1:0`; both binaries log exactly one line
//! containing `listening on http://<bound addr>`, which [`ChildGuard::spawn`] waits for and parses,
//! so tests never guess ports. Everything the process writes to stdout and stderr is kept (tests
//! scan it for leaked secrets) and, with `TESTKIT_ECHO_LOGS=1`, echoed to the test's stderr.
//! The child is killed when the guard is dropped, also when the test panics (its log tail is then
//! printed to help the diagnosis).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

/// How long a process may take to print its `listening on` line (a debug build that runs
/// migrations on a loaded 2-core machine is slow).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The `data-plane` binary of the current build (override: `TESTKIT_DATA_PLANE_BIN`).
///
/// # Panics
/// If it has not been built; the message says how to build it.
pub fn data_plane_binary() -> PathBuf {
    find_binary("data-plane", "TESTKIT_DATA_PLANE_BIN")
}

/// The `control-plane` binary of the current build (override: `TESTKIT_CONTROL_PLANE_BIN`).
///
/// # Panics
/// If it has not been built; the message says how to build it.
pub fn control_plane_binary() -> PathBuf {
    find_binary("control-plane", "TESTKIT_CONTROL_PLANE_BIN")
}

/// Looks next to the running test executable: tests live in `target/<profile>/deps/`, binaries
/// in `target/<profile>/`.
#[allow(clippy::panic)] // A missing binary is a setup error the test cannot recover from.
fn find_binary(name: &str, env_override: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_override) {
        return PathBuf::from(p);
    }
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().unwrap_or_default();
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(&file))
        .collect();
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return found.clone();
    }
    panic!(
        "the `{name}` binary is not built (looked at {candidates:?}). Build the workspace binaries \
         first, with the same CARGO_TARGET_DIR and profile as the tests: \
         `cargo build --workspace --bins`, or point {env_override} at it"
    );
}

/// A command for one of our binaries with a clean, explicit environment: every Switchyard
/// variable (and `DATABASE_URL`, `REDIS_URL`) inherited from the developer's shell is removed, so
/// a test sees exactly what it sets. Logs are plain text without colours; `RUST_LOG` defaults to
/// `info`.
pub fn command(binary: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("SWITCHYARD_")
            || k == "DATABASE_URL"
            || k == "REDIS_URL"
            || k == "RUST_LOG"
        {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd.env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env("SWITCHYARD_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// A running child process, killed on drop.
pub struct ChildGuard {
    label: String,
    child: tokio::process::Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for ChildGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildGuard")
            .field("label", &self.label)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The address in a line containing `listening on http://ADDR`, if any.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn capture<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
    label: String,
    stream: &'static str,
    logs: Arc<Mutex<Vec<String>>>,
    addr_tx: Arc<watch::Sender<Option<SocketAddr>>>,
) -> tokio::task::JoinHandle<()> {
    let echo = std::env::var_os("TESTKIT_ECHO_LOGS").is_some_and(|v| v != "0");
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
            if let Some(addr) = parse_listening_line(&line) {
                addr_tx.send_if_modified(|cur| {
                    let first = cur.is_none();
                    if first {
                        *cur = Some(addr);
                    }
                    first
                });
            }
            if echo {
                eprintln!("[{label} {stream}] {line}");
            }
            lock(&logs).push(line);
        }
    })
}

impl ChildGuard {
    /// Spawns `cmd` (stdout and stderr are captured) and waits until it logs its bound address,
    /// within [`DEFAULT_START_TIMEOUT`].
    pub async fn spawn(label: &str, cmd: tokio::process::Command) -> anyhow::Result<ChildGuard> {
        Self::spawn_with_timeout(label, cmd, DEFAULT_START_TIMEOUT).await
    }

    pub async fn spawn_with_timeout(
        label: &str,
        mut cmd: tokio::process::Command,
        timeout: Duration,
    ) -> anyhow::Result<ChildGuard> {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {label} ({:?})", cmd.as_std().get_program()))?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, mut addr_rx) = watch::channel(None);
        let addr_tx = Arc::new(addr_tx);
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(capture(
                out,
                label.to_owned(),
                "stdout",
                Arc::clone(&logs),
                Arc::clone(&addr_tx),
            ));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(capture(
                err,
                label.to_owned(),
                "stderr",
                Arc::clone(&logs),
                Arc::clone(&addr_tx),
            ));
        }
        drop(addr_tx);

        let outcome = tokio::time::timeout(timeout, async {
            let addr = tokio::select! {
                addr = addr_rx.wait_for(Option::is_some) => addr.ok().and_then(|a| *a),
                status = child.wait() => return Err(anyhow::anyhow!("exited early with {status:?}")),
            };
            match addr {
                Some(addr) => Ok(addr),
                // Both output streams closed without the line: the process is exiting.
                None => {
                    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                    Err(anyhow::anyhow!("exited early with {status:?}"))
                }
            }
        })
        .await;
        let addr = match outcome {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => {
                // The process is gone, so its pipes reach EOF: let the readers collect the last
                // lines (bounded, in case a grandchild still holds a pipe open).
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    futures::future::join_all(readers),
                )
                .await;
                bail!("{label} {e}; its output:\n{}", lock(&logs).join("\n"));
            }
            Err(_) => {
                let _ = child.start_kill();
                bail!(
                    "{label} did not log `listening on http://…` within {timeout:?}; its output:\n{}",
                    lock(&logs).join("\n")
                );
            }
        };
        Ok(ChildGuard {
            label: label.to_owned(),
            child,
            addr,
            logs,
        })
    }

    /// The address the process bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Every line the process wrote so far (stdout and stderr interleaved in arrival order).
    pub fn logs(&self) -> Vec<String> {
        lock(&self.logs).clone()
    }

    /// [`Self::logs`] joined with newlines.
    pub fn logs_text(&self) -> String {
        lock(&self.logs).join("\n")
    }

    /// Polls `GET {base_url}{path}` until it answers 2xx, or fails after `timeout`.
    pub async fn wait_healthy(&self, path: &str, timeout: Duration) -> anyhow::Result<()> {
        wait_http_ok(&format!("{}{path}", self.base_url()), timeout)
            .await
            .with_context(|| format!("{} never became healthy", self.label))
    }

    /// Waits until a log line contains `needle` and returns that line.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = lock(&self.logs).iter().find(|l| l.contains(needle)) {
                return Ok(line.clone());
            }
            if Instant::now() >= deadline {
                bail!("{} never logged {needle:?}", self.label);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process and waits for it to exit. The captured logs stay readable.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM (graceful shutdown) and waits up to `timeout` for the exit; kills it after.
    #[cfg(unix)]
    pub async fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.send_sigterm().await;
        match self.wait_exit(timeout).await {
            Some(status) => Some(status),
            None => {
                self.kill().await;
                None
            }
        }
    }

    /// Sends SIGTERM and returns at once, for tests that watch the shutdown as it happens
    /// (then [`Self::wait_exit`]).
    #[cfg(unix)]
    pub async fn send_sigterm(&self) {
        if let Some(pid) = self.child.id() {
            // `kill -TERM` avoids an unsafe libc call; the pid is our own child's.
            let _ = tokio::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running (it is left
    /// running; dropping the guard kills it).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => None,
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            let logs = lock(&self.logs);
            let tail = &logs[logs.len().saturating_sub(200)..];
            eprintln!(
                "----- last {} log lines of {} -----\n{}\n-----",
                tail.len(),
                self.label,
                tail.join("\n")
            );
        }
    }
}

/// Polls until connecting to `addr` is refused (its listener is closed), or fails after
/// `timeout`.
pub async fn wait_refused(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(()),
            _ if Instant::now() >= deadline => {
                bail!("{addr} still accepts connections after {timeout:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Polls `url` with GET until it answers 2xx, or fails after `timeout`.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + timeout;
    loop {
        let last = match client.get(url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("status {}", r.status()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("GET {url} not OK within {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_the_listening_line_in_text_and_json_logs() {
        let want: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        assert_eq!(
            parse_listening_line(
                "2025-01-01T00:00:00Z  INFO control_plane: listening on http://127.0.0.1:40123"
            ),
            Some(want)
        );
        assert_eq!(
            parse_listening_line(
                r#"{"level":"INFO","fields":{"message":"listening on http://127.0.0.1:40123"}}"#
            ),
            Some(want)
        );
        assert_eq!(
            parse_listening_line("listening on http://[::1]:8080 (docs at /docs)"),
            Some("[::1]:8080".parse().unwrap())
        );
        assert_eq!(parse_listening_line("listening soon"), None);
    }

    #[tokio::test]
    async fn spawns_reads_the_address_and_kills_on_drop() {
        // A stand-in process: prints the line the binaries print, then waits.
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(
            "echo starting; echo 'INFO listening on http://127.0.0.1:45678' >&2; exec sleep 30",
        );
        let guard = ChildGuard::spawn_with_timeout("sh", cmd, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(guard.addr(), "127.0.0.1:45678".parse().unwrap());
        assert_eq!(guard.base_url(), "http://127.0.0.1:45678");
        guard
            .wait_for_log("starting", Duration::from_secs(5))
            .await
            .unwrap();
        let pid = guard.id().unwrap();
        drop(guard);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "child {pid} still alive");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn early_exit_reports_the_output() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg("echo 'fatal: bad config' >&2; exit 3");
        let err = ChildGuard::spawn_with_timeout("sh", cmd, Duration::from_secs(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited early"), "{err}");
        assert!(err.contains("fatal: bad config"), "{err}");
    }
}
