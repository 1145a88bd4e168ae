//! The gate's statistics: a one-sided Mann–Whitney U test, a bootstrap interval on the ratio of
//! two medians (resampling whole rounds, so that samples taken side by side stay together), and
//! the three-way verdict built on them.
//!
//! A comparison is made of *rounds*: in each round the baseline side (`a`) and the current side
//! (`b`) each took a batch of samples, one right after the other, so both saw the same machine.
//! Samples are costs (seconds per operation, or instructions): larger is slower.
//!
//! The verdict on a slowdown threshold `t` (e.g. 1.2 = 20% slower):
//! - **regressed** when the slowdown is significant (Mann–Whitney, `p < alpha`) *and* the whole
//!   bootstrap interval of `median(b) ÷ median(a)` lies above `t`;
//! - **pass** when the whole interval lies at or below `t` (whatever slowdown there is, it is
//!   smaller than the threshold);
//! - **inconclusive** otherwise: the two sides' own spread is too wide to tell. The gate then
//!   measures again (more rounds, pooled), and reports a last inconclusive as such.

use serde::{Deserialize, Serialize};

/// The result of a one-sided Mann–Whitney U test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of `b`: the number of pairs `(a_i, b_j)` with `b_j > a_i`, ties counting one half.
    pub u: f64,
    /// The probability, if `a` and `b` came from one distribution, of a U at least this large
    /// (the alternative: `b` tends to be larger).
    pub p: f64,
    /// Whether `p` is exact (small samples without ties) or the normal approximation.
    pub exact: bool,
}

/// Samples up to this size (each side) without ties get the exact distribution of U.
const EXACT_MAX: usize = 40;

/// One-sided Mann–Whitney U test of "`b` tends to be larger than `a`". Exact for small samples
/// without ties, otherwise the normal approximation with the tie correction and a continuity
/// correction. Non-finite values are ignored; an empty side gives `p = 1`.
pub fn mann_whitney_greater(a: &[f64], b: &[f64]) -> MannWhitney {
    let a: Vec<f64> = a.iter().copied().filter(|x| x.is_finite()).collect();
    let b: Vec<f64> = b.iter().copied().filter(|x| x.is_finite()).collect();
    let (m, n) = (a.len(), b.len());
    if m == 0 || n == 0 {
        return MannWhitney {
            u: 0.0,
            p: 1.0,
            exact: true,
        };
    }
    let mut u: f64 = 0.0;
    for y in &b {
        for x in &a {
            if y > x {
                u += 1.0;
            } else if y == x {
                u += 0.5;
            }
        }
    }
    // Tie groups over the pooled sample.
    let mut pooled: Vec<f64> = a.iter().chain(b.iter()).copied().collect();
    pooled.sort_by(|x, y| x.partial_cmp(y).expect("finite"));
    let mut ties = Vec::new();
    let mut i = 0;
    while i < pooled.len() {
        let mut j = i;
        while j + 1 < pooled.len() && pooled[j + 1] == pooled[i] {
            j += 1;
        }
        if j > i {
            ties.push((j - i + 1) as f64);
        }
        i = j + 1;
    }
    if ties.is_empty() && m <= EXACT_MAX && n <= EXACT_MAX {
        // U is an integer here; P(U >= u) from the exact null distribution.
        let dist = u_distribution(m, n);
        let total: f64 = dist.iter().sum();
        let k = u.round() as usize;
        let tail: f64 = dist[k.min(dist.len())..].iter().sum();
        return MannWhitney {
            u,
            p: (tail / total).clamp(0.0, 1.0),
            exact: true,
        };
    }
    let (mf, nf) = (m as f64, n as f64);
    let big_n = mf + nf;
    let tie_term: f64 = ties.iter().map(|t| t * t * t - t).sum::<f64>() / (big_n * (big_n - 1.0));
    let var = mf * nf / 12.0 * ((big_n + 1.0) - tie_term);
    let mean = mf * nf / 2.0;
    let p = if var <= 0.0 {
        if u > mean {
            0.0
        } else {
            1.0
        }
    } else {
        let z = (u - mean - 0.5) / var.sqrt();
        normal_sf(z)
    };
    MannWhitney {
        u,
        p: p.clamp(0.0, 1.0),
        exact: false,
    }
}

