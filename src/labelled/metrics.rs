//! The figures of a site validation, as pure functions: class calls against labels
//! (confusion matrix, sensitivity, specificity, one-vs-rest AUC with a bootstrap interval),
//! calibration (Brier score, expected calibration error, reliability bins), detection on
//! labelled slices, and Dice on labelled masks.

use serde::Serialize;

use crate::report::Class;

/// The three classes, in the classifier's output order.
pub const CLASSES: [Class; 3] = Class::ALL;

/// One labelled series as the pipeline called it.
#[derive(Debug, Clone)]
pub struct Called {
    /// Index into `CLASSES` of the label.
    pub truth: usize,
    /// Probabilities in `CLASSES` order.
    pub probabilities: [f64; 3],
}

impl Called {
    pub fn call(&self) -> usize {
        argmax(&self.probabilities)
    }
}

fn argmax(p: &[f64; 3]) -> usize {
    (0..3).fold(0, |best, i| if p[i] > p[best] { i } else { best })
}

/// Area under the ROC curve by Mann–Whitney, ties counted one half. None without both a
/// positive and a negative.
pub fn auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = scores
        .iter()
        .copied()
        .zip(positive.iter().copied())
        .collect();
    let n_pos = pairs.iter().filter(|p| p.1).count();
    let n_neg = pairs.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    // Rank-sum with average ranks for ties: O(n log n).
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += average_rank * pairs[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

/// Per-class figures, one class against the rest.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassFigures {
    pub class: Class,
    pub series: usize,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
    pub auc: Option<f64>,
    /// 95 % percentile bootstrap interval of the AUC.
    pub auc_ci95: Option<[f64; 2]>,
}

/// Class calls against labels.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassReport {
    pub series: usize,
    pub accuracy: f64,
    /// `confusion[truth][call]`, in `CLASSES` order.
    pub confusion: [[usize; 3]; 3],
    pub per_class: Vec<ClassFigures>,
    /// Mean over series of the summed squared error of the three probabilities.
    pub brier: f64,
    /// Expected calibration error of the top-class confidence, `RELIABILITY_BINS` bins.
    pub ece: f64,
    pub reliability: Vec<ReliabilityBin>,
}

/// Bins of top-class confidence for the reliability diagram.
pub const RELIABILITY_BINS: usize = 10;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub series: usize,
    pub mean_confidence: Option<f64>,
    pub accuracy: Option<f64>,
}

/// Resamples for the bootstrap interval; fixed seed so a report is reproducible.
const BOOTSTRAP_RESAMPLES: usize = 1000;
const BOOTSTRAP_SEED: u64 = 0x6c77_7661_6c69_6421;

