//! A TCP proxy on 127.0.0.1 in front of a real server (Redis, in practice), to play an outage
//! without touching the server: [`Proxy::set_up`] switches it off and on while it keeps its
//! port (open connections are cut, new ones closed at once), [`Proxy::stop`] closes the listener
//! too (connections are refused) and [`Proxy::start_on`] brings it back on the same port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long [`Proxy::start_on`] retries binding a port it just released.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// One task per proxied connection; aborting one drops both of its sides.
    conns: Arc<Mutex<JoinSet<()>>>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy")?;
        Self::serve(listener, target)
    }

    /// Listens on `addr` (a port a stopped proxy had; retried briefly in case the OS has not
    /// released it yet) and forwards every connection to `target`.
    pub async fn start_on(addr: SocketAddr, target: SocketAddr) -> anyhow::Result<Self> {
        let deadline = tokio::time::Instant::now() + REBIND_TIMEOUT;
        loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => return Self::serve(listener, target),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e).with_context(|| format!("rebinding {addr}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn serve(listener: TcpListener, target: SocketAddr) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let (up2, conns2) = (Arc::clone(&up), Arc::clone(&conns));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut conns = lock(&conns2);
                // Reap finished connections so the set does not grow with every one.
                while conns.try_join_next().is_some() {}
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            up,
            conns,
            accept: Some(accept),
        })
    }

    /// `redis://ADDR`, the proxy as a Redis URL.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Switches forwarding off (every open connection is cut, new ones are closed at once) or
    /// back on; the proxy keeps listening either way.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            lock(&self.conns).abort_all();
        }
    }

    /// Cuts every connection and stops listening (the port is free when this returns).
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        lock(&self.conns).abort_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        lock(&self.conns).abort_all();
    }
}

/// Never held across an await; a panicking test must not poison the proxy.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