/// The null distribution of U for sample sizes `m` and `n`: entry `k` is the number of
/// orderings with U = k (the recurrence on where the largest value sits).
fn u_distribution(m: usize, n: usize) -> Vec<f64> {
    // f[i][j] = distribution for i a's and j b's, built row by row.
    let mut prev: Vec<Vec<f64>> = (0..=n).map(|_| vec![1.0]).collect(); // i = 0: U = 0 only
    for i in 1..=m {
        let mut cur: Vec<Vec<f64>> = Vec::with_capacity(n + 1);
        cur.push(vec![1.0]); // j = 0
        for j in 1..=n {
            // The largest is a b (it beats all i a's: U + i) or an a (U unchanged).
            let with_b = &cur[j - 1];
            let with_a = &prev[j];
            let len = i * j + 1;
            let mut d = vec![0.0; len];
            for (k, c) in with_b.iter().enumerate() {
                d[k + i] += c;
            }
            for (k, c) in with_a.iter().enumerate() {
                d[k] += c;
            }
            cur.push(d);
        }
        prev = cur;
    }
    prev.pop().expect("n + 1 entries")
}

/// The standard normal survival function, `P(Z > z)`.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' `erfcc`, relative error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The median of finite values (NaN when there are none).
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A small deterministic generator (SplitMix64): the bootstrap gives the same interval for the
/// same samples.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// One round: the baseline side's batch and the current side's batch, taken back to back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// The baseline side's samples.
    pub a: Vec<f64>,
    /// The current side's samples.
    pub b: Vec<f64>,
}

/// Resamples to draw for the bootstrap.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// The statistic a ratio is taken of.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Stat {
    /// The median (the A/B comparison: both sides saw the same load).
    Median,
    /// The lower decile (the stored ratios, whose two costs react differently to load: the
    /// fastest tenth of each is the least disturbed estimate, and not one lucky sample).
    LowDecile,
}

impl Stat {
    /// The statistic of `xs`.
    pub fn of(self, xs: &[f64]) -> f64 {
        match self {
            Stat::Median => median(xs),
            Stat::LowDecile => quantile(xs, 0.1),
        }
    }
}

/// The `q` quantile of finite values (nearest rank; NaN when there are none).
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let i = (q.clamp(0.0, 1.0) * (v.len() - 1) as f64).round() as usize;
    v[i]
}

/// A percentile bootstrap interval (`level`, e.g. 0.95) on `median(b) ÷ median(a)`, resampling
/// whole rounds with replacement. Returns `(point, lo, hi)`.
pub fn bootstrap_ratio(rounds: &[Round], level: f64, resamples: usize) -> (f64, f64, f64) {
    bootstrap_ratio_of(Stat::Median, rounds, level, resamples)
}

/// [`bootstrap_ratio`] of another statistic.
pub fn bootstrap_ratio_of(
    stat: Stat,
    rounds: &[Round],
    level: f64,
    resamples: usize,
) -> (f64, f64, f64) {
    let median = |xs: &[f64]| stat.of(xs);
    let all_a: Vec<f64> = rounds.iter().flat_map(|r| r.a.iter().copied()).collect();
    let all_b: Vec<f64> = rounds.iter().flat_map(|r| r.b.iter().copied()).collect();
    let point = median(&all_b) / median(&all_a);
    if rounds.len() < 2 || !point.is_finite() {
        return (point, f64::NAN, f64::NAN);
    }
    let mut rng = SplitMix64::new(0x6d70_726f_6367_6174); // "mprocgat"
    let mut ratios = Vec::with_capacity(resamples);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..resamples {
        a.clear();
        b.clear();
        for _ in 0..rounds.len() {
            let r = &rounds[rng.below(rounds.len())];
            a.extend_from_slice(&r.a);
            b.extend_from_slice(&r.b);
        }
        let q = median(&b) / median(&a);
        if q.is_finite() {
            ratios.push(q);
        }
    }
    if ratios.is_empty() {
        return (point, f64::NAN, f64::NAN);
    }
    ratios.sort_by(|x, y| x.partial_cmp(y).expect("finite"));
    let tail = (1.0 - level) / 2.0;
    let at = |q: f64| {
        let i = (q * (ratios.len() - 1) as f64).round() as usize;
        ratios[i.min(ratios.len() - 1)]
    };
    (point, at(tail), at(1.0 - tail))
}

/// The verdict on one comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Within the threshold.
    Pass,
    /// Significantly slower, and by more than the threshold.
    Regressed,
    /// Too noisy to tell.
    Inconclusive,
}

/// A comparison's figures and verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// `median(b) ÷ median(a)` over all samples.
    pub ratio: f64,
    /// The bootstrap interval's lower end.
    pub lo: f64,
    /// Its upper end.
    pub hi: f64,
    /// The one-sided Mann–Whitney p-value ("b is slower").
    pub p: f64,
    /// The slowdown threshold.
    pub threshold: f64,
    /// Rounds and samples per side.
    pub rounds: usize,
    /// The verdict.
    pub verdict: Verdict,
}

/// The significance level of the Mann–Whitney test.
pub const ALPHA: f64 = 0.01;
/// The bootstrap interval's level.
pub const LEVEL: f64 = 0.95;

