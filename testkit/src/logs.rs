//! [`CapturedLogs`]: a `tracing-subscriber` writer that keeps log output in memory, for tests
//! that assert what was (or was not) logged.

use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;

/// Log output kept in memory; clones share the buffer.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Everything written so far, one JSON value per line (for JSON-formatted logs).
    pub fn json_lines(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        self.text()
            .lines()
            .map(|l| {
                serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{e}: not a JSON line: {l}"))
            })
            .collect()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
