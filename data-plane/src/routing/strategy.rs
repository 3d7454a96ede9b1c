//! [`order`]: a route's candidates in the order the request tries them.
//!
//! The caller builds one [`Candidate`] per deployment that passed its filters (region policy,
//! capabilities, context window), each with its [`DeploymentStats`] from
//! [`Health::snapshot`](super::Health::snapshot), in the route's list order. [`order`] sorts
//! them in place: the first is the choice, the rest the fallback order. Whatever the strategy,
//! candidates that are not available (breaker open or probe under way, cooling down after a
//! 429) go last, in the strategy's order among themselves; they are kept, so the caller can
//! still try them when nothing else is left, or drop them.
//!
//! # Strategies
//!
//! Ties always keep the list order (the sort is stable).
//!
//! - `priority`: lowest `priority` first; candidates without one follow those with one.
//! - `weighted`: a weighted random order (sampling without replacement): the first is drawn
//!   with probability weight / total, the next among the rest likewise, and so on. Failover
//!   therefore spreads a broken deployment's share over the others by weight, instead of
//!   piling it onto the heaviest. Weight `None` counts 1; weight 0 is never drawn while a
//!   positive one remains (a fallback-only candidate); all weights 0 count as equal.
//!   **Sticky** (a sticky key given): the draws come from a stable hash of the key and each
//!   deployment id instead of the RNG (weighted rendezvous hashing), so one key keeps its
//!   deployment on every node and every call while the candidates and weights are unchanged;
//!   when a candidate is added, removed or unavailable, only the keys that were on it (or now
//!   belong to the new one) move, in proportion to the weights. The hash (FNV-1a, SplitMix64
//!   finalizer) is fixed here, not std's, so it survives compiler upgrades and rolling deploys.
//! - `cheapest`: lowest expected cost, prompt tokens × input price + max output tokens × output
//!   price, in exact integers.
//! - `fastest`: lowest EWMA time to first token (total latency for deployments that only ever
//!   answered without a stream, such as embeddings). **Exploration**: a deployment with no
//!   numbers yet goes *first* when nothing is in flight on it, so it gets measured at all (a
//!   pessimistic rule would never try it while the others work); while that one request is
//!   under way it goes after the measured ones, so a burst does not all land on an unknown.
//! - `reliable`: highest success rate over the health window, smoothed with two imaginary
//!   successes, (successes + 2) / (requests + 2): an unmeasured deployment scores 1 (tried, as
//!   for `fastest`), one failure out of one scores 2/3 rather than 0, and 99 of 100 still
//!   beats 3 of 3 (0.990 vs 1.0 is the exception the prior accepts: few samples are trusted
//!   optimistically).
//! - `least_busy`: fewest attempts in flight on this node.
//!
//! # Cost
//!
//! No allocation: the sort is stable on a few elements (the standard library sorts short
//! slices on the stack), and `weighted` selects in place, O(n²) for n candidates.

use rand::Rng;
use shared::config::{DeploymentRecord, RouteCandidate, RouteStrategy};
use uuid::Uuid;

use super::health::DeploymentStats;

/// Imaginary successes added to every deployment's window for `reliable`.
const RELIABILITY_PRIOR: f64 = 2.0;

/// One deployment a request may go to. `item` is the caller's own handle (an index, a
/// `&DeploymentRecord`, a backend), carried along by the sort.
#[derive(Debug, Clone)]
pub struct Candidate<T> {
    pub item: T,
    pub deployment_id: Uuid,
    /// Relative share for `weighted` (the route's weight, default 1).
    pub weight: u32,
    /// For `priority`: lower first.
    pub priority: Option<i32>,
    pub input_price_micros_per_mtok: i64,
    pub output_price_micros_per_mtok: i64,
    pub stats: DeploymentStats,
}

impl<T> Candidate<T> {
    /// A candidate for `deployment`, with the route's weight and priority when it is a route's
    /// candidate (`None` for an implicit route: weight 1, no priority).
    pub fn new(
        item: T,
        deployment: &DeploymentRecord,
        route: Option<&RouteCandidate>,
        stats: DeploymentStats,
    ) -> Self {
        Self {
            item,
            deployment_id: deployment.id,
            weight: route.and_then(|c| c.weight).unwrap_or(1),
            priority: route.and_then(|c| c.priority),
            input_price_micros_per_mtok: deployment.input_price_micros_per_mtok,
            output_price_micros_per_mtok: deployment.output_price_micros_per_mtok,
            stats,
        }
    }

