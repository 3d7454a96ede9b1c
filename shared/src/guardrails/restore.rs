//! Placeholders and their restoration. STUB: to be implemented.

use std::sync::Arc;

/// The placeholders of one request and the values they stand for.
#[derive(Debug, Default)]
pub struct Vault {
    /// (placeholder, original), in the order handed out.
    entries: Vec<(String, String)>,
}

impl Vault {
    /// The placeholder for `original` under `label` (`[EMAIL_1]`): the same value always gets
    /// the same placeholder; numbering is per label.
    pub(crate) fn placeholder(&mut self, label: &str, original: &str) -> String {
        if let Some((p, _)) = self.entries.iter().find(|(_, o)| o == original) {
            return p.clone();
        }
        let n = self
            .entries
            .iter()
            .filter(|(p, _)| p.starts_with(&format!("[{label}_")))
            .count()
            + 1;
        let p = format!("[{label}_{n}]");
        self.entries.push((p.clone(), original.to_owned()));
        p
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `text` with every placeholder put back; `None` when it holds none.
    pub fn restore(&self, text: &str) -> Option<String> {
        let _ = text;
        None
    }
}

/// Restores placeholders in a streamed answer, delta by delta: text that may be the start of a
/// placeholder split across deltas is held back until the next delta (or [`Self::finish`]).
pub struct StreamRestorer {
    vault: Arc<Vault>,
    pending: String,
}

impl StreamRestorer {
    pub fn new(vault: Arc<Vault>) -> Self {
        Self {
            vault,
            pending: String::new(),
        }
    }

    /// Takes the next delta; returns the text that can be sent now.
    pub fn push(&mut self, delta: &str) -> String {
        let _ = &self.vault;
        let mut out = std::mem::take(&mut self.pending);
        out.push_str(delta);
        out
    }

    /// The text still held back, at the end of the stream.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}
