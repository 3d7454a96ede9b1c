//! The usage spool: a local, append-only, bounded store for usage events that could not reach
//! Redis, so an outage (or a node killed during one) loses no billing data.
//!
//! # Layout
//!
//! One directory (`SWITCHYARD_USAGE_SPOOL_DIR`, default `./data/usage-spool`) holds:
//! - `LOCK`: an exclusive advisory lock (`File::try_lock`) held for the life of the process, so
//!   two processes never write or replay one spool (the second refuses to start, naming the
//!   directory);
//! - segment files `<seq>.ndjson` (`seq` a zero-padded, increasing number): one JSON
//!   [`UsageEvent`](shared::usage::UsageEvent) per line, exactly the text the writer would have
//!   `XADD`ed. A segment is appended to until it reaches [`SEGMENT_BYTES`]; a process never
//!   appends to a segment left by a previous one.
//!
//! # Durability
//!
//! [`Spool::append`] writes a whole batch with one `write` and then `fsync`s the segment (and the
//! directory when the segment is new) before returning: a batch the writer counts as spooled is
//! on disk. A crash in the middle of a write can leave a last line without its newline (a torn
//! line); reading skips it with a warning (its events were never acknowledged as spooled, so
//! they were still in memory and are lost only if the process died, see the README's
//! "Usage pipeline guarantees"). Any other line that is not JSON is skipped with a warning too.
//!
//! # Bound
//!
//! The files' total size never exceeds `max_bytes` (`SWITCHYARD_USAGE_SPOOL_MAX_BYTES`, 1 GiB):
//! a batch that would cross it is refused with [`SpoolError::Full`] and the writer keeps it in
//! memory instead (backpressure), never dropping it.
//!
//! # Replay
//!
//! The writer (`usage_sink`) replays the oldest segment first ([`Spool::oldest`],
//! [`Spool::read_segment`]), `XADD`s its lines in batches, and deletes it ([`Spool::remove`])
//! only after all of them were written. A crash during replay re-sends the segment later:
//! at-least-once, deduplicated by event id in the control plane.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A segment is closed once it holds this many bytes (the last batch may cross it).
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// The lock file's name inside the spool directory.
pub const LOCK_FILE: &str = "LOCK";
const SEGMENT_EXT: &str = "ndjson";

/// Why a batch could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The batch would take the spool over its bound.
    #[error("the usage spool is full ({bytes} of {max_bytes} bytes)")]
    Full { bytes: u64, max_bytes: u64 },
    #[error("usage spool I/O: {0}")]
    Io(#[from] io::Error),
}

/// The lines of one segment, as read back for replay.
#[derive(Debug, Default)]
pub struct SegmentContents {
    /// Complete JSON lines, in order.
    pub lines: Vec<String>,
    /// A last line without its newline (a write cut by a crash), skipped.
    pub torn: bool,
    /// Complete lines that were not JSON, skipped.
    pub corrupt: usize,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    bytes: u64,
    events: u64,
}

struct OpenSegment {
    seq: u64,
    file: File,
}

/// A spool directory, locked by this process. Not thread-safe by itself: the usage writer owns
/// it (behind a mutex it never holds across an await).
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Holds the directory's lock until dropped.
    _lock: File,
    segments: BTreeMap<u64, Segment>,
    open: Option<OpenSegment>,
    next_seq: u64,
    bytes: u64,
    events: u64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .field("segments", &self.segments.len())
            .field("bytes", &self.bytes)
            .field("events", &self.events)
            .finish()
    }
}

