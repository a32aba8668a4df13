//! Binary morphology on label volumes: 3D 6-connected components over row runs, and the
//! exact 2D Euclidean distance transform.
//!
//! Components are found on runs (maximal stretches of selected voxels along a row) with a
//! union-find, not on voxels: a 300×512×512 volume holds 78 M voxels but only some 10⁵
//! runs, so no per-voxel label array is ever allocated.

use rayon::prelude::*;

/// Volume extent: slices × rows × columns, slice-major then row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub slices: usize,
    pub rows: usize,
    pub columns: usize,
}

impl Dims {
    pub fn voxels(&self) -> usize {
        self.slices * self.rows * self.columns
    }
    pub fn plane(&self) -> usize {
        self.rows * self.columns
    }
}

/// Columns `c0..c1` (half-open) of row `row` of slice `slice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub slice: u32,
    pub row: u32,
    pub c0: u32,
    pub c1: u32,
}

impl Run {
    /// Voxels in the run. A run always holds at least one (`components` only makes
    /// non-empty ones), so an `is_empty` would always be false.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        (self.c1 - self.c0) as u64
    }
    /// Index of the run's first voxel in the volume.
    pub fn start(&self, dims: Dims) -> usize {
        (self.slice as usize * dims.rows + self.row as usize) * dims.columns + self.c0 as usize
    }
}

/// The 6-connected components of a selection.
#[derive(Debug, Clone)]
pub struct Components {
    pub runs: Vec<Run>,
    /// Component of each run, 0..sizes.len().
    pub component: Vec<u32>,
    /// Voxels in each component.
    pub sizes: Vec<u64>,
}