    /// Expected cost of the request here, in µ$ × 10⁶ (exact: compared, never shown).
    fn cost(&self, facts: &RequestFacts<'_>) -> i128 {
        i128::from(facts.prompt_tokens) * i128::from(self.input_price_micros_per_mtok)
            + i128::from(facts.max_output_tokens) * i128::from(self.output_price_micros_per_mtok)
    }
}

/// What the strategies need to know about the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// The request's output limit, or the caller's estimate when it sets none.
    pub max_output_tokens: u64,
    /// For a sticky `weighted` route: the request's `user` or `x-switchyard-sticky-key`.
    /// Ignored by the other strategies.
    pub sticky_key: Option<&'a str>,
}

/// Sorts `candidates` (given in the route's list order) into the order to try them under
/// `strategy`: the first is the choice, the rest the fallback order, unavailable ones last.
/// `rng` is drawn from only by `weighted` without a sticky key.
pub fn order<T, R: Rng + ?Sized>(
    strategy: RouteStrategy,
    candidates: &mut [Candidate<T>],
    facts: &RequestFacts<'_>,
    rng: &mut R,
) {
    match strategy {
        RouteStrategy::Priority => {
            candidates.sort_by_key(|c| (c.priority.is_none(), c.priority.unwrap_or(0)))
        }
        RouteStrategy::Weighted => match facts.sticky_key {
            Some(key) => weighted(candidates, Draw::<R>::Sticky(fnv1a(key.as_bytes()))),
            None => weighted(candidates, Draw::Random(rng)),
        },
        RouteStrategy::Cheapest => candidates.sort_by_key(|c| c.cost(facts)),
        RouteStrategy::Fastest => candidates.sort_by(|a, b| {
            let (ta, va) = speed(&a.stats);
            let (tb, vb) = speed(&b.stats);
            ta.cmp(&tb).then(va.total_cmp(&vb))
        }),
        RouteStrategy::Reliable => {
            candidates.sort_by(|a, b| reliability(&b.stats).total_cmp(&reliability(&a.stats)))
        }
        RouteStrategy::LeastBusy => candidates.sort_by_key(|c| c.stats.in_flight),
    }
    candidates.sort_by_key(|c| !c.stats.available);
}

/// `fastest`'s key: (tier, milliseconds). Tier 0: unmeasured and idle (explore it); 1:
/// measured; 2: unmeasured with a request under way.
fn speed(s: &DeploymentStats) -> (u8, f64) {
    match s.ewma_ttft_ms.or(s.ewma_latency_ms) {
        Some(ms) => (1, ms),
        None if s.in_flight == 0 => (0, 0.0),
        None => (2, 0.0),
    }
}

fn reliability(s: &DeploymentStats) -> f64 {
    (f64::from(s.window_successes) + RELIABILITY_PRIOR)
        / (f64::from(s.window_requests) + RELIABILITY_PRIOR)
}

enum Draw<'r, R: ?Sized> {
    Random(&'r mut R),
    /// The sticky key's hash.
    Sticky(u64),
}