impl Spool {
    /// Creates `dir` if needed, takes its lock (an error if another process holds it) and
    /// indexes the segments a previous process left.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "the usage spool {} is locked by another process; give each data-plane node its own SWITCHYARD_USAGE_SPOOL_DIR",
                        dir.display()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let mut segments = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let Some(seq) = segment_seq(&path) else {
                continue;
            };
            let data = std::fs::read(&path)?;
            let events = data.iter().filter(|&&b| b == b'\n').count() as u64;
            segments.insert(
                seq,
                Segment {
                    bytes: data.len() as u64,
                    events,
                },
            );
        }
        let next_seq = segments.keys().next_back().map_or(1, |s| s + 1);
        let spool = Self {
            dir,
            max_bytes,
            _lock: lock,
            bytes: segments.values().map(|s| s.bytes).sum(),
            events: segments.values().map(|s| s.events).sum(),
            segments,
            open: None,
            next_seq,
        };
        spool.publish_gauges();
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Events on disk (complete lines), replayed ones excluded once their segment is removed.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Appends `lines` (JSON texts without newlines) as one write, then fsyncs. All or nothing as
    /// far as the caller is concerned: on error, nothing is counted as spooled (a partial write
    /// leaves at most a torn line, skipped on replay, plus complete lines that replay delivers a
    /// second time — harmless, the control plane deduplicates).
    pub fn append(&mut self, lines: &[String]) -> Result<(), SpoolError> {
        if lines.is_empty() {
            return Ok(());
        }
        let size: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        if self.bytes + size > self.max_bytes {
            return Err(SpoolError::Full {
                bytes: self.bytes,
                max_bytes: self.max_bytes,
            });
        }
        let full = self
            .open
            .as_ref()
            .and_then(|o| self.segments.get(&o.seq))
            .is_some_and(|s| s.bytes >= SEGMENT_BYTES);
        if full {
            self.open = None;
        }
        if self.open.is_none() {
            let seq = self.next_seq;
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(self.segment_path(seq))?;
            sync_dir(&self.dir)?;
            self.next_seq += 1;
            self.segments.insert(
                seq,
                Segment {
                    bytes: 0,
                    events: 0,
                },
            );
            self.open = Some(OpenSegment { seq, file });
        }
        let mut buf = Vec::with_capacity(size as usize);
        for line in lines {
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        let Some(open) = self.open.as_mut() else {
            return Err(io::Error::other("no open segment").into());
        };
        let seq = open.seq;
        let written = open
            .file
            .write_all(&buf)
            .and_then(|()| open.file.sync_data());
        if let Err(e) = written {
            // Do not append after a failed write: the file may end in a torn line.
            self.open = None;
            self.refresh_segment(seq);
            return Err(e.into());
        }
        if let Some(s) = self.segments.get_mut(&seq) {
            s.bytes += size;
            s.events += lines.len() as u64;
        }
        self.bytes += size;
        self.events += lines.len() as u64;
        self.publish_gauges();
        Ok(())
    }

    /// Closes the segment being appended to, so it can be replayed; the next append opens a new
    /// one.
    pub fn seal(&mut self) {
        self.open = None;
    }

    /// The oldest segment, if any (sealed first if it is the open one).
    pub fn oldest(&mut self) -> Option<u64> {
        let seq = *self.segments.keys().next()?;
        if self.open.as_ref().is_some_and(|o| o.seq == seq) {
            self.open = None;
        }
        Some(seq)
    }

    /// Reads one segment back: its complete JSON lines, skipping (and reporting) a torn last
    /// line and lines that are not JSON.
    pub fn read_segment(&self, seq: u64) -> io::Result<SegmentContents> {
        let data = std::fs::read(self.segment_path(seq))?;
        Ok(parse_segment(&data))
    }

    /// Deletes a replayed segment.
    pub fn remove(&mut self, seq: u64) -> io::Result<()> {
        if self.open.as_ref().is_some_and(|o| o.seq == seq) {
            self.open = None;
        }
        match std::fs::remove_file(self.segment_path(seq)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(s) = self.segments.remove(&seq) {
            self.bytes -= s.bytes;
            self.events -= s.events;
        }
        self.publish_gauges();
        Ok(())
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:016}.{SEGMENT_EXT}"))
    }

    /// Re-reads a segment's size after a failed write.
    fn refresh_segment(&mut self, seq: u64) {
        let Ok(data) = std::fs::read(self.segment_path(seq)) else {
            return;
        };
        let fresh = Segment {
            bytes: data.len() as u64,
            events: data.iter().filter(|&&b| b == b'\n').count() as u64,
        };
        if let Some(old) = self.segments.insert(seq, fresh) {
            self.bytes = self.bytes - old.bytes + fresh.bytes;
            self.events = self.events - old.events + fresh.events;
        }
        self.publish_gauges();
    }

    fn publish_gauges(&self) {
        metrics::gauge!("switchyard_usage_spool_events").set(self.events as f64);
        metrics::gauge!("switchyard_usage_spool_bytes").set(self.bytes as f64);
    }
}

/// The sequence number of a segment file name, if it is one.
fn segment_seq(path: &Path) -> Option<u64> {
    if path.extension()? != SEGMENT_EXT {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

/// Splits a segment's bytes into complete JSON lines.
fn parse_segment(data: &[u8]) -> SegmentContents {
    let mut out = SegmentContents::default();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            out.torn = true;
            break;
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.is_empty() {
            continue;
        }
        match std::str::from_utf8(line) {
            Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
                out.lines.push(text.to_owned());
            }
            _ => out.corrupt += 1,
        }
    }
    out
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_and_corrupt_lines_are_skipped() {
        let c = parse_segment(b"{\"a\":1}\nnot json\n\n{\"b\":2}\n{\"c\":");
        assert_eq!(c.lines, vec!["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(c.corrupt, 1);
        assert!(c.torn);
        let c = parse_segment(b"{\"a\":1}\n");
        assert!(!c.torn);
        assert_eq!(c.lines.len(), 1);
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(
            segment_seq(Path::new("/x/0000000000000042.ndjson")),
            Some(42)
        );
        assert_eq!(segment_seq(Path::new("/x/LOCK")), None);
        assert_eq!(segment_seq(Path::new("/x/42.tmp")), None);
    }
}
