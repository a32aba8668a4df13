//! Known-answer tests on a synthetic chest phantom made here: an elliptic body of soft
//! tissue, two ellipsoid lungs at -850 HU and two lesion spheres (-500 HU ground-glass-like,
//! +20 HU consolidation-like) of known volume.
//!
//! 1. Quantification on the phantom's exact masks: errors come from voxelisation only.
//! 2. The whole pipeline (models included) on the phantom's HU: the tolerances are the
//!    models' accuracy on this phantom, stated below and printed.

use std::f64::consts::PI;
use std::path::PathBuf;
use std::sync::Arc;

use lungwatch::analysis::Analyser;
use lungwatch::analysis::models::ModelSet;
use lungwatch::analysis::morphology::Dims;
use lungwatch::analysis::postprocess::{CONSOLIDATION, GROUND_GLASS, LEFT_LUNG, RIGHT_LUNG};
use lungwatch::analysis::quantify;
use lungwatch::dicom::InstanceHeader;
use lungwatch::dicom::volume::{Spacing, Volume};

const ROWS: usize = 256;
const COLUMNS: usize = 256;
const SLICES: usize = 110;
const PIXEL_MM: f64 = 1.4;
const SLICE_MM: f64 = 2.5;

struct Sphere {
    center: [f64; 3],
    radius: f64,
    hu: i16,
    class: u8,
}

/// Lung ellipsoid: centre (x, y, z) and semi-axes, in mm; x to the patient's left.
struct Ellipsoid {
    center: [f64; 3],
    semi: [f64; 3],
    side: u8,
}

impl Ellipsoid {
    fn contains(&self, p: [f64; 3]) -> bool {
        (0..3)
            .map(|k| ((p[k] - self.center[k]) / self.semi[k]).powi(2))
            .sum::<f64>()
            <= 1.0
    }
    fn volume_ml(&self) -> f64 {
        4.0 / 3.0 * PI * self.semi.iter().product::<f64>() / 1000.0
    }
}

struct Phantom {
    volume: Volume,
    lung: Vec<u8>,
    lesion: Vec<u8>,
    lungs: Vec<Ellipsoid>,
    spheres: Vec<Sphere>,
}

/// Centre of voxel (z, r, c) in mm, x to the patient's left, y posterior, z superior.
fn position(z: usize, r: usize, c: usize) -> [f64; 3] {
    [
        (c as f64 - (COLUMNS as f64 - 1.0) / 2.0) * PIXEL_MM,
        (r as f64 - (ROWS as f64 - 1.0) / 2.0) * PIXEL_MM,
        z as f64 * SLICE_MM,
    ]
}

fn phantom() -> Phantom {
    let mid_z = (SLICES as f64 - 1.0) * SLICE_MM / 2.0;
    // Patient right is image left (negative x).
    let lungs = vec![
        Ellipsoid {
            center: [-72.0, 5.0, mid_z],
            semi: [52.0, 72.0, 105.0],
            side: RIGHT_LUNG,
        },
        Ellipsoid {
            center: [72.0, 5.0, mid_z],
            semi: [48.0, 70.0, 100.0],
            side: LEFT_LUNG,
        },
    ];
    let spheres = vec![
        // Peripheral, posterior ground-glass in the right lung.
        Sphere {
            center: [-90.0, 35.0, mid_z - 20.0],
            radius: 22.0,
            hu: -500,
            class: GROUND_GLASS,
        },
        // Consolidation in the left lower lung.
        Sphere {
            center: [80.0, 25.0, mid_z - 45.0],
            radius: 18.0,
            hu: 20,
            class: CONSOLIDATION,
        },
    ];
    let mut hu = vec![-1000i16; ROWS * COLUMNS * SLICES];
    let mut lung = vec![0u8; hu.len()];
    let mut lesion = vec![0u8; hu.len()];
    let mut noise_state: u64 = 0x9E3779B97F4A7C15;
    for z in 0..SLICES {
        for r in 0..ROWS {
            for c in 0..COLUMNS {
                let i = (z * ROWS + r) * COLUMNS + c;
                let p = position(z, r, c);
                // Body: elliptic cylinder, 165 × 120 mm semi-axes, table-free.
                if (p[0] / 165.0).powi(2) + (p[1] / 120.0).powi(2) > 1.0 {
                    continue;
                }
                noise_state = noise_state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let noise = ((noise_state >> 33) % 41) as i16 - 20;
                hu[i] = 40 + noise;
                if let Some(l) = lungs.iter().find(|l| l.contains(p)) {
                    hu[i] = -850 + noise;
                    lung[i] = l.side;
                    if let Some(s) = spheres.iter().find(|s| {
                        (0..3).map(|k| (p[k] - s.center[k]).powi(2)).sum::<f64>()
                            <= s.radius.powi(2)
                    }) {
                        hu[i] = s.hu + noise;
                        lesion[i] = s.class;
                    }
                }
            }
        }
    }
    let volume = Volume {
        rows: ROWS,
        columns: COLUMNS,
        slices: SLICES,
        spacing_mm: Spacing {
            row_mm: PIXEL_MM,
            col_mm: PIXEL_MM,
            slice_mm: SLICE_MM,
        },
        origin: position(0, 0, 0),
        row_direction: [1.0, 0.0, 0.0],
        column_direction: [0.0, 1.0, 0.0],
        normal: [0.0, 0.0, 1.0],
        hu,
        slice_positions_mm: (0..SLICES).map(|z| z as f64 * SLICE_MM).collect(),
        instance_numbers: (0..SLICES).map(|z| Some(z as i64 + 1)).collect(),
        files: vec![PathBuf::new(); SLICES],
        spacing: None,
    };
    Phantom {
        volume,
        lung,
        lesion,
        lungs,
        spheres,
    }
}

