//! The semantic cache's vector index: in process, per node.
//!
//! Each organization has its own list of entries (a prompt's unit-length embedding, its bucket
//! and the digest its answer is stored under), searched by brute force: the cosine similarity of
//! unit vectors is their dot product. Bounded: at most [`PER_ORG`] entries per organization and
//! [`TOTAL`] in all (the oldest go first), which at 1,536 dimensions is about 60 MB. The answers
//! themselves live in the response cache (Redis when the node has it), so an index entry whose
//! answer expired simply misses.
//!
//! The index is this node's: in a cluster, a prompt stored through one node is found
//! semantically only by that node (exact hits work everywhere). Redis servers with vector search
//! are not used yet (see README, "Caching").

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::key::Digest;

/// Most entries one organization keeps.
pub const PER_ORG: usize = 1_000;
/// Most entries on one node.
pub const TOTAL: usize = 10_000;

#[derive(Default)]
pub struct SemanticIndex {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    orgs: HashMap<Uuid, VecDeque<Entry>>,
    /// Organizations in the order their oldest entry was added, for the node-wide bound.
    total: usize,
}

struct Entry {
    bucket: Digest,
    vector: Arc<[f32]>,
    digest: Digest,
    expires: Instant,
}

/// The best stored prompt close enough to the one searched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearest {
    pub digest: Digest,
    pub similarity: f32,
}

impl SemanticIndex {
    /// The entry of `tenant` in `bucket` most similar to `vector`, if its similarity reaches
    /// `min_similarity`.
    pub fn nearest(
        &self,
        tenant: Uuid,
        bucket: &Digest,
        vector: &[f32],
        min_similarity: f32,
    ) -> Option<Nearest> {
        let query = normalized(vector)?;
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut best: Option<Nearest> = None;
        for entry in inner.orgs.get(&tenant)?.iter() {
            if entry.bucket != *bucket || entry.expires <= now || entry.vector.len() != query.len()
            {
                continue;
            }
            let similarity: f32 = entry.vector.iter().zip(&query).map(|(a, b)| a * b).sum();
            if similarity >= min_similarity && best.is_none_or(|b| similarity > b.similarity) {
                best = Some(Nearest {
                    digest: entry.digest,
                    similarity,
                });
            }
        }
        best
    }

    /// Adds a stored answer's prompt embedding.
    pub fn insert(
        &self,
        tenant: Uuid,
        bucket: Digest,
        vector: &[f32],
        digest: Digest,
        ttl: Duration,
    ) {
        let Some(vector) = normalized(vector) else {
            return;
        };
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let Inner { orgs, total } = &mut *inner;
        let list = orgs.entry(tenant).or_default();
        let before = list.len();
        list.retain(|e| e.expires > now && e.digest != digest);
        list.push_back(Entry {
            bucket,
            vector: vector.into(),
            digest,
            expires: now + ttl,
        });
        while list.len() > PER_ORG {
            list.pop_front();
        }
        *total = *total + list.len() - before;
        if *total > TOTAL {
            // Over the node bound: trim every organization's oldest entries, largest first.
            let mut sizes: Vec<(Uuid, usize)> = orgs.iter().map(|(t, l)| (*t, l.len())).collect();
            sizes.sort_by_key(|&(_, len)| std::cmp::Reverse(len));
            for (org, _) in sizes {
                if *total <= TOTAL {
                    break;
                }
                if let Some(list) = orgs.get_mut(&org) {
                    let drop = (*total - TOTAL).min(list.len());
                    list.drain(..drop);
                    *total -= drop;
                }
            }
            orgs.retain(|_, l| !l.is_empty());
        }
    }

    /// Entries held (tests, metrics).
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `vector` scaled to unit length; `None` for an empty or zero vector.
fn normalized(vector: &[f32]) -> Option<Vec<f32>> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm.is_finite() && norm > 0.0).then(|| vector.iter().map(|x| x / norm).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn finds_the_closest_in_its_bucket_above_the_threshold() {
        let index = SemanticIndex::default();
        let t = Uuid::new_v4();
        let bucket = Digest([1; 32]);
        let hour = Duration::from_secs(3600);
        index.insert(t, bucket, &[1.0, 0.0], Digest([10; 32]), hour);
        index.insert(t, bucket, &[0.0, 1.0], Digest([11; 32]), hour);
        let hit = index.nearest(t, &bucket, &[0.9, 0.1], 0.9).unwrap();
        assert_eq!(hit.digest, Digest([10; 32]));
        assert!(hit.similarity > 0.99);
        assert_eq!(
            index.nearest(t, &bucket, &[0.7, 0.7], 0.95),
            None,
            "below the threshold"
        );
        assert_eq!(
            index.nearest(t, &Digest([2; 32]), &[1.0, 0.0], 0.5),
            None,
            "another bucket"
        );
        assert_eq!(
            index.nearest(Uuid::new_v4(), &bucket, &[1.0, 0.0], 0.5),
            None,
            "another org"
        );
    }

    #[test]
    fn bounded_per_organization() {
        let index = SemanticIndex::default();
        let t = Uuid::new_v4();
        for i in 0..(PER_ORG + 10) {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&(i as u64).to_le_bytes());
            index.insert(
                t,
                Digest([0; 32]),
                &[1.0, i as f32],
                Digest(d),
                Duration::from_secs(60),
            );
        }
        assert_eq!(index.len(), PER_ORG);
    }
}
