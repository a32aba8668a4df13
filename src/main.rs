//! The lungwatch command line: parsing and dispatch only.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Parser, Subcommand};

use lungwatch::analysis::Analyzer;
use lungwatch::analysis::models::ModelSet;
use lungwatch::analyze::{self, AnalyzeOptions};
use lungwatch::config::Config;
use lungwatch::db::Reader;
use lungwatch::{audit_export, daemon, inspect};

#[derive(Parser)]
#[command(
    name = "lungwatch",
    version,
    about = "Chest CT analysis appliance: watches a PACS drop folder"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: watch the drop folder, store and index files, queue complete series.
    Serve {
        /// Config file (TOML). Without it the embedded default is used.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Group files or folders into series, judge them and build their HU volumes.
    Inspect {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Config whose selection rules to apply (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Analyse files or folders end to end (decode, segment, quantify, classify) without
    /// the store or the database.
    Analyze {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print a JSON array, one object per analysed series.
        #[arg(long)]
        json: bool,
        /// Add per-slice lung and lesion areas.
        #[arg(long)]
        per_slice: bool,
        /// Write previews (PNG), the label mask (NIfTI) and report.json under DIR/<series>/.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Folder with manifest.toml and the ONNX models (default: the installed models,
        /// else ./models).
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
        /// Analysis threads, each running whole slices (default: one per CPU core).
        #[arg(long)]
        threads: Option<usize>,
        /// Threads inside each tract matrix product instead (for benchmarking; default 1).
        #[arg(long, default_value_t = 1)]
        tract_threads: usize,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Measure the models on your own labelled series: class calls (accuracy, confusion
    /// matrix, sensitivity, specificity, AUC with 95 % interval), calibration (Brier, ECE,
    /// reliability diagram), slice detection and lesion Dice. Reads the series in place;
    /// writes nothing but --out.
    Validate {
        /// CSV with columns path, class (covid19, other_pneumonia, normal) and optional
        /// slice_labels and mask; see the README, "Validating at your site".
        labels: PathBuf,
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
        /// Print the report as JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Write report.json and reliability.png into DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// A labelled slice is called infected at this lesion area.
        #[arg(long, value_name = "MM2", default_value_t = lungwatch::validate::DEFAULT_SLICE_THRESHOLD_MM2)]
        slice_threshold_mm2: f64,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Refit the pattern classifier on your own labelled series (the validate CSV; at
    /// least 10 per class): cross-validated figures before and after, and a complete new
    /// models folder in --out (the shipped models are never touched).
    Calibrate {
        labels: PathBuf,
        /// A new (absent or empty) folder for the calibrated models.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
        /// Cross-validation folds (stratified, fixed seed).
        #[arg(long, default_value_t = lungwatch::calibrate::DEFAULT_FOLDS)]
        folds: usize,
        /// Print the report as JSON instead of the table.
        #[arg(long)]
        json: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check the config (and the TLS certificates and CA files, if set) and the models (checksums,
    /// loading) and say what is wrong.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
    },
    /// C-ECHO a configured destination ([[destinations]] NAME) as dicom.ae_title.
    Echo {
        /// The destination's name.
        name: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Send a study's DICOM objects (SEG, SR, key images) again: to every configured
    /// destination, or to NAME only ("folder": the folder outbox). Prints each object's
    /// outcome; what fails for a transient reason is retried by `serve`.
    Send {
        study_uid: String,
        /// A destination's name.
        name: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show counts of instances, series, jobs and quarantined files, and the last errors.
    Status {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Make the Argon2id `password_hash = "..."` line of a [[web.users]] entry. Asks for
    /// the password without echo, or reads one line from stdin when it is not a terminal.
    Passwd,
    /// Export the audit trail (who read which patient's data, failed logins) from a day on.
    Audit {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// First day to export, YYYY-MM-DD (UTC).
        #[arg(long, value_name = "YYYY-MM-DD")]
        since: String,
        /// CSV (RFC 4180, with a header line) instead of a table.
        #[arg(long)]
        csv: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lungwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    env_logger::Builder::new()
        .parse_filters(&config.log.level)
        .parse_env("RUST_LOG")
        .format_timestamp_millis()
        .init();
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            config: config_path,
        } => {
            let config = Config::load_or_default(config_path.as_deref())?;
            init_logging(&config);
            let shutdown = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                // A second signal while shutting down exits at once.
                signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&shutdown))?;
                signal_hook::flag::register(signal, Arc::clone(&shutdown))?;
            }
            let reload = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))?;
            daemon::serve(config, config_path, daemon::Signals { shutdown, reload })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect {
            paths,
            json,
            config,
        } => {
            let config = Config::load_or_default(config.as_deref())?;
            init_logging(&config);
            let report = inspect::inspect(&paths, &config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_inspect_table(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Analyze {
            paths,
            json,
            per_slice,
            out,
            models,
            threads,
            tract_threads,
            config,
        } => {
            let config = Config::load_or_default(config.as_deref())?;
            init_logging(&config);
            if tract_threads > 1 {
                use tract_linalg::multithread::{Executor, set_default_executor};
                set_default_executor(Executor::multithread(tract_threads));
            }
            let models = load_models(models.unwrap_or_else(|| config.models_dir()))?;
            let threads = threads.unwrap_or_else(|| config.decode_threads());
            let analyzer = Analyzer::new(Arc::new(models), threads);
            let options = AnalyzeOptions { per_slice, out };
            let outcome = analyze::analyze(&paths, &config, &analyzer, &options)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome.analysed)?);
            } else {
                for report in &outcome.analysed {
                    println!("{}", analyze::summary(report));
                }
            }
            for (series, reason) in &outcome.not_analysed {
                eprintln!("not analysed {series}: {reason}");
            }
            for r in &outcome.rejected {
                eprintln!("rejected {}: {}", r.path.display(), r.reason);
            }
            Ok(if outcome.analysed.is_empty() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Validate {
            labels,
            models,
            json,
            out,
            slice_threshold_mm2,
            config,
        } => validate_command(
            &labels,
            models,
            json,
            out.as_deref(),
            slice_threshold_mm2,
            config.as_deref(),
        ),
        Command::Calibrate {
            labels,
            out,
            models,
            folds,
            json,
            config,
        } => calibrate_command(&labels, &out, models, folds, json, config.as_deref()),
        Command::Check { config, models } => {
            let config = Config::load_or_default(config.as_deref())?;
            println!(
                "config: ok (incoming {}, data {})",
                config.paths.incoming.display(),
                config.paths.data.display()
            );
            if let Some(fingerprint) = lungwatch::web::check_tls(&config.web)? {
                println!("web TLS certificate: ok, SHA-256 fingerprint {fingerprint}");
            }
            if let Some(fingerprint) = lungwatch::dimse::tls::check_server(&config.dicom)? {
                println!("DICOM TLS certificate: ok, SHA-256 fingerprint {fingerprint}");
            }
            for d in config.destinations.iter().filter(|d| d.tls) {
                lungwatch::dimse::tls::client_config(&config.dicom, d)?;
                println!(
                    "destination {}: TLS trust and client certificate ok",
                    d.name
                );
            }
            let models = load_models(models.unwrap_or_else(|| config.models_dir()))?;
            for m in models.references() {
                println!(
                    "model {}: version {}, sha256 {} verified, loaded",
                    m.name, m.version, m.sha256
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Echo { name, config } => {
            let config = Config::load_or_default(config.as_deref())?;
            let Some(destination) = config.destinations.iter().find(|d| d.name == name) else {
                let known: Vec<&str> = config
                    .destinations
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect();
                anyhow::bail!(
                    "no destination {name:?} in the config (configured: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            };
            let took = lungwatch::dimse::scu::echo(&config.dicom, destination)?;
            println!(
                "C-ECHO {} ({} at {}:{}) as {}: success in {} ms",
                destination.name,
                destination.ae_title,
                destination.host,
                destination.port,
                config.dicom.ae_title,
                took.as_millis()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Send {
            study_uid,
            name,
            config,
        } => {
            let config = Config::load_or_default(config.as_deref())?;
            let rows = lungwatch::send::send_study(&config, &study_uid, name.as_deref())?;
            let mut all_sent = true;
            for row in &rows {
                let outcome = match row.state.as_str() {
                    "sent" => "sent".to_string(),
                    "sending" => "being sent by the running serve".to_string(),
                    state => {
                        all_sent = false;
                        format!("{state}: {}", row.last_error.as_deref().unwrap_or(""))
                    }
                };
                println!(
                    "{:<10} {:<3} {}  {outcome}",
                    row.destination, row.kind, row.sop_instance_uid
                );
            }
            let sent = rows.iter().filter(|r| r.state == "sent").count();
            println!("{sent} of {} objects sent", rows.len());
            Ok(if all_sent {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Status { config, json } => {
            let config = Config::load_or_default(config.as_deref())?;
            let db = open_reader(&config)?;
            let status = lungwatch::status::collect(&db, &config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", lungwatch::status::render_text(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Passwd => {
            let password = lungwatch::passwd::read_password()?;
            println!("{}", lungwatch::passwd::hash_line(&password)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { config, since, csv } => {
            let Some(since) = lungwatch::web::day_start(&since) else {
                anyhow::bail!("--since must be a date as YYYY-MM-DD, got {since:?}");
            };
            let config = Config::load_or_default(config.as_deref())?;
            let rows = audit_export::collect(&open_reader(&config)?, since)?;
            if csv {
                print!("{}", audit_export::render_csv(&rows));
            } else {
                print!("{}", audit_export::render_text(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open_reader(config: &Config) -> anyhow::Result<Reader> {
    let path = config.database_path();
    if !path.exists() {
        anyhow::bail!(
            "no database at {} (has `lungwatch serve` run with this config?)",
            path.display()
        );
    }
    Reader::open(&path).with_context(|| format!("cannot open {}", path.display()))
}

/// What `validate` and `calibrate` start with: the config (logging set up from it) and an
/// analyzer on the models they name.
fn labelled_run_setup(
    config: Option<&std::path::Path>,
    models: Option<PathBuf>,
) -> anyhow::Result<(Config, Analyzer)> {
    let config = Config::load_or_default(config)?;
    init_logging(&config);
    let models = load_models(models.unwrap_or_else(|| config.models_dir()))?;
    let analyzer = Analyzer::new(Arc::new(models), config.decode_threads());
    Ok((config, analyzer))
}

/// A bar of series done; indicatif draws only on a terminal, so piped output stays clean.
fn series_progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} series  {elapsed}  {msg}")
            .expect("a valid template"),
    );
    bar
}

/// `lungwatch validate`: a progress bar on the terminal, then the tables or the JSON.
fn validate_command(
    labels: &std::path::Path,
    models: Option<PathBuf>,
    json: bool,
    out: Option<&std::path::Path>,
    slice_threshold_mm2: f64,
    config: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let (config, analyzer) = labelled_run_setup(config, models)?;
    let bar = series_progress_bar();
    let result = lungwatch::validate::validate(
        labels,
        &config,
        &analyzer,
        slice_threshold_mm2,
        |done, total, path| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(path.display().to_string());
        },
    );
    bar.finish_and_clear();
    let report = match result {
        Ok(report) => report,
        Err(errors) => {
            for e in &errors {
                eprintln!("lungwatch validate: {e}");
            }
            eprintln!(
                "lungwatch validate: {} problem(s) in the labels; nothing was analysed or written",
                errors.len()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(dir) = out {
        lungwatch::validate::write_outputs(&report, dir)
            .with_context(|| format!("cannot write the report to {}", dir.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", lungwatch::validate::render_text(&report));
    }
    Ok(if report.analysed == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn calibrate_command(
    labels: &std::path::Path,
    out: &std::path::Path,
    models: Option<PathBuf>,
    folds: usize,
    json: bool,
    config: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let (config, analyzer) = labelled_run_setup(config, models)?;
    let bar = series_progress_bar();
    let result = lungwatch::calibrate::calibrate(
        labels,
        out,
        folds,
        &config,
        &analyzer,
        |done, total, path| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(path.display().to_string());
        },
    );
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", lungwatch::calibrate::render_text(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("lungwatch calibrate: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn load_models(dir: PathBuf) -> anyhow::Result<ModelSet> {
    ModelSet::load(&dir).with_context(|| format!("cannot load the models from {}", dir.display()))
}

fn print_inspect_table(report: &inspect::Report) {
    for s in &report.series {
        let spacing = s
            .spacing_mm
            .map(|v| format!("{:.3} x {:.3} x {:.3} mm", v[0], v[1], v[2]))
            .unwrap_or_else(|| "-".into());
        println!(
            "{}  {}  {} slices  {}x{}  {}  HU {}..{}  {}",
            s.series_instance_uid,
            s.modality.as_deref().unwrap_or("?"),
            s.slices,
            s.rows.unwrap_or(0),
            s.columns.unwrap_or(0),
            spacing,
            s.hu_min.map_or("?".into(), |v| v.to_string()),
            s.hu_max.map_or("?".into(), |v| v.to_string()),
            match &s.skip_reason {
                None => "selected".to_string(),
                Some(r) => format!("skipped: {r}"),
            }
        );
    }
    for r in &report.rejected {
        println!("rejected {}: {}", r.path.display(), r.reason);
    }
}
