//! One multiplexed Redis connection shared by every request of a hot-path user (the rate
//! limiter, the response cache). Commands from concurrent requests are pipelined on it, so a
//! request costs its command's round trip and nothing more: no pool checkout (deadpool checks a
//! connection with `PING` when it hands one out, a second round trip), no wait for a free
//! connection, and a burst at start makes one connection, not one per request.

use deadpool_redis::Pool;
use redis::aio::MultiplexedConnection;

pub struct SharedConnection {
    pool: Pool,
    current: std::sync::Mutex<Option<MultiplexedConnection>>,
    /// Held while a connection is made, so only one caller makes it.
    making: tokio::sync::Mutex<()>,
}

impl SharedConnection {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            current: std::sync::Mutex::new(None),
            making: tokio::sync::Mutex::new(()),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn current(&self) -> Option<MultiplexedConnection> {
        // A poisoned slot only means a panic while cloning a handle: the value is still valid.
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The shared connection, made from the pool if there is none.
    pub async fn get(&self) -> Result<MultiplexedConnection, String> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let _making = self.making.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let pooled = self.pool.get().await.map_err(|e| e.to_string())?;
        let conn = deadpool_redis::Connection::take(pooled);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection after a failed command; the next caller makes a new one.
    pub fn reset(&self) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