/// Weighted sampling without replacement, in place: position i gets one of the candidates at
/// i.. drawn by weight, and the others keep their relative order.
fn weighted<T, R: Rng + ?Sized>(candidates: &mut [Candidate<T>], mut draw: Draw<'_, R>) {
    let all_zero = candidates.iter().all(|c| c.weight == 0);
    let weight = |c: &Candidate<T>| if all_zero { 1 } else { u64::from(c.weight) };
    for i in 0..candidates.len() {
        let rest = &candidates[i..];
        let total: u64 = rest.iter().map(weight).sum();
        if total == 0 {
            // Only fallback-only (weight 0) candidates are left: list order.
            break;
        }
        let pick = match &mut draw {
            Draw::Random(rng) => {
                // Multiply-shift: a uniform draw in [0, total) without a division.
                let mut at = ((u128::from(rng.next_u64()) * u128::from(total)) >> 64) as u64;
                rest.iter()
                    .position(|c| {
                        let w = weight(c);
                        if at < w {
                            true
                        } else {
                            at -= w;
                            false
                        }
                    })
                    .unwrap_or(0)
            }
            Draw::Sticky(key) => {
                let mut best: Option<(usize, f64)> = None;
                for (j, c) in rest.iter().enumerate() {
                    let w = weight(c);
                    if w == 0 {
                        continue;
                    }
                    let score = rendezvous(*key, c.deployment_id, w);
                    if best.is_none_or(|(_, s)| score < s) {
                        best = Some((j, score));
                    }
                }
                best.map_or(0, |(j, _)| j)
            }
        };
        candidates[i..=i + pick].rotate_right(1);
    }
}

/// Weighted rendezvous score of `deployment` for a key hash (lower wins): an exponential draw
/// with rate `weight`, seeded by the pair, so the winner among any subset is drawn by weight
/// and stays the same while that subset does.
fn rendezvous(key: u64, deployment: Uuid, weight: u64) -> f64 {
    let (hi, lo) = deployment.as_u64_pair();
    let h = mix(key ^ mix(hi ^ mix(lo)));
    // 53 random bits as a float in (0, 1]: never 0, so the logarithm is finite.
    let u = ((h >> 11) + 1) as f64 / (1u64 << 53) as f64;
    -u.ln() / weight as f64
}

