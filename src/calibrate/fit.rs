//! Multinomial logistic regression with L2 regularisation, pure math (no I/O).
//!
//! The model is the shipped classifier's form (`models/train/fit_classifier.py`): features
//! standardised with the training mean and population standard deviation (+1e-9), then
//! `softmax(z W + b)`. The loss, mean cross-entropy + l2/2 ‖W‖² (the bias is not
//! penalised), is convex; Newton's method with a backtracking line search reaches its
//! minimum in a few dozen steps for the dozen features and three classes we have. The
//! standardisation is folded into W and b at the end, as the Python export does, so the
//! ONNX graph is one Gemm and a Softmax.

/// A fitted model on raw (unstandardised) features: p = softmax(x W + b).
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// Row-major `features × classes`.
    pub w: Vec<f64>,
    pub b: Vec<f64>,
    pub features: usize,
    pub classes: usize,
    /// Newton steps taken.
    pub iterations: usize,
}

impl Fitted {
    pub fn logits(&self, x: &[f64]) -> Vec<f64> {
        (0..self.classes)
            .map(|k| {
                self.b[k]
                    + (0..self.features)
                        .map(|j| x[j] * self.w[j * self.classes + k])
                        .sum::<f64>()
            })
            .collect()
    }

    pub fn predict(&self, x: &[f64]) -> Vec<f64> {
        softmax(&self.logits(x))
    }
}

pub fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Parameters on standardised features: `theta[k * (d + 1) + j]`, j = d is the bias.
struct Problem<'a> {
    z: &'a [Vec<f64>],
    y: &'a [usize],
    d: usize,
    k: usize,
    l2: f64,
}

impl Problem<'_> {
    fn at(&self, k: usize, j: usize) -> usize {
        k * (self.d + 1) + j
    }

    fn probs(&self, theta: &[f64], x: &[f64]) -> Vec<f64> {
        let z: Vec<f64> = (0..self.k)
            .map(|k| {
                theta[self.at(k, self.d)]
                    + (0..self.d)
                        .map(|j| x[j] * theta[self.at(k, j)])
                        .sum::<f64>()
            })
            .collect();
        softmax(&z)
    }

    fn loss(&self, theta: &[f64]) -> f64 {
        let n = self.z.len() as f64;
        let ce: f64 = self
            .z
            .iter()
            .zip(self.y)
            .map(|(x, &y)| -self.probs(theta, x)[y].max(1e-300).ln())
            .sum::<f64>()
            / n;
        let pen: f64 = (0..self.k)
            .flat_map(|k| (0..self.d).map(move |j| (k, j)))
            .map(|(k, j)| theta[self.at(k, j)].powi(2))
            .sum();
        ce + 0.5 * self.l2 * pen
    }

    /// Gradient and Hessian (row-major P × P).
    fn derivatives(&self, theta: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let p_len = self.k * (self.d + 1);
        let n = self.z.len() as f64;
        let mut g = vec![0.0; p_len];
        let mut h = vec![0.0; p_len * p_len];
        let mut zz = vec![0.0; self.d + 1];
        for (x, &y) in self.z.iter().zip(self.y) {
            zz[..self.d].copy_from_slice(x);
            zz[self.d] = 1.0;
            let p = self.probs(theta, x);
            for a in 0..self.k {
                let r = p[a] - if a == y { 1.0 } else { 0.0 };
                for j in 0..=self.d {
                    g[self.at(a, j)] += r * zz[j] / n;
                }
                for c in 0..self.k {
                    let s = p[a] * (if a == c { 1.0 } else { 0.0 } - p[c]) / n;
                    for i in 0..=self.d {
                        let row = self.at(a, i) * p_len;
                        for j in 0..=self.d {
                            h[row + self.at(c, j)] += s * zz[i] * zz[j];
                        }
                    }
                }
            }
        }
        for k in 0..self.k {
            for j in 0..self.d {
                let i = self.at(k, j);
                g[i] += self.l2 * theta[i];
                h[i * p_len + i] += self.l2;
            }
        }
        (g, h)
    }
}

/// Solves `a x = b` for symmetric positive definite `a` (Cholesky); None if not PD.
fn cholesky_solve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s = a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i * n + k] * y[k]).sum::<f64>()) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k * n + i] * x[k]).sum::<f64>()) / l[i * n + i];
    }
    Some(x)
}

