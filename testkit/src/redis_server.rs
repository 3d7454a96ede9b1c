//! A plain `redis-server` of a test's own, on a free port, that the test stops and restarts to
//! play an outage (Redis' own process, not a proxy: connections are refused while it is down).

#![allow(clippy::expect_used)]

use std::time::Duration;

use crate::e2e::poll_until;

/// A `redis-server` of our own on a fixed port, persisting to an append-only file fsync'd on
/// every write, so a stop and restart keeps the stream and the consumer group.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut server = Self {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (apt package redis-server)");
        self.child = Some(child);
        let url = self.url();
        poll_until(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let client = redis::Client::open(url.as_str())?;
                let mut c = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<()>(&mut c).await?;
                Ok(())
            },
        )
        .await
        .expect("our redis-server answers");
    }

    /// SIGTERM (Redis flushes its AOF and exits), then waits for the exit.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        if let Some(pid) = child.id() {
            let _ = tokio::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}