/// FNV-1a, 64 bits: a fixed, documented hash for sticky keys.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64's finalizer: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use crate::routing::health::BreakerState;

    /// A candidate named `name` (its `item`), with a deterministic id.
    fn cand(name: &'static str) -> Candidate<&'static str> {
        Candidate {
            item: name,
            deployment_id: Uuid::from_u64_pair(fnv1a(name.as_bytes()), 7),
            weight: 1,
            priority: None,
            input_price_micros_per_mtok: 0,
            output_price_micros_per_mtok: 0,
            stats: DeploymentStats::UNKNOWN,
        }
    }

    fn names(c: &[Candidate<&'static str>]) -> Vec<&'static str> {
        c.iter().map(|c| c.item).collect()
    }

    fn run(
        strategy: RouteStrategy,
        mut c: Vec<Candidate<&'static str>>,
        facts: RequestFacts<'_>,
    ) -> Vec<&'static str> {
        order(strategy, &mut c, &facts, &mut StdRng::seed_from_u64(9));
        names(&c)
    }

    fn measured(
        name: &'static str,
        f: impl FnOnce(&mut DeploymentStats),
    ) -> Candidate<&'static str> {
        let mut c = cand(name);
        f(&mut c.stats);
        c
    }

    fn open(mut c: Candidate<&'static str>) -> Candidate<&'static str> {
        c.stats.state = BreakerState::Open;
        c.stats.available = false;
        c
    }

    #[test]
    fn priority_orders_by_priority_then_list_order() {
        let with = |name, p| Candidate {
            priority: p,
            ..cand(name)
        };
        let cases = [
            (
                vec![with("a", None), with("b", None), with("c", None)],
                vec!["a", "b", "c"],
            ),
            (
                vec![with("a", Some(2)), with("b", Some(1)), with("c", Some(2))],
                vec!["b", "a", "c"],
            ),
            (
                vec![with("a", None), with("b", Some(5)), with("c", Some(-1))],
                vec!["c", "b", "a"],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                run(RouteStrategy::Priority, input, RequestFacts::default()),
                want
            );
        }
    }

    fn weighted_of(weights: &[(&'static str, u32)]) -> Vec<Candidate<&'static str>> {
        weights
            .iter()
            .map(|(n, w)| Candidate {
                weight: *w,
                ..cand(n)
            })
            .collect()
    }

    /// Shares of first picks, in percent, over `n` orderings.
    fn first_pick_shares(
        weights: &[(&'static str, u32)],
        n: usize,
        mut facts_for: impl FnMut(usize) -> Option<String>,
    ) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(42);
        let mut counts = vec![0usize; weights.len()];
        for i in 0..n {
            let mut c = weighted_of(weights);
            let key = facts_for(i);
            let facts = RequestFacts {
                sticky_key: key.as_deref(),
                ..RequestFacts::default()
            };
            order(RouteStrategy::Weighted, &mut c, &facts, &mut rng);
            let mut sorted = names(&c);
            let first = weights
                .iter()
                .position(|(name, _)| *name == c[0].item)
                .expect("a candidate");
            counts[first] += 1;
            sorted.sort();
            let mut all: Vec<_> = weights.iter().map(|(n, _)| *n).collect();
            all.sort();
            assert_eq!(sorted, all, "a permutation of the candidates");
        }
        counts
            .iter()
            .map(|c| *c as f64 * 100.0 / n as f64)
            .collect()
    }

    #[test]
    fn weighted_splits_by_weight_within_two_points() {
        let weights = [("a", 70), ("b", 20), ("c", 10)];
        let shares = first_pick_shares(&weights, 10_000, |_| None);
        for ((name, w), share) in weights.iter().zip(&shares) {
            assert!((share - f64::from(*w)).abs() <= 2.0, "{name}: {share}%");
        }
    }

    #[test]
    fn weighted_fallback_spreads_by_weight() {
        // With `a` unavailable, its share goes to b and c as 2:1.
        let mut rng = StdRng::seed_from_u64(5);
        let mut b_first = 0;
        for _ in 0..10_000 {
            let mut c = weighted_of(&[("a", 70), ("b", 20), ("c", 10)]);
            c[0] = open(c[0].clone());
            order(
                RouteStrategy::Weighted,
                &mut c,
                &RequestFacts::default(),
                &mut rng,
            );
            assert_eq!(c[2].item, "a", "the open one goes last");
            if c[0].item == "b" {
                b_first += 1;
            }
        }
        let share = f64::from(b_first) / 100.0;
        assert!((share - 66.67).abs() <= 2.0, "{share}%");
    }

    #[test]
    fn weighted_edge_cases_do_not_panic() {
        // All zero: equal shares.
        let shares = first_pick_shares(&[("a", 0), ("b", 0)], 10_000, |_| None);
        assert!((shares[0] - 50.0).abs() <= 2.0, "{shares:?}");
        // Zero among positives: never first, always after the positive ones.
        let mut rng = StdRng::seed_from_u64(6);
        for _ in 0..1000 {
            let mut c = weighted_of(&[("z", 0), ("a", 1), ("y", 0), ("b", 3)]);
            order(
                RouteStrategy::Weighted,
                &mut c,
                &RequestFacts::default(),
                &mut rng,
            );
            assert_eq!(&names(&c)[2..], ["z", "y"]);
        }
        // Empty and single.
        let mut none: Vec<Candidate<&str>> = Vec::new();
        order(
            RouteStrategy::Weighted,
            &mut none,
            &RequestFacts::default(),
            &mut rng,
        );
        let mut one = weighted_of(&[("a", 0)]);
        order(
            RouteStrategy::Weighted,
            &mut one,
            &RequestFacts::default(),
            &mut rng,
        );
        assert_eq!(names(&one), ["a"]);
        // Huge weights do not overflow.
        let shares = first_pick_shares(&[("a", u32::MAX), ("b", u32::MAX)], 2000, |_| None);
        assert!((shares[0] - 50.0).abs() <= 5.0, "{shares:?}");
    }

    #[test]
    fn sticky_keeps_a_key_on_one_deployment() {
        let weights = [("a", 70), ("b", 20), ("c", 10)];
        for key in ["user-1", "user-2", "alice@example.com", ""] {
            let facts = RequestFacts {
                sticky_key: Some(key),
                ..RequestFacts::default()
            };
            let first = {
                let mut c = weighted_of(&weights);
                order(
                    RouteStrategy::Weighted,
                    &mut c,
                    &facts,
                    &mut StdRng::seed_from_u64(0),
                );
                names(&c)
            };
            for seed in 1..50 {
                let mut c = weighted_of(&weights);
                order(
                    RouteStrategy::Weighted,
                    &mut c,
                    &facts,
                    &mut StdRng::seed_from_u64(seed),
                );
                assert_eq!(names(&c), first, "{key}");
            }
            // The list order of the route does not matter either.
            let mut c = weighted_of(&[("c", 10), ("a", 70), ("b", 20)]);
            order(
                RouteStrategy::Weighted,
                &mut c,
                &facts,
                &mut StdRng::seed_from_u64(0),
            );
            assert_eq!(names(&c), first, "{key}");
        }
    }

    #[test]
    fn sticky_spreads_keys_by_weight() {
        let weights = [("a", 70), ("b", 20), ("c", 10)];
        let shares = first_pick_shares(&weights, 10_000, |i| Some(format!("user-{i}")));
        for ((name, w), share) in weights.iter().zip(&shares) {
            assert!((share - f64::from(*w)).abs() <= 2.0, "{name}: {share}%");
        }
    }

    #[test]
    fn sticky_moves_only_the_keys_of_an_unavailable_deployment() {
        let weights = [("a", 50), ("b", 30), ("c", 20)];
        let pick = |key: &str, c_open: bool| {
            let mut c = weighted_of(&weights);
            if c_open {
                c[2] = open(c[2].clone());
            }
            let facts = RequestFacts {
                sticky_key: Some(key),
                ..RequestFacts::default()
            };
            order(
                RouteStrategy::Weighted,
                &mut c,
                &facts,
                &mut StdRng::seed_from_u64(0),
            );
            c[0].item
        };
        let (mut moved, mut to_a) = (0, 0);
        for i in 0..5000 {
            let key = format!("k{i}");
            let (before, after) = (pick(&key, false), pick(&key, true));
            assert_ne!(after, "c");
            if before == "c" {
                moved += 1;
                to_a += usize::from(after == "a");
            } else {
                assert_eq!(before, after, "{key} was not on c");
            }
        }
        // c's keys spread over a and b as 5:3.
        let share = to_a as f64 * 100.0 / moved as f64;
        assert!((share - 62.5).abs() <= 6.0, "{share}% of {moved}");
    }

    #[test]
    fn cheapest_follows_the_request_shape() {
        // µ$ per Mtok: a is cheap to read and dear to write, b the opposite.
        let priced = |name, input, output| Candidate {
            input_price_micros_per_mtok: input,
            output_price_micros_per_mtok: output,
            ..cand(name)
        };
        let candidates = || {
            vec![
                priced("a", 1_000_000, 30_000_000),
                priced("b", 5_000_000, 5_000_000),
                priced("c", 5_000_000, 5_000_000),
            ]
        };
        // (prompt tokens, max output, order)
        let cases = [
            (100_000, 100, vec!["a", "b", "c"]),
            (100, 10_000, vec!["b", "c", "a"]),
            // Equal costs (a: 25k × 1 + 4k × 30 = b: 25k × 5 + 4k × 5) keep the list order.
            (25_000, 4_000, vec!["a", "b", "c"]),
            (0, 0, vec!["a", "b", "c"]),
        ];
        for (prompt, max_out, want) in cases {
            let facts = RequestFacts {
                prompt_tokens: prompt,
                max_output_tokens: max_out,
                sticky_key: None,
            };
            assert_eq!(
                run(RouteStrategy::Cheapest, candidates(), facts),
                want,
                "{prompt}/{max_out}"
            );
        }
    }

    #[test]
    fn fastest_prefers_low_ttft_and_explores_unknowns_one_at_a_time() {
        let ttft = |name, ms: f64| measured(name, |s| s.ewma_ttft_ms = Some(ms));
        let cases = [
            (
                vec![ttft("a", 900.0), ttft("b", 300.0), ttft("c", 600.0)],
                vec!["b", "c", "a"],
            ),
            // Latency stands in for TTFT when no stream was ever measured.
            (
                vec![
                    ttft("a", 500.0),
                    measured("b", |s| s.ewma_latency_ms = Some(200.0)),
                    measured("c", |s| {
                        s.ewma_latency_ms = Some(100.0);
                        s.ewma_ttft_ms = Some(700.0)
                    }),
                ],
                vec!["b", "a", "c"],
            ),
            // An idle unknown goes first; a busy unknown after the measured.
            (
                vec![
                    ttft("a", 500.0),
                    cand("new"),
                    measured("busy", |s| s.in_flight = 1),
                ],
                vec!["new", "a", "busy"],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                run(RouteStrategy::Fastest, input, RequestFacts::default()),
                want
            );
        }
    }

    #[test]
    fn reliable_prefers_the_highest_smoothed_success_rate() {
        let rate = |name, ok, n| {
            measured(name, |s| {
                s.window_successes = ok;
                s.window_requests = n;
                s.success_rate = Some(f64::from(ok) / f64::from(n));
            })
        };
        let cases = [
            (
                vec![rate("a", 80, 100), rate("b", 99, 100), rate("c", 90, 100)],
                vec!["b", "c", "a"],
            ),
            // 0 of 1 (2/3) beats 50 of 100 (0.51); unknown scores like a perfect record.
            (
                vec![rate("half", 50, 100), rate("one-miss", 0, 1), cand("new")],
                vec!["new", "one-miss", "half"],
            ),
            (vec![rate("a", 10, 10), rate("b", 10, 10)], vec!["a", "b"]),
        ];
        for (input, want) in cases {
            assert_eq!(
                run(RouteStrategy::Reliable, input, RequestFacts::default()),
                want
            );
        }
    }

    #[test]
    fn least_busy_prefers_the_fewest_in_flight() {
        let busy = |name, n| measured(name, |s| s.in_flight = n);
        let input = vec![busy("a", 3), busy("b", 0), busy("c", 1), busy("d", 0)];
        assert_eq!(
            run(RouteStrategy::LeastBusy, input, RequestFacts::default()),
            ["b", "d", "c", "a"]
        );
    }

    #[test]
    fn unavailable_candidates_go_last_under_every_strategy() {
        // `best` would win every strategy (first in list, cheapest, fastest, most reliable,
        // idle), but its breaker is open.
        for strategy in [
            RouteStrategy::Priority,
            RouteStrategy::Weighted,
            RouteStrategy::Cheapest,
            RouteStrategy::Fastest,
            RouteStrategy::Reliable,
            RouteStrategy::LeastBusy,
        ] {
            let best = open(Candidate {
                weight: 1000,
                ..measured("best", |s| {
                    s.ewma_ttft_ms = Some(1.0);
                    s.window_successes = 100;
                    s.window_requests = 100;
                })
            });
            let other = |name| Candidate {
                input_price_micros_per_mtok: 1,
                ..measured(name, |s| {
                    s.ewma_ttft_ms = Some(100.0);
                    s.window_successes = 50;
                    s.window_requests = 100;
                    s.in_flight = 2;
                })
            };
            let facts = RequestFacts {
                prompt_tokens: 10,
                ..RequestFacts::default()
            };
            let got = run(strategy, vec![best, other("x"), other("y")], facts);
            assert_eq!(got.last(), Some(&"best"), "{strategy:?}");
            assert_eq!(got.len(), 3);
        }
    }

    #[test]
    fn candidate_from_records() {
        let id = Uuid::new_v4();
        let d = DeploymentRecord {
            id,
            name: "gpt".into(),
            provider_id: Uuid::new_v4(),
            upstream_model: "gpt-4o".into(),
            input_price_micros_per_mtok: 2_500_000,
            output_price_micros_per_mtok: 10_000_000,
            region: None,
            cached_input_price_micros_per_mtok: None,
            max_output_tokens: None,
            catalog_id: None,
            mode: Default::default(),
            context_window: None,
            capabilities: None,
            rpm_limit: None,
            tpm_limit: None,
        };
        let implicit = Candidate::new(0usize, &d, None, DeploymentStats::UNKNOWN);
        assert_eq!((implicit.weight, implicit.priority), (1, None));
        let rc = RouteCandidate {
            deployment_id: id,
            weight: Some(0),
            priority: Some(3),
        };
        let routed = Candidate::new(1usize, &d, Some(&rc), DeploymentStats::UNKNOWN);
        assert_eq!((routed.weight, routed.priority), (0, Some(3)));
        assert_eq!(routed.deployment_id, id);
        assert_eq!(routed.output_price_micros_per_mtok, 10_000_000);
    }
}