fn sphere_ml(s: &Sphere) -> f64 {
    4.0 / 3.0 * PI * s.radius.powi(3) / 1000.0
}

fn relative_error(measured: f64, truth: f64) -> f64 {
    (measured - truth).abs() / truth
}

#[test]
fn quantification_of_exact_phantom_masks_matches_the_geometry() {
    let p = phantom();
    let dims = Dims {
        slices: SLICES,
        rows: ROWS,
        columns: COLUMNS,
    };
    let q = quantify::measure(&p.lung, &p.lesion, dims, p.volume.spacing_mm);
    let ml = |v: u64| v as f64 * q.voxel_ml;
    let right_truth = p.lungs[0].volume_ml();
    let left_truth = p.lungs[1].volume_ml();
    let ggo_truth = sphere_ml(&p.spheres[0]);
    let cons_truth = sphere_ml(&p.spheres[1]);
    let errors = [
        ("right lung", relative_error(ml(q.lung.right), right_truth)),
        ("left lung", relative_error(ml(q.lung.left), left_truth)),
        (
            "ground-glass sphere",
            relative_error(ml(q.ground_glass), ggo_truth),
        ),
        (
            "consolidation sphere",
            relative_error(ml(q.consolidation), cons_truth),
        ),
    ];
    for (what, e) in errors {
        println!(
            "exact masks: {what}: relative volume error {:.2} %",
            100.0 * e
        );
        // Voxelisation of a sphere of radius ≥ 5 voxels on this grid stays within 3 %.
        assert!(e < 0.03, "{what}: {:.2} %", 100.0 * e);
    }
    assert!(q.bilateral());
    assert!((q.lesion_share(q.ground_glass) - ggo_truth / (ggo_truth + cons_truth)).abs() < 0.02);
    // Severity: the lesion zones are under 25 % each, so each involved zone scores 1.
    let involved: Vec<f64> = [q.zone_ratio.right, q.zone_ratio.left]
        .iter()
        .flatten()
        .copied()
        .filter(|&r| r > 0.0)
        .collect();
    assert_eq!(q.severity_score(0.0) as usize, involved.len());
    // Peripheral share against brute force: each lesion voxel's in-plane distance to the
    // nearest non-lung pixel of its slice.
    let mut peripheral = 0u64;
    for z in 0..SLICES {
        let plane = &p.lung[z * ROWS * COLUMNS..(z + 1) * ROWS * COLUMNS];
        let outside: Vec<(usize, usize)> = (0..ROWS * COLUMNS)
            .filter(|&i| plane[i] == 0)
            .filter(|&i| {
                // Only outside pixels next to the lung can be the nearest.
                let (r, c) = (i / COLUMNS, i % COLUMNS);
                [(0i64, 1i64), (0, -1), (1, 0), (-1, 0)]
                    .iter()
                    .any(|(dr, dc)| {
                        let (rr, cc) = (r as i64 + dr, c as i64 + dc);
                        rr >= 0
                            && cc >= 0
                            && (rr as usize) < ROWS
                            && (cc as usize) < COLUMNS
                            && plane[rr as usize * COLUMNS + cc as usize] != 0
                    })
            })
            .map(|i| (i / COLUMNS, i % COLUMNS))
            .collect();
        for i in 0..ROWS * COLUMNS {
            if p.lesion[z * ROWS * COLUMNS + i] == 0 {
                continue;
            }
            let (r, c) = (i / COLUMNS, i % COLUMNS);
            let nearest = outside
                .iter()
                .map(|&(rr, cc)| {
                    ((r as f64 - rr as f64) * PIXEL_MM).hypot((c as f64 - cc as f64) * PIXEL_MM)
                })
                .fold(f64::INFINITY, f64::min);
            peripheral += (nearest <= quantify::PERIPHERAL_MM) as u64;
        }
    }
    assert_eq!(q.peripheral_lesion, peripheral);
    assert!(
        peripheral > 0 && peripheral < q.lesion_total(),
        "partly peripheral spheres"
    );
}

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

