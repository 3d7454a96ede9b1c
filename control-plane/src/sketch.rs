//! A mergeable quantile sketch for latencies (milliseconds), kept in the usage rollups.
//!
//! It is a log-bucketed histogram in the manner of DDSketch (Masson, Rim and Lee, VLDB 2019):
//! a value `v ≥ 1` falls in bucket `i = ceil(log_γ v)` with `γ = (1 + α) / (1 − α)`, and a
//! bucket is represented by `2γ^i / (γ + 1)`, which is within a factor `(1 ± α)` of every value
//! the bucket holds. Values below 1 ms (0, since we record whole milliseconds) have their own
//! zero bucket. Merging two sketches adds their bucket counts, so minute rollups merge into
//! hours, hours into days, and any set of rows into the answer of a query, exactly as if every
//! value had gone into one sketch.
//!
//! **Error bound.** [`Sketch::quantile`] returns the nearest-rank quantile (the value of rank
//! `⌈q·n⌉` in sorted order) to within a relative error of [`RELATIVE_ACCURACY`] (1%): for a true
//! p95 of 840 ms the answer lies in [831.6, 848.4]. The bound holds whatever the distribution and
//! however the sketch was merged.
//!
//! **Size.** With α = 1% one bucket spans 2%, so 1 ms … 1 hour is at most 760 buckets; real
//! latencies of one rollup row occupy a few dozen. [`Sketch::encode`] writes only non-empty
//! buckets as varint deltas: typically 50–200 bytes per row.

use std::collections::BTreeMap;

/// The relative accuracy α of every quantile this sketch answers.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Format tag of [`Sketch::encode`]; bump it if the layout or α changes.
const FORMAT_V1: u8 = 1;

/// γ = (1 + α) / (1 − α).
fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// An encoded sketch that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed latency sketch: {0}")]
pub struct SketchError(&'static str);

/// See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sketch {
    /// Values below 1 ms.
    zero: u64,
    /// Bucket index → count (only non-empty buckets).
    bins: BTreeMap<i32, u64>,
    count: u64,
}

impl Sketch {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many values went in.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Records one value, in milliseconds.
    pub fn insert(&mut self, ms: u64) {
        self.insert_n(ms, 1);
    }

    /// Records `n` occurrences of one value.
    pub fn insert_n(&mut self, ms: u64, n: u64) {
        if n == 0 {
            return;
        }
        if ms == 0 {
            self.zero += n;
        } else {
            *self.bins.entry(index(ms as f64)).or_default() += n;
        }
        self.count += n;
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Sketch) {
        self.zero += other.zero;
        for (&i, &c) in &other.bins {
            *self.bins.entry(i).or_default() += c;
        }
        self.count += other.count;
    }

    /// The nearest-rank `q`-quantile (`0 < q ≤ 1`; `q = 0` gives the minimum), within
    /// [`RELATIVE_ACCURACY`]; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        // Rank (1-based) of the nearest-rank quantile.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = self.zero;
        if seen >= rank {
            return Some(0.0);
        }
        let g = gamma();
        for (&i, &c) in &self.bins {
            seen += c;
            if seen >= rank {
                return Some(2.0 * g.powi(i) / (g + 1.0));
            }
        }
        // Unreachable when counts are consistent; answer the largest bucket rather than panic.
        self.bins
            .keys()
            .next_back()
            .map(|&i| 2.0 * g.powi(i) / (g + 1.0))
    }

    /// Compact bytes: format tag, zero count, bucket count, then (index delta, count) varints.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.bins.len() * 3);
        out.push(FORMAT_V1);
        put_varint(&mut out, self.zero);
        put_varint(&mut out, self.bins.len() as u64);
        let mut prev: i64 = 0;
        for (&i, &c) in &self.bins {
            let delta = i64::from(i) - prev;
            prev = i64::from(i);
            put_varint(&mut out, zigzag(delta));
            put_varint(&mut out, c);
        }
        out
    }

    /// Reads what [`Sketch::encode`] wrote. Empty input is an empty sketch.
    pub fn decode(bytes: &[u8]) -> Result<Self, SketchError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        if bytes[0] != FORMAT_V1 {
            return Err(SketchError("unknown format"));
        }
        let mut rest = &bytes[1..];
        let zero = get_varint(&mut rest)?;
        let n = get_varint(&mut rest)?;
        let mut bins = BTreeMap::new();
        let mut count = zero;
        let mut prev: i64 = 0;
        for _ in 0..n {
            let delta = unzigzag(get_varint(&mut rest)?);
            let c = get_varint(&mut rest)?;
            prev = prev
                .checked_add(delta)
                .ok_or(SketchError("index overflow"))?;
            let i = i32::try_from(prev).map_err(|_| SketchError("index out of range"))?;
            if c > 0 {
                bins.insert(i, c);
                count = count.checked_add(c).ok_or(SketchError("count overflow"))?;
            }
        }
        if !rest.is_empty() {
            return Err(SketchError("trailing bytes"));
        }
        Ok(Self { zero, bins, count })
    }
}

fn index(v: f64) -> i32 {
    (v.ln() / gamma().ln()).ceil() as i32
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(input: &mut &[u8]) -> Result<u64, SketchError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first().ok_or(SketchError("truncated"))?;
        *input = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(SketchError("varint too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nearest-rank quantile of `sorted`, computed directly.
    fn exact(sorted: &[u64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1] as f64
    }

    fn within(est: f64, truth: f64) -> bool {
        (est - truth).abs() <= truth * RELATIVE_ACCURACY + 1e-9
    }

    #[test]
    fn quantiles_stay_within_the_relative_bound() {
        // A skewed, deterministic sample: mostly fast, a long tail, some zeros.
        let mut values: Vec<u64> = (0..10_000u64)
            .map(|i| {
                let x = (i * 7919) % 10_000;
                if x < 50 {
                    0
                } else if x < 9000 {
                    20 + x / 30
                } else {
                    400 + x * 3
                }
            })
            .collect();
        let mut s = Sketch::new();
        for &v in &values {
            s.insert(v);
        }
        values.sort_unstable();
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let (est, truth) = (s.quantile(q).expect("non-empty"), exact(&values, q));
            assert!(within(est, truth), "q={q}: {est} vs {truth}");
        }
    }

    #[test]
    fn merging_equals_inserting_everything_into_one() {
        let (mut a, mut b, mut all) = (Sketch::new(), Sketch::new(), Sketch::new());
        for v in 0..500u64 {
            let ms = v * v % 3001;
            if v % 3 == 0 {
                a.insert(ms)
            } else {
                b.insert(ms)
            }
            all.insert(ms);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.count(), 500);
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let mut s = Sketch::new();
        for v in [0, 1, 2, 3, 250, 251, 90_000, 3_600_000] {
            s.insert_n(v, v % 7 + 1);
        }
        let bytes = s.encode();
        assert_eq!(Sketch::decode(&bytes).expect("round trip"), s);
        assert_eq!(Sketch::decode(&[]).expect("empty"), Sketch::new());
        assert!(Sketch::decode(&[9, 0, 0]).is_err(), "unknown format");
        assert!(
            Sketch::decode(&bytes[..bytes.len() - 1]).is_err(),
            "truncated"
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Sketch::decode(&longer).is_err(), "trailing bytes");
        assert_eq!(Sketch::new().quantile(0.5), None);
    }
}