/// Fits `classes` classes to rows `x` (all of one length) with labels `y` < classes.
/// `l2` > 0 keeps the weights finite even on separable data.
pub fn fit(x: &[Vec<f64>], y: &[usize], classes: usize, l2: f64) -> Fitted {
    assert!(!x.is_empty() && x.len() == y.len() && l2 > 0.0);
    let d = x[0].len();
    let n = x.len() as f64;
    let mu: Vec<f64> = (0..d)
        .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let sd: Vec<f64> = (0..d)
        .map(|j| (x.iter().map(|r| (r[j] - mu[j]).powi(2)).sum::<f64>() / n).sqrt() + 1e-9)
        .collect();
    let z: Vec<Vec<f64>> = x
        .iter()
        .map(|r| (0..d).map(|j| (r[j] - mu[j]) / sd[j]).collect())
        .collect();
    let problem = Problem {
        z: &z,
        y,
        d,
        k: classes,
        l2,
    };
    let p_len = classes * (d + 1);
    let mut theta = vec![0.0; p_len];
    let mut loss = problem.loss(&theta);
    let mut iterations = 0;
    for _ in 0..200 {
        iterations += 1;
        let (g, mut h) = problem.derivatives(&theta);
        if g.iter().map(|v| v * v).sum::<f64>().sqrt() < 1e-10 {
            break;
        }
        // The biases are unpenalised and shift-invariant under softmax: the Hessian is
        // singular along (1, …, 1); a tiny ridge picks the minimum-norm step.
        let mut ridge = 1e-10;
        let step = loop {
            for i in 0..p_len {
                h[i * p_len + i] += ridge;
            }
            if let Some(s) = cholesky_solve(&h, &g) {
                break s;
            }
            ridge *= 100.0;
        };
        let slope: f64 = -g.iter().zip(&step).map(|(a, b)| a * b).sum::<f64>();
        let mut t = 1.0;
        let mut next;
        loop {
            next = theta
                .iter()
                .zip(&step)
                .map(|(a, s)| a - t * s)
                .collect::<Vec<_>>();
            let l = problem.loss(&next);
            if l <= loss + 1e-4 * t * slope || t < 1e-10 {
                break;
            }
            t *= 0.5;
        }
        let new_loss = problem.loss(&next);
        theta = next;
        let done = (loss - new_loss).abs() < 1e-14;
        loss = new_loss;
        if done {
            break;
        }
    }
    // Fold the standardisation: (x - mu)/sd · w + b = x · (w/sd) + (b - Σ mu w / sd).
    let mut w = vec![0.0; d * classes];
    let mut b = vec![0.0; classes];
    for k in 0..classes {
        b[k] = theta[problem.at(k, d)];
        for j in 0..d {
            let wj = theta[problem.at(k, j)] / sd[j];
            w[j * classes + k] = wj;
            b[k] -= mu[j] * wj;
        }
    }
    // Softmax ignores a common shift of the biases; centre them for a tidy export.
    let mean_b = b.iter().sum::<f64>() / classes as f64;
    b.iter_mut().for_each(|v| *v -= mean_b);
    Fitted {
        w,
        b,
        features: d,
        classes,
        iterations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform and normal draws from the crate's fixed-seed splitmix64.
    struct Rng(crate::labelled::metrics::SplitMix);
    impl Rng {
        fn next(&mut self) -> f64 {
            (self.0.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.next().max(1e-300), self.next());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    fn draw(truth: &Fitted, n: usize, rng: &mut Rng) -> (Vec<Vec<f64>>, Vec<usize>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            // Features on different scales and offsets, as the real ones are.
            let row: Vec<f64> = (0..truth.features)
                .map(|j| 0.5 * j as f64 + (1.0 + j as f64) * rng.normal())
                .collect();
            let p = truth.predict(&row);
            let u = rng.next();
            let mut acc = 0.0;
            let mut class = truth.classes - 1;
            for (k, pk) in p.iter().enumerate() {
                acc += pk;
                if u < acc {
                    class = k;
                    break;
                }
            }
            x.push(row);
            y.push(class);
        }
        (x, y)
    }

    #[test]
    fn recovers_a_known_model() {
        let truth = Fitted {
            // 3 features × 3 classes.
            w: vec![1.5, -0.5, -1.0, -0.4, 0.8, -0.4, 0.1, -0.2, 0.1],
            b: vec![0.3, -0.2, -0.1],
            features: 3,
            classes: 3,
            iterations: 0,
        };
        let mut rng = Rng(crate::labelled::metrics::SplitMix(12));
        let (x, y) = draw(&truth, 20_000, &mut rng);
        let fitted = fit(&x, &y, 3, 1e-6);
        // Only differences between classes are identified: compare centred columns.
        for j in 0..3 {
            let centre = |w: &[f64]| (0..3).map(|k| w[j * 3 + k]).sum::<f64>() / 3.0;
            let (ct, cf) = (centre(&truth.w), centre(&fitted.w));
            for k in 0..3 {
                let (t, f) = (truth.w[j * 3 + k] - ct, fitted.w[j * 3 + k] - cf);
                assert!((t - f).abs() < 0.08, "w[{j}][{k}]: truth {t}, fitted {f}");
            }
        }
        for k in 0..3 {
            assert!(
                (truth.b[k] - fitted.b[k]).abs() < 0.12,
                "b[{k}]: {:?} vs {:?}",
                truth.b,
                fitted.b
            );
        }
        assert!(fitted.iterations < 50);
    }

    #[test]
    fn separable_data_stays_finite() {
        // Each class in its own region of feature 0: without L2 the weights run away.
        let x: Vec<Vec<f64>> = (0..30)
            .map(|i| {
                vec![
                    (i / 10) as f64 * 10.0 + (i % 10) as f64 * 0.1,
                    (i % 7) as f64,
                ]
            })
            .collect();
        let y: Vec<usize> = (0..30).map(|i| i / 10).collect();
        let fitted = fit(&x, &y, 3, 1e-2);
        assert!(fitted.w.iter().chain(&fitted.b).all(|v| v.is_finite()));
        assert!(fitted.w.iter().all(|v| v.abs() < 100.0), "{:?}", fitted.w);
        for (row, &class) in x.iter().zip(&y) {
            let p = fitted.predict(row);
            let call = (0..3).fold(0, |b, k| if p[k] > p[b] { k } else { b });
            assert_eq!(call, class);
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = Rng(crate::labelled::metrics::SplitMix(7));
        let z: Vec<Vec<f64>> = (0..40)
            .map(|_| (0..4).map(|_| rng.normal()).collect())
            .collect();
        let y: Vec<usize> = (0..40).map(|i| i % 3).collect();
        let problem = Problem {
            z: &z,
            y: &y,
            d: 4,
            k: 3,
            l2: 0.1,
        };
        let theta: Vec<f64> = (0..15).map(|_| rng.normal() * 0.5).collect();
        let (g, h) = problem.derivatives(&theta);
        let eps = 1e-6;
        for i in 0..15 {
            let mut up = theta.clone();
            let mut down = theta.clone();
            up[i] += eps;
            down[i] -= eps;
            let numeric = (problem.loss(&up) - problem.loss(&down)) / (2.0 * eps);
            assert!(
                (numeric - g[i]).abs() < 1e-6,
                "gradient {i}: {numeric} vs {}",
                g[i]
            );
            let (gu, _) = problem.derivatives(&up);
            let (gd, _) = problem.derivatives(&down);
            for j in 0..15 {
                let numeric = (gu[j] - gd[j]) / (2.0 * eps);
                assert!((numeric - h[j * 15 + i]).abs() < 1e-5, "hessian {j},{i}");
            }
        }
    }

    #[test]
    fn the_minimum_has_zero_gradient() {
        let mut rng = Rng(crate::labelled::metrics::SplitMix(3));
        let x: Vec<Vec<f64>> = (0..60)
            .map(|_| (0..5).map(|_| rng.normal()).collect())
            .collect();
        let y: Vec<usize> = (0..60).map(|i| (i * 7) % 3).collect();
        let fitted = fit(&x, &y, 3, 0.05);
        assert!(fitted.iterations < 100);
        // On raw features the penalised objective's gradient in b must vanish: the
        // mean of p - onehot over the rows is zero (the bias is unpenalised).
        let mut r = [0.0; 3];
        for (row, &c) in x.iter().zip(&y) {
            let p = fitted.predict(row);
            for k in 0..3 {
                r[k] += p[k] - if k == c { 1.0 } else { 0.0 };
            }
        }
        assert!(r.iter().all(|v| v.abs() < 1e-8), "{r:?}");
    }
}