#[test]
fn pipeline_on_the_phantom_recovers_lungs_and_lesions() {
    let p = phantom();
    let models = Arc::new(ModelSet::load(&models_dir()).expect("shipped models load"));
    let analyser = Analyser::new(models, 2);
    let header = InstanceHeader {
        series_instance_uid: Some("1.2.826.0.1.3680043.10.1005.1".into()),
        patient_id: Some("PHANTOM".into()),
        ..Default::default()
    };
    let truth_right = p.lungs[0].volume_ml();
    let truth_left = p.lungs[1].volume_ml();
    let truth_lesion: f64 = p.spheres.iter().map(sphere_ml).sum();
    let analysis = analyser
        .analyse(p.volume, &header, 0, false)
        .expect("pipeline runs");
    // To look at the phantom's previews: LUNGWATCH_PHANTOM_OUT=/some/dir cargo test ...
    if let Some(dir) = std::env::var_os("LUNGWATCH_PHANTOM_OUT") {
        lungwatch::analysis::write_artifacts(&analysis, std::path::Path::new(&dir)).unwrap();
    }
    let r = &analysis.report;
    let lung_errors = [
        relative_error(r.lung_volume_ml.right, truth_right),
        relative_error(r.lung_volume_ml.left, truth_left),
    ];
    let lesion_error = relative_error(r.lesion_volume_ml, truth_lesion);
    println!(
        "pipeline on phantom: right lung {:.0} mL (truth {truth_right:.0}, error {:.1} %), left {:.0} mL (truth {truth_left:.0}, error {:.1} %), lesion {:.1} mL (truth {truth_lesion:.1}, error {:.1} %), ggo share {:.2}, probabilities {:?}",
        r.lung_volume_ml.right,
        100.0 * lung_errors[0],
        r.lung_volume_ml.left,
        100.0 * lung_errors[1],
        r.lesion_volume_ml,
        100.0 * lesion_error,
        r.ggo_share,
        r.probabilities,
    );
    // Stated tolerances for the shipped models on this phantom. Lungs within 3 % (the
    // lung model leaves the uniform +20 HU sphere out of the left lung: -1.7 %; slice-wise
    // hole filling would take it back, but on real scans it also fills the stomach where
    // the left lung wraps around it, so it is not done). The lesion model was trained on textured
    // synthetic lesions in real lungs; on uniform spheres it finds the core of the
    // ground-glass sphere (30–100 % of its volume) and misses the +20 HU sphere, which is
    // asserted too, so that a change in that behaviour is seen (MODEL_CARD.md).
    assert!(
        lung_errors.iter().all(|&e| e < 0.03),
        "lung volumes {lung_errors:?}"
    );
    let ggo_truth = sphere_ml(&p.spheres[0]);
    let found = r.ggo_volume_ml + r.consolidation_volume_ml;
    println!(
        "lesion found {found:.1} mL; ground-glass sphere {ggo_truth:.1} mL; lesion error vs both spheres {:.0} %",
        100.0 * lesion_error
    );
    assert!(
        (0.3 * ggo_truth..=1.0 * ggo_truth + 5.0)
            .contains(&r.affected_ratio.right.mul_add(r.lung_volume_ml.right, 0.0))
    );
    assert!(
        r.affected_ratio.left < 0.005,
        "the +20 HU sphere is (still) missed"
    );
    let sum = r.probabilities.covid19 + r.probabilities.other_pneumonia + r.probabilities.normal;
    assert!((sum - 1.0).abs() < 1e-4);
}