/// Judges `rounds` against the slowdown `threshold` (see the module docs).
pub fn judge(rounds: &[Round], threshold: f64) -> Judgement {
    judge_of(Stat::Median, rounds, threshold)
}

/// [`judge`] on the ratio of another statistic.
pub fn judge_of(stat: Stat, rounds: &[Round], threshold: f64) -> Judgement {
    let all_a: Vec<f64> = rounds.iter().flat_map(|r| r.a.iter().copied()).collect();
    let all_b: Vec<f64> = rounds.iter().flat_map(|r| r.b.iter().copied()).collect();
    let mw = mann_whitney_greater(&all_a, &all_b);
    let (ratio, lo, hi) = bootstrap_ratio_of(stat, rounds, LEVEL, BOOTSTRAP_RESAMPLES);
    let verdict = if !(lo.is_finite() && hi.is_finite()) {
        Verdict::Inconclusive
    } else if mw.p < ALPHA && lo > threshold {
        Verdict::Regressed
    } else if hi <= threshold {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    };
    Judgement {
        ratio,
        lo,
        hi,
        p: mw.p,
        threshold,
        rounds: rounds.len(),
        verdict,
    }
}

/// Judges deterministic counts (instructions): `b ÷ a` against `threshold`, no statistics.
pub fn judge_counts(a: u64, b: u64, threshold: f64) -> Judgement {
    let ratio = b as f64 / a.max(1) as f64;
    Judgement {
        ratio,
        lo: ratio,
        hi: ratio,
        p: if ratio > threshold { 0.0 } else { 1.0 },
        threshold,
        rounds: 1,
        verdict: if ratio > threshold {
            Verdict::Regressed
        } else {
            Verdict::Pass
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approx(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn mann_whitney_exact_small_samples() {
        // b entirely above a: U = 25, P(U >= 25) = 1 / C(10, 5) = 1/252.
        let r = mann_whitney_greater(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!(r.u, 25.0);
        assert!(r.exact);
        assert!(approx(r.p, 1.0 / 252.0, 1e-12), "{}", r.p);
        // b entirely below: U = 0, P(U >= 0) = 1.
        let r = mann_whitney_greater(&[6.0, 7.0, 8.0], &[1.0, 2.0, 3.0]);
        assert_eq!(r.u, 0.0);
        assert!(approx(r.p, 1.0, 1e-12));
        // a = [1, 4], b = [2, 3]: U = 2 of 4; orderings of 2+2 with U >= 2 are 4 of 6.
        let r = mann_whitney_greater(&[1.0, 4.0], &[2.0, 3.0]);
        assert_eq!(r.u, 2.0);
        assert!(approx(r.p, 4.0 / 6.0, 1e-12), "{}", r.p);
    }

    #[test]
    fn u_distribution_counts_every_ordering() {
        for (m, n) in [(1, 1), (3, 4), (5, 5), (7, 2)] {
            let d = u_distribution(m, n);
            assert_eq!(d.len(), m * n + 1);
            let total: f64 = d.iter().sum();
            let binom = (1..=m).fold(1.0, |acc, k| acc * (n + k) as f64 / k as f64);
            assert!(approx(total, binom, 1e-6), "{m} {n}: {total} vs {binom}");
            // Symmetric around mn/2.
            for k in 0..d.len() {
                assert_eq!(d[k], d[d.len() - 1 - k]);
            }
        }
    }

    #[test]
    fn mann_whitney_normal_approximation_with_ties() {
        // Ties force the normal approximation. a = [1,1,2,2], b = [2,3,3,4]:
        // U = 1+1 (vs the 1s, b=2) + 0.5*2 (vs the 2s) + 3 values above all 4 a's = 2+1+12 = 15.
        let r = mann_whitney_greater(&[1.0, 1.0, 2.0, 2.0], &[2.0, 3.0, 3.0, 4.0]);
        assert!(!r.exact);
        assert_eq!(r.u, 15.0);
        // mean 8; N = 8; ties: {1,1} t=2, {2,2,2} t=3, {3,3} t=2 -> sum(t^3-t) = 6+24+6 = 36;
        // var = 16/12 * (9 - 36/56) = 11.1428...; z = (15 - 8 - 0.5)/sqrt(var) = 1.94722...
        let z: f64 = 6.5 / (16.0 / 12.0 * (9.0 - 36.0 / 56.0_f64)).sqrt();
        assert!(approx(r.p, normal_sf(z), 1e-12));
        // P(Z > 1.94722) = 0.02576 (tables).
        assert!(approx(r.p, 0.02576, 2e-4), "{}", r.p);
    }

    #[test]
    fn normal_tail_matches_tables() {
        assert!(approx(normal_sf(0.0), 0.5, 1e-7));
        assert!(approx(normal_sf(1.959_964), 0.025, 1e-6));
        assert!(approx(normal_sf(-1.644_854), 0.95, 1e-6));
        assert!(approx(normal_sf(3.090_232), 0.001, 1e-6));
    }

    fn rounds(a: &[&[f64]], b: &[&[f64]]) -> Vec<Round> {
        a.iter()
            .zip(b)
            .map(|(a, b)| Round {
                a: a.to_vec(),
                b: b.to_vec(),
            })
            .collect()
    }

    #[test]
    fn bootstrap_interval_brackets_the_ratio_and_is_deterministic() {
        let a: Vec<Vec<f64>> = (0..8)
            .map(|i| vec![10.0 + i as f64 * 0.1, 10.2, 9.9])
            .collect();
        let b: Vec<Vec<f64>> = a
            .iter()
            .map(|r| r.iter().map(|x| x * 1.5).collect())
            .collect();
        let rs: Vec<Round> = a
            .iter()
            .zip(&b)
            .map(|(a, b)| Round {
                a: a.clone(),
                b: b.clone(),
            })
            .collect();
        let (p, lo, hi) = bootstrap_ratio(&rs, 0.95, 2000);
        assert!(approx(p, 1.5, 1e-12));
        assert!(lo <= 1.5 + 1e-12 && hi >= 1.5 - 1e-12 && lo > 1.4 && hi < 1.6);
        assert_eq!(bootstrap_ratio(&rs, 0.95, 2000), (p, lo, hi));
        // One round: no interval.
        let (_, lo, hi) = bootstrap_ratio(&rs[..1], 0.95, 100);
        assert!(lo.is_nan() && hi.is_nan());
    }

    #[test]
    fn verdicts_pass_regressed_and_inconclusive() {
        // Same costs with a little jitter: pass.
        let quiet: Vec<Round> = (0..6)
            .map(|i| {
                let j = (i % 3) as f64 * 0.01;
                Round {
                    a: vec![1.00 + j, 1.02, 0.99, 1.01],
                    b: vec![1.01, 0.99 + j, 1.00, 1.02],
                }
            })
            .collect();
        let j = judge(&quiet, 1.2);
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        // 1.5x slower, consistently: regressed.
        let slow: Vec<Round> = quiet
            .iter()
            .map(|r| Round {
                a: r.a.clone(),
                b: r.b.iter().map(|x| x * 1.5).collect(),
            })
            .collect();
        let j = judge(&slow, 1.2);
        assert_eq!(j.verdict, Verdict::Regressed, "{j:?}");
        assert!(j.p < ALPHA && j.lo > 1.2);
        // Faster: pass.
        let fast: Vec<Round> = quiet
            .iter()
            .map(|r| Round {
                a: r.a.clone(),
                b: r.b.iter().map(|x| x * 0.7).collect(),
            })
            .collect();
        assert_eq!(judge(&fast, 1.2).verdict, Verdict::Pass);
        // Wildly noisy on both sides (a load spike now on one side, now on the other): the
        // interval straddles the threshold, inconclusive rather than pass or fail.
        let noisy = rounds(
            &[
                &[1.0, 3.0, 1.1],
                &[2.9, 1.0, 3.2],
                &[1.0, 1.1, 0.9],
                &[3.1, 2.8, 1.0],
            ],
            &[
                &[3.0, 1.2, 2.9],
                &[1.1, 3.0, 1.0],
                &[3.3, 2.9, 3.0],
                &[1.0, 1.0, 2.7],
            ],
        );
        let j = judge(&noisy, 1.2);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        // Too few rounds for an interval: inconclusive.
        assert_eq!(judge(&slow[..1], 1.2).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn quantiles_and_the_low_decile() {
        let xs: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.0), 1.0);
        assert_eq!(quantile(&xs, 0.1), 2.0);
        assert_eq!(quantile(&xs, 0.5), 6.0);
        assert_eq!(quantile(&xs, 1.0), 11.0);
        assert_eq!(Stat::LowDecile.of(&xs), 2.0);
        assert_eq!(Stat::Median.of(&xs), 6.0);
        // Half the samples disturbed (ten times slower): the low decile does not move.
        let mut disturbed = xs.clone();
        for x in disturbed.iter_mut().skip(1).step_by(2) {
            *x *= 10.0;
        }
        assert_eq!(Stat::LowDecile.of(&disturbed), 3.0);
    }

    #[test]
    fn counts_are_judged_on_their_ratio() {
        assert_eq!(judge_counts(1000, 1015, 1.02).verdict, Verdict::Pass);
        assert_eq!(judge_counts(1000, 1021, 1.02).verdict, Verdict::Regressed);
        assert_eq!(judge_counts(1000, 900, 1.02).verdict, Verdict::Pass);
    }
}