pub fn class_report(called: &[Called]) -> Option<ClassReport> {
    if called.is_empty() {
        return None;
    }
    let n = called.len();
    let mut confusion = [[0usize; 3]; 3];
    for c in called {
        confusion[c.truth][c.call()] += 1;
    }
    let correct: usize = (0..3).map(|k| confusion[k][k]).sum();
    let per_class = (0..3)
        .map(|k| {
            let positives: usize = confusion[k].iter().sum();
            let called_k: usize = (0..3).map(|t| confusion[t][k]).sum();
            let negatives = n - positives;
            let true_negatives = negatives - (called_k - confusion[k][k]);
            let scores: Vec<f64> = called.iter().map(|c| c.probabilities[k]).collect();
            let is_k: Vec<bool> = called.iter().map(|c| c.truth == k).collect();
            ClassFigures {
                class: CLASSES[k],
                series: positives,
                sensitivity: (positives > 0).then(|| confusion[k][k] as f64 / positives as f64),
                specificity: (negatives > 0).then(|| true_negatives as f64 / negatives as f64),
                auc: auc(&scores, &is_k),
                auc_ci95: bootstrap_auc(&scores, &is_k),
            }
        })
        .collect();
    let brier = called
        .iter()
        .map(|c| {
            (0..3)
                .map(|k| (c.probabilities[k] - f64::from(u8::from(c.truth == k))).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        / n as f64;
    let (ece, reliability) = calibration(called);
    Some(ClassReport {
        series: n,
        accuracy: correct as f64 / n as f64,
        confusion,
        per_class,
        brier,
        ece,
        reliability,
    })
}

fn calibration(called: &[Called]) -> (f64, Vec<ReliabilityBin>) {
    let mut bins: Vec<(usize, f64, usize)> = vec![(0, 0.0, 0); RELIABILITY_BINS];
    for c in called {
        let confidence = c.probabilities[c.call()];
        let b = ((confidence * RELIABILITY_BINS as f64) as usize).min(RELIABILITY_BINS - 1);
        bins[b].0 += 1;
        bins[b].1 += confidence;
        bins[b].2 += usize::from(c.call() == c.truth);
    }
    let n = called.len() as f64;
    let ece = bins
        .iter()
        .filter(|b| b.0 > 0)
        .map(|&(count, conf, right)| {
            (count as f64 / n) * (conf / count as f64 - right as f64 / count as f64).abs()
        })
        .sum();
    let reliability = bins
        .iter()
        .enumerate()
        .map(|(i, &(count, conf, right))| ReliabilityBin {
            lower: i as f64 / RELIABILITY_BINS as f64,
            upper: (i + 1) as f64 / RELIABILITY_BINS as f64,
            series: count,
            mean_confidence: (count > 0).then(|| conf / count as f64),
            accuracy: (count > 0).then(|| right as f64 / count as f64),
        })
        .collect();
    (ece, reliability)
}

/// splitmix64: fixed-seed randomness that is the same on every machine (the bootstrap's
/// resampling, calibrate's folds).
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The 2.5th and 97.5th percentiles of `statistic` over `BOOTSTRAP_RESAMPLES` resamples
/// (with replacement, fixed seed) of `n` items; `statistic` is given each resample's
/// indices, and resamples where it is None are left out. Every bootstrap interval in the
/// reports comes from here, so they all draw the same resamples.
pub fn bootstrap_ci95(
    n: usize,
    mut statistic: impl FnMut(&[usize]) -> Option<f64>,
) -> Option<[f64; 2]> {
    if n == 0 {
        return None;
    }
    let mut rng = SplitMix(BOOTSTRAP_SEED);
    let mut values = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    let mut picked = Vec::with_capacity(n);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        picked.clear();
        picked.extend((0..n).map(|_| (rng.next() % n as u64) as usize));
        if let Some(v) = statistic(&picked) {
            values.push(v);
        }
    }
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some([at(0.025), at(0.975)])
}

/// The 95 % bootstrap interval of the AUC: resamples without both classes are left out.
pub fn bootstrap_auc(scores: &[f64], positive: &[bool]) -> Option<[f64; 2]> {
    auc(scores, positive)?;
    let n = scores.len();
    let (mut s, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    bootstrap_ci95(n, |picked| {
        s.clear();
        p.clear();
        s.extend(picked.iter().map(|&i| scores[i]));
        p.extend(picked.iter().map(|&i| positive[i]));
        auc(&s, &p)
    })
}

/// The share of right calls among `picked`.
fn accuracy_of(called: &[Called], picked: &[usize]) -> f64 {
    let right = picked
        .iter()
        .filter(|&&i| called[i].call() == called[i].truth)
        .count();
    right as f64 / picked.len() as f64
}

/// The 95 % bootstrap interval of the accuracy (share of right calls); None when empty.
pub fn bootstrap_accuracy(called: &[Called]) -> Option<[f64; 2]> {
    bootstrap_ci95(called.len(), |picked| Some(accuracy_of(called, picked)))
}

/// Detection on labelled slices: a slice is called infected when its lesion area is at
/// least the threshold; the AUC uses the area as the score.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SliceReport {
    pub slices: usize,
    pub infected: usize,
    pub threshold_mm2: f64,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
    pub auc: Option<f64>,
}

pub fn slice_report(area_mm2: &[f64], infected: &[bool], threshold_mm2: f64) -> SliceReport {
    let called: Vec<bool> = area_mm2.iter().map(|&a| a >= threshold_mm2).collect();
    let count = |want_truth: bool, want_call: bool| {
        infected
            .iter()
            .zip(&called)
            .filter(|(t, c)| **t == want_truth && **c == want_call)
            .count()
    };
    let (tp, fn_, tn, fp) = (
        count(true, true),
        count(true, false),
        count(false, false),
        count(false, true),
    );
    SliceReport {
        slices: infected.len(),
        infected: tp + fn_,
        threshold_mm2,
        sensitivity: (tp + fn_ > 0).then(|| tp as f64 / (tp + fn_) as f64),
        specificity: (tn + fp > 0).then(|| tn as f64 / (tn + fp) as f64),
        auc: auc(area_mm2, infected),
    }
}

/// Dice of two binary masks; None when both are empty.
pub fn dice(predicted: &[bool], truth: &[bool]) -> Option<f64> {
    let (mut both, mut p, mut t) = (0usize, 0usize, 0usize);
    for (&a, &b) in predicted.iter().zip(truth) {
        both += usize::from(a && b);
        p += usize::from(a);
        t += usize::from(b);
    }
    (p + t > 0).then(|| 2.0 * both as f64 / (p + t) as f64)
}

/// Dice over series: mean and median of the per-series values, and pooled (all voxels of
/// all series counted together).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DiceSummary {
    pub series: usize,
    pub mean: Option<f64>,
    pub median: Option<f64>,
    pub pooled: Option<f64>,
}

/// Overlap counts of one series: (both, predicted, truth) voxels.
pub type Overlap = (u64, u64, u64);

pub fn overlap(predicted: &[bool], truth: &[bool]) -> Overlap {
    let mut o = (0u64, 0u64, 0u64);
    for (&a, &b) in predicted.iter().zip(truth) {
        o.0 += u64::from(a && b);
        o.1 += u64::from(a);
        o.2 += u64::from(b);
    }
    o
}

pub fn dice_summary(per_series: &[Overlap]) -> DiceSummary {
    let mut values: Vec<f64> = per_series
        .iter()
        .filter(|o| o.1 + o.2 > 0)
        .map(|o| 2.0 * o.0 as f64 / (o.1 + o.2) as f64)
        .collect();
    values.sort_by(f64::total_cmp);
    let total = per_series
        .iter()
        .fold((0, 0, 0), |a, o| (a.0 + o.0, a.1 + o.1, a.2 + o.2));
    DiceSummary {
        series: values.len(),
        mean: (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64),
        median: (!values.is_empty()).then(|| {
            let m = values.len() / 2;
            if values.len() % 2 == 1 {
                values[m]
            } else {
                (values[m - 1] + values[m]) / 2.0
            }
        }),
        pooled: (total.1 + total.2 > 0).then(|| 2.0 * total.0 as f64 / (total.1 + total.2) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
        let pos: Vec<f64> = scores
            .iter()
            .zip(positive)
            .filter(|p| *p.1)
            .map(|p| *p.0)
            .collect();
        let neg: Vec<f64> = scores
            .iter()
            .zip(positive)
            .filter(|p| !*p.1)
            .map(|p| *p.0)
            .collect();
        if pos.is_empty() || neg.is_empty() {
            return None;
        }
        let mut sum = 0.0;
        for a in &pos {
            for b in &neg {
                sum += if a > b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
            }
        }
        Some(sum / (pos.len() * neg.len()) as f64)
    }

    proptest! {
        #[test]
        fn rank_auc_equals_pairwise_counting(
            items in proptest::collection::vec((0u8..6, any::<bool>()), 0..60)
        ) {
            let scores: Vec<f64> = items.iter().map(|i| f64::from(i.0)).collect();
            let labels: Vec<bool> = items.iter().map(|i| i.1).collect();
            let (a, b) = (auc(&scores, &labels), brute_auc(&scores, &labels));
            prop_assert_eq!(a.is_some(), b.is_some());
            if let (Some(a), Some(b)) = (a, b) {
                prop_assert!((a - b).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn perfect_and_chance_classifiers() {
        let perfect: Vec<Called> = (0..30)
            .map(|i| {
                let truth = i % 3;
                let mut p = [0.05; 3];
                p[truth] = 0.9;
                Called {
                    truth,
                    probabilities: p,
                }
            })
            .collect();
        let r = class_report(&perfect).unwrap();
        assert_eq!(r.accuracy, 1.0);
        assert_eq!(r.confusion, [[10, 0, 0], [0, 10, 0], [0, 0, 10]]);
        assert!(r.per_class.iter().all(|c| c.auc == Some(1.0)));
        assert!(r.per_class.iter().all(|c| c.auc_ci95 == Some([1.0, 1.0])));
        // Brier: 0.1² + 0.05² + 0.05² per series.
        assert!((r.brier - 0.015).abs() < 1e-12);
        // Confidence 0.9, accuracy 1: ECE 0.1, all in the last bin.
        assert!((r.ece - 0.1).abs() < 1e-12);
        assert_eq!(r.reliability[9].series, 30);

        let uniform: Vec<Called> = (0..9)
            .map(|i| Called {
                truth: i % 3,
                probabilities: [1.0 / 3.0; 3],
            })
            .collect();
        let r = class_report(&uniform).unwrap();
        assert!(r.per_class.iter().all(|c| c.auc == Some(0.5)));
        // Ties go to the first class: every series is called covid19.
        assert_eq!(r.confusion, [[3, 0, 0], [3, 0, 0], [3, 0, 0]]);
        assert_eq!(r.per_class[0].sensitivity, Some(1.0));
        assert_eq!(r.per_class[0].specificity, Some(0.0));
    }

    /// The AUC interval as it was computed before the resampling moved into
    /// `bootstrap_ci95`: the two must agree exactly (same seed, same draws).
    fn bootstrap_auc_by_hand(scores: &[f64], positive: &[bool]) -> Option<[f64; 2]> {
        auc(scores, positive)?;
        let n = scores.len();
        let mut rng = SplitMix(BOOTSTRAP_SEED);
        let mut values = Vec::new();
        for _ in 0..BOOTSTRAP_RESAMPLES {
            let (mut s, mut p) = (Vec::new(), Vec::new());
            for _ in 0..n {
                let i = (rng.next() % n as u64) as usize;
                s.push(scores[i]);
                p.push(positive[i]);
            }
            if let Some(a) = auc(&s, &p) {
                values.push(a);
            }
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Some([at(0.025), at(0.975)])
    }

    #[test]
    fn auc_interval_is_the_shared_bootstrap() {
        let mut rng = SplitMix(7);
        let scores: Vec<f64> = (0..40).map(|_| (rng.next() % 100) as f64).collect();
        let positive: Vec<bool> = (0..40).map(|i| (i * 7) % 3 == 0).collect();
        let ci = bootstrap_auc(&scores, &positive).unwrap();
        assert_eq!(Some(ci), bootstrap_auc_by_hand(&scores, &positive));
        let a = auc(&scores, &positive).unwrap();
        assert!(ci[0] <= a && a <= ci[1], "{ci:?} around {a}");
        assert!(ci[0] < ci[1]);
        assert_eq!(bootstrap_auc(&scores, &[true; 40]), None);
    }

    fn half_right(n: usize) -> Vec<Called> {
        (0..n)
            .map(|i| Called {
                truth: if i % 2 == 0 { 0 } else { 1 },
                probabilities: [0.6, 0.3, 0.1],
            })
            .collect()
    }

    #[test]
    fn accuracy_interval_matches_the_binomial_spread() {
        // 400 series, half right: the interval is close to 0.5 ± 1.96·√(0.25/400) = ±0.049.
        let called = half_right(400);
        let [lo, hi] = bootstrap_accuracy(&called).unwrap();
        assert!((lo - 0.451).abs() < 0.012, "lower {lo}");
        assert!((hi - 0.549).abs() < 0.012, "upper {hi}");
        // Fewer series, wider interval; the same series, the same interval.
        let [lo40, hi40] = bootstrap_accuracy(&half_right(40)).unwrap();
        assert!(
            hi40 - lo40 > 2.5 * (hi - lo),
            "{lo40}–{hi40} against {lo}–{hi}"
        );
        assert_eq!(bootstrap_accuracy(&called), Some([lo, hi]));
        assert_eq!(bootstrap_accuracy(&[]), None);

        let mut all_right = half_right(30);
        all_right.iter_mut().for_each(|c| c.truth = 0);
        assert_eq!(bootstrap_accuracy(&all_right), Some([1.0, 1.0]));
    }

    #[test]
    fn bootstrap_of_a_mean_has_the_standard_error() {
        // 0..200: mean 99.5, standard deviation 57.7, standard error 4.08; ±1.96 se = ±8.0.
        let values: Vec<f64> = (0..200).map(f64::from).collect();
        let [lo, hi] = bootstrap_ci95(values.len(), |picked| {
            Some(picked.iter().map(|&i| values[i]).sum::<f64>() / picked.len() as f64)
        })
        .unwrap();
        assert!(
            (lo - 91.5).abs() < 1.5 && (hi - 107.5).abs() < 1.5,
            "{lo}–{hi}"
        );
        assert_eq!(bootstrap_ci95(5, |_| None), None);
        assert_eq!(bootstrap_ci95(0, |_| Some(1.0)), None);
    }

    #[test]
    fn slices_and_dice() {
        let r = slice_report(
            &[0.0, 150.0, 99.0, 300.0],
            &[false, true, true, false],
            100.0,
        );
        assert_eq!((r.slices, r.infected), (4, 2));
        assert_eq!((r.sensitivity, r.specificity), (Some(0.5), Some(0.5)));
        assert_eq!(
            dice(&[true, true, false], &[true, false, false]),
            Some(2.0 / 3.0)
        );
        assert_eq!(dice(&[false], &[false]), None);
        let s = dice_summary(&[(1, 2, 1), (0, 0, 0), (3, 3, 3)]);
        assert_eq!(s.series, 2);
        assert!((s.mean.unwrap() - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
        assert!((s.pooled.unwrap() - 8.0 / 9.0).abs() < 1e-12);
    }
}