impl Components {
    /// The component with the most voxels (the first of equals), if any.
    pub fn largest(&self) -> Option<u32> {
        let mut best: Option<(u32, u64)> = None;
        for (i, &s) in self.sizes.iter().enumerate() {
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((i as u32, s));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Each run with its component.
    pub fn labelled_runs(&self) -> impl Iterator<Item = (&Run, u32)> {
        self.runs.iter().zip(self.component.iter().copied())
    }
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let grand = parent[parent[x as usize] as usize];
        parent[x as usize] = grand;
        x = grand;
    }
    x
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        // Keep the smaller index as root so labels follow scan order.
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

/// Joins every run of `a` with every run of `b` it overlaps (both sorted by column).
fn join_overlapping(
    runs: &[Run],
    a: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
    parent: &mut [u32],
) {
    let (mut i, mut j) = (a.start, b.start);
    while i < a.end && j < b.end {
        let (x, y) = (runs[i], runs[j]);
        if x.c0 < y.c1 && y.c0 < x.c1 {
            union(parent, i as u32, j as u32);
        }
        if x.c1 <= y.c1 {
            i += 1;
        } else {
            j += 1;
        }
    }
}

/// The 6-connected components of the voxels (by volume index) for which `selected` holds.
pub fn components(dims: Dims, selected: impl Fn(usize) -> bool + Sync) -> Components {
    // Runs of each slice, in parallel, in row then column order.
    let per_slice: Vec<Vec<Run>> = (0..dims.slices)
        .into_par_iter()
        .map(|z| {
            let mut runs = Vec::new();
            for r in 0..dims.rows {
                let row = (z * dims.rows + r) * dims.columns;
                let mut c = 0;
                while c < dims.columns {
                    if selected(row + c) {
                        let c0 = c;
                        while c < dims.columns && selected(row + c) {
                            c += 1;
                        }
                        runs.push(Run {
                            slice: z as u32,
                            row: r as u32,
                            c0: c0 as u32,
                            c1: c as u32,
                        });
                    } else {
                        c += 1;
                    }
                }
            }
            runs
        })
        .collect();
    let runs: Vec<Run> = per_slice.into_iter().flatten().collect();
    // Index of the first run of each (slice, row), plus one end marker.
    let lines = dims.slices * dims.rows;
    let mut line_start = vec![0usize; lines + 1];
    {
        let mut k = 0;
        for (line, start) in line_start[..lines].iter_mut().enumerate() {
            *start = k;
            while k < runs.len()
                && (runs[k].slice as usize * dims.rows + runs[k].row as usize) == line
            {
                k += 1;
            }
        }
        line_start[lines] = k;
    }
    let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
    for line in 0..lines {
        let here = line_start[line]..line_start[line + 1];
        if here.is_empty() {
            continue;
        }
        let (z, r) = (line / dims.rows, line % dims.rows);
        if r > 0 {
            join_overlapping(
                &runs,
                here.clone(),
                line_start[line - 1]..line_start[line],
                &mut parent,
            );
        }
        if z > 0 {
            let below = line - dims.rows;
            join_overlapping(
                &runs,
                here,
                line_start[below]..line_start[below + 1],
                &mut parent,
            );
        }
    }
    let mut id_of_root = vec![u32::MAX; runs.len()];
    let mut component = vec![0u32; runs.len()];
    let mut sizes = Vec::new();
    for i in 0..runs.len() {
        let root = find(&mut parent, i as u32) as usize;
        if id_of_root[root] == u32::MAX {
            id_of_root[root] = sizes.len() as u32;
            sizes.push(0);
        }
        component[i] = id_of_root[root];
        sizes[id_of_root[root] as usize] += runs[i].len();
    }
    Components {
        runs,
        component,
        sizes,
    }
}

/// Squared 1D distance transform of `f` sampled every `step` mm (Felzenszwalb &
/// Huttenlocher): d(q) = min_p (q·step - p·step)² + f(p).
fn distance_1d(f: &[f64], step: f64, out: &mut [f64], v: &mut [usize], z: &mut [f64]) {
    let n = f.len();
    if n == 0 {
        return;
    }
    let pos = |q: usize| q as f64 * step;
    let mut k = 0;
    v[0] = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        loop {
            let p = v[k];
            let s =
                ((f[q] + pos(q) * pos(q)) - (f[p] + pos(p) * pos(p))) / (2.0 * (pos(q) - pos(p)));
            if s <= z[k] && k > 0 {
                k -= 1;
            } else {
                k += 1;
                v[k] = q;
                z[k] = s;
                z[k + 1] = f64::INFINITY;
                break;
            }
        }
    }
    k = 0;
    for (q, o) in out[..n].iter_mut().enumerate() {
        while z[k + 1] < pos(q) {
            k += 1;
        }
        let d = pos(q) - pos(v[k]);
        *o = d * d + f[v[k]];
    }
}

/// Exact Euclidean distance (mm) from every `inside` pixel of a rows×columns slice to the
/// nearest pixel that is not inside; 0 outside. As scipy's `distance_transform_edt` with
/// `sampling=(row_mm, col_mm)`. A slice with no outside pixel gives infinite distances.
pub fn distance_to_outside(
    inside: &[bool],
    rows: usize,
    columns: usize,
    row_mm: f64,
    col_mm: f64,
) -> Vec<f64> {
    const FAR: f64 = 1e30;
    let mut grid: Vec<f64> = inside.iter().map(|&i| if i { FAR } else { 0.0 }).collect();
    let longest = rows.max(columns);
    let (mut f, mut out) = (vec![0.0; longest], vec![0.0; longest]);
    let (mut v, mut z) = (vec![0usize; longest], vec![0.0; longest + 1]);
    for c in 0..columns {
        for r in 0..rows {
            f[r] = grid[r * columns + c];
        }
        distance_1d(&f[..rows], row_mm, &mut out[..rows], &mut v, &mut z);
        for r in 0..rows {
            grid[r * columns + c] = out[r];
        }
    }
    for r in 0..rows {
        let line = &mut grid[r * columns..(r + 1) * columns];
        f[..columns].copy_from_slice(line);
        distance_1d(&f[..columns], col_mm, &mut out[..columns], &mut v, &mut z);
        line.copy_from_slice(&out[..columns]);
    }
    grid.into_iter()
        .map(|d| {
            if d >= FAR * 0.5 {
                f64::INFINITY
            } else {
                d.sqrt()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: flood fill over voxels.
    fn flood_sizes(mask: &[bool], dims: Dims) -> Vec<u64> {
        let mut seen = vec![false; mask.len()];
        let mut sizes = Vec::new();
        for start in 0..mask.len() {
            if !mask[start] || seen[start] {
                continue;
            }
            let mut stack = vec![start];
            seen[start] = true;
            let mut n = 0;
            while let Some(i) = stack.pop() {
                n += 1;
                let (z, r, c) = (
                    i / dims.plane(),
                    (i / dims.columns) % dims.rows,
                    i % dims.columns,
                );
                let mut push = |j: usize| {
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                };
                if c > 0 {
                    push(i - 1)
                }
                if c + 1 < dims.columns {
                    push(i + 1)
                }
                if r > 0 {
                    push(i - dims.columns)
                }
                if r + 1 < dims.rows {
                    push(i + dims.columns)
                }
                if z > 0 {
                    push(i - dims.plane())
                }
                if z + 1 < dims.slices {
                    push(i + dims.plane())
                }
            }
            sizes.push(n);
        }
        sizes.sort_unstable();
        sizes
    }

    proptest! {
        #[test]
        fn run_components_equal_a_voxel_flood_fill(
            bits in proptest::collection::vec(proptest::bool::weighted(0.45), 4 * 7 * 9)
        ) {
            let dims = Dims { slices: 4, rows: 7, columns: 9 };
            let comps = components(dims, |i| bits[i]);
            let mut sizes = comps.sizes.clone();
            sizes.sort_unstable();
            prop_assert_eq!(sizes, flood_sizes(&bits, dims));
        }

        #[test]
        fn distance_transform_equals_brute_force(
            bits in proptest::collection::vec(proptest::bool::weighted(0.8), 6 * 11),
            row_mm in 0.3f64..3.0, col_mm in 0.3f64..3.0,
        ) {
            let (rows, columns) = (6, 11);
            let d = distance_to_outside(&bits, rows, columns, row_mm, col_mm);
            for r in 0..rows {
                for c in 0..columns {
                    let mut best = f64::INFINITY;
                    for r2 in 0..rows {
                        for c2 in 0..columns {
                            if !bits[r2 * columns + c2] {
                                let dy = (r as f64 - r2 as f64) * row_mm;
                                let dx = (c as f64 - c2 as f64) * col_mm;
                                best = best.min((dy * dy + dx * dx).sqrt());
                            }
                        }
                    }
                    let got = d[r * columns + c];
                    prop_assert!(
                        (got.is_infinite() && best.is_infinite()) || (got - best).abs() < 1e-9,
                        "({r},{c}): {got} vs {best}"
                    );
                }
            }
        }
    }

    #[test]
    fn diagonal_voxels_are_separate_components() {
        let dims = Dims {
            slices: 1,
            rows: 2,
            columns: 2,
        };
        let comps = components(dims, |i| [true, false, false, true][i]);
        assert_eq!(comps.sizes, vec![1, 1]);
        let dims = Dims {
            slices: 2,
            rows: 1,
            columns: 2,
        };
        let comps = components(dims, |i| [true, false, true, true][i]);
        assert_eq!(comps.sizes, vec![3]);
        assert_eq!(comps.largest(), Some(0));
    }
}
