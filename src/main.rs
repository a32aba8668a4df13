//! The lungwatch command line: parsing and dispatch only.

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
use lungwatch::db::Database;
use lungwatch::{daemon, inspect};

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
    /// Check the config and the models (checksums, loading) and say what is wrong.
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
    /// Show counts of instances, series, jobs and quarantined files, and the last errors.
    Status {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
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
        Command::Check { config, models } => {
            let config = Config::load_or_default(config.as_deref())?;
            println!(
                "config: ok (incoming {}, data {})",
                config.paths.incoming.display(),
                config.paths.data.display()
            );
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
        Command::Status { config, json } => {
            let config = Config::load_or_default(config.as_deref())?;
            let path = config.database_path();
            if !path.exists() {
                anyhow::bail!(
                    "no database at {} (has `lungwatch serve` run with this config?)",
                    path.display()
                );
            }
            let db =
                Database::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            let status = lungwatch::status::collect(&db)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", lungwatch::status::render_text(&status));
            }
            Ok(ExitCode::SUCCESS)
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
