//! A `redis-server` of a test's own that speaks only TLS (`rediss://`), with a throwaway CA.
//!
//! Nothing in the OS trust store knows the CA, which is the point: a process verifies the server
//! only when told to trust [`TlsRedis::ca_file`] (`SSL_CERT_FILE` for the binaries, whose Redis
//! client loads its roots with `rustls-native-certs`), and [`TlsRedis::client`] trusts it
//! explicitly for the test's own connections.
//!
//! Needs `redis-server` built with TLS (Debian's `redis-server` package is) and the `openssl`
//! command (Debian's `ca-certificates` depends on it) to make the certificates.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::e2e::poll_until;

/// The password the server requires (managed Redis services with TLS also require one).
const PASSWORD: &str = "tls-test-password";

/// A running TLS-only `redis-server` on `127.0.0.1`, killed on drop.
#[derive(Debug)]
pub struct TlsRedis {
    port: u16,
    dir: TempDir,
    _child: tokio::process::Child,
}

impl TlsRedis {
    /// Makes a CA and a server certificate for `127.0.0.1` and `localhost` signed by it, starts
    /// `redis-server` with only a TLS port (`--port 0`, so a plain-text client cannot talk to it)
    /// and waits until it answers `PING` over TLS.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("temp dir")?;
        make_certificates(dir.path()).await?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .context("a free port")?
            .local_addr()
            .context("its address")?
            .port();
        let path = |name: &str| dir.path().join(name);
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .args(["--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(path("server.pem"))
            .arg("--tls-key-file")
            .arg(path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(path("ca.pem"))
            .args(["--tls-auth-clients", "no", "--requirepass", PASSWORD])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("redis-server runs (apt package redis-server)")?;
        let server = Self {
            port,
            dir,
            _child: child,
        };
        poll_until(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let mut c = server.client()?.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<()>(&mut c).await?;
                Ok(())
            },
        )
        .await
        .context(
            "the TLS redis-server does not answer (is redis-server built with TLS? \
             `redis-server --tls-port` needs it)",
        )?;
        Ok(server)
    }

    /// `rediss://:<password>@127.0.0.1:<port>/0`: what `REDIS_URL` would be for a managed Redis.
    pub fn url(&self) -> String {
        format!("rediss://:{PASSWORD}@127.0.0.1:{}/0", self.port)
    }

    /// The password in [`Self::url`] (tests check that logs never show it).
    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// The CA certificate (PEM) that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A client for [`Self::url`] that trusts [`Self::ca_file`] (and nothing else).
    pub fn client(&self) -> anyhow::Result<redis::Client> {
        let ca = std::fs::read(self.ca_file()).context("reading the CA")?;
        redis::Client::build_with_tls(
            self.url(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca),
            },
        )
        .context("a TLS client")
    }
}

/// `ca.pem`/`ca.key` (a self-signed CA) and `server.pem`/`server.key` (signed by it, for
/// `localhost` and `127.0.0.1`), all EC P-256, valid for two days.
async fn make_certificates(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .context("writing server.ext")?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Switchyard test CA",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    for args in steps {
        let out = tokio::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .await
            .context("the openssl command runs (Debian package openssl)")?;
        if !out.status.success() {
            bail!(
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}
