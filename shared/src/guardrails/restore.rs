//! Placeholders and their restoration.
//!
//! A placeholder is `[<LABEL>_<n>]`: it holds exactly one `[`, at its start, and one `]`, at its
//! end. Restoring therefore only looks at each `[` and the first `]` after it, and a stream only
//! has to hold back text from its last `[` on, and only while that text is still the beginning
//! of a placeholder the vault handed out.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

/// The placeholders of one request and the values they stand for.
#[derive(Default)]
pub struct Vault {
    /// Placeholder → original. Ordered, so that "is this the beginning of a placeholder" is one
    /// range lookup.
    originals: BTreeMap<String, String>,
    /// Original → placeholder: the same value always gets the same placeholder.
    placeholders: HashMap<String, String>,
    /// Per label, the last number handed out.
    counters: HashMap<String, u32>,
    /// Length of the longest placeholder, in bytes: bounds both the search for a `]` and what a
    /// stream holds back.
    longest: usize,
}

/// Originals are the PII the vault exists to keep out of prompts, so they stay out of logs too.
impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("placeholders", &self.originals.len())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// The placeholder for `original` under `label` (`[EMAIL_1]`): the same value always gets
    /// the same placeholder; numbering is per label.
    pub(crate) fn placeholder(&mut self, label: &str, original: &str) -> String {
        if let Some(p) = self.placeholders.get(original) {
            return p.clone();
        }
        let n = match self.counters.get_mut(label) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                self.counters.insert(label.to_owned(), 1);
                1
            }
        };
        let p = format!("[{label}_{n}]");
        self.longest = self.longest.max(p.len());
        self.placeholders.insert(original.to_owned(), p.clone());
        self.originals.insert(p.clone(), original.to_owned());
        p
    }

    pub fn is_empty(&self) -> bool {
        self.originals.is_empty()
    }

    /// How many placeholders were handed out.
    pub fn len(&self) -> usize {
        self.originals.len()
    }

    /// `text` with every placeholder put back; `None` when it holds none.
    pub fn restore(&self, text: &str) -> Option<String> {
        if self.originals.is_empty() || !text.contains('[') {
            return None;
        }
        let bytes = text.as_bytes();
        let mut out: Option<String> = None;
        // Bytes of `text` before `copied` are in `out` already.
        let mut copied = 0;
        let mut at = 0;
        while let Some(offset) = text[at..].find('[') {
            let start = at + offset;
            let window = &bytes[start + 1..text.len().min(start + self.longest)];
            let found = window.iter().position(|b| *b == b']').and_then(|close| {
                let end = start + close + 2;
                self.originals.get(&text[start..end]).map(|o| (end, o))
            });
            match found {
                Some((end, original)) => {
                    let out = out.get_or_insert_with(|| String::with_capacity(text.len() + 64));
                    out.push_str(&text[copied..start]);
                    out.push_str(original);
                    copied = end;
                    at = end;
                }
                None => at = start + 1,
            }
        }
        let mut out = out?;
        out.push_str(&text[copied..]);
        Some(out)
    }

    /// Whether `text` (starting with `[`, without `]`) is the beginning of a placeholder.
    fn starts_placeholder(&self, text: &str) -> bool {
        text.len() < self.longest
            && !text.contains(']')
            && self
                .originals
                .range::<str, _>((Bound::Included(text), Bound::Unbounded))
                .next()
                .is_some_and(|(p, _)| p.starts_with(text))
    }
}

/// Restores placeholders in a streamed answer, delta by delta: text that may be the start of a
/// placeholder split across deltas is held back until the next delta (or [`Self::finish`]).
pub struct StreamRestorer {
    vault: Arc<Vault>,
    /// Held back: empty, or a `[` and what followed it, still the beginning of a placeholder
    /// (so shorter than the longest placeholder).
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
        // The common case: nothing held and nothing that could start a placeholder.
        if self.pending.is_empty() && !delta.contains('[') {
            return delta.to_owned();
        }
        let mut out = if self.pending.is_empty() {
            delta.to_owned()
        } else {
            let mut joined = String::with_capacity(self.pending.len() + delta.len());
            joined.push_str(&self.pending);
            joined.push_str(delta);
            self.pending.clear();
            joined
        };
        // Only the last `[` can begin an unfinished placeholder: text from an earlier one holds
        // a second `[`, which no placeholder does.
        if let Some(last) = out.rfind('[')
            && self.vault.starts_placeholder(&out[last..])
        {
            self.pending.push_str(&out[last..]);
            out.truncate(last);
        }
        self.vault.restore(&out).unwrap_or(out)
    }

    /// The text still held back, at the end of the stream.
    pub fn finish(&mut self) -> String {
        let held = std::mem::take(&mut self.pending);
        self.vault.restore(&held).unwrap_or(held)
    }
}
