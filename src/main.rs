//! The lungwatch command line: parsing and dispatch only.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Parser, Subcommand};

use lungwatch::analysis::Analyser;
use lungwatch::analysis::models::ModelSet;
use lungwatch::analyze::{self, AnalyzeOptions};
use lungwatch::config::Config;
use lungwatch::db::{DeliveryState, Reader};
use lungwatch::{audit_export, config_edit, daemon, inspect};

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
    Serve(ServeArgs),
    /// Group files or folders into series, judge them and build their HU volumes.
    Inspect(InspectArgs),
    /// Analyse files or folders end to end (decode, segment, quantify, classify) without
    /// the store or the database.
    Analyze(AnalyzeArgs),
    /// Measure the models on your own labelled series: class calls (accuracy, confusion
    /// matrix, sensitivity, specificity, AUC with 95 % interval), calibration (Brier, ECE,
    /// reliability diagram), slice detection and lesion Dice. Reads the series in place;
    /// writes nothing but --out.
    Validate(ValidateArgs),
    /// Refit the pattern classifier on your own labelled series (the validate CSV; at
    /// least 10 per class): cross-validated figures before and after, and a complete new
    /// models folder in --out (the shipped models are never touched).
    Calibrate(CalibrateArgs),
    /// Check the config (and the TLS certificates and CA files, if set) and the models (checksums,
    /// loading) and say what is wrong.
    Check(CheckArgs),
    /// C-ECHO a configured destination ([[destinations]] NAME) as dicom.ae_title.
    Echo(EchoArgs),
    /// Send a study's DICOM objects (SEG, SR, key images) again: to every configured
    /// destination, or to NAME only ("folder": the folder outbox). Prints each object's
    /// outcome; what fails for a transient reason is retried by `serve`.
    Send(SendArgs),
    /// Show counts of instances, series, jobs and quarantined files, and the last errors.
    Status(StatusArgs),
    /// Make the Argon2id `password_hash = "..."` line of a [[web.users]] entry. Asks for
    /// the password without echo, or reads one line from stdin when it is not a terminal.
    Passwd,
    /// Read or change the config file in place, keeping its comments. A change is checked
    /// as `serve` checks the config at start-up and written only if it passes; `serve`
    /// takes it on SIGHUP or at its next start.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Export the audit trail (who read which patient's data, failed logins) from a day on.
    Audit(AuditArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Config file (TOML). Without it the embedded default is used.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct InspectArgs {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Config whose selection rules to apply (default: the embedded default).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct AnalyzeArgs {
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
}

#[derive(clap::Args)]
struct ValidateArgs {
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
}

#[derive(clap::Args)]
struct CalibrateArgs {
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
}

#[derive(clap::Args)]
struct CheckArgs {
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
}

#[derive(clap::Args)]
struct EchoArgs {
    /// The destination's name.
    name: String,
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SendArgs {
    study_uid: String,
    /// A destination's name.
    name: Option<String>,
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct StatusArgs {
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct AuditArgs {
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// First day to export, YYYY-MM-DD (UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    since: String,
    /// CSV (RFC 4180, with a header line) instead of a table.
    #[arg(long)]
    csv: bool,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print KEY's value as the file sets it (a string as its text, other values as TOML;
    /// for web.users or destinations, the names, one per line). Exits 1 when not set.
    Get {
        /// Dotted key: web.listen, dicom.port, web.users.NAME.role, destinations.NAME.host.
        key: String,
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Set one or more keys (KEY VALUE pairs) and remove others (--unset KEY), as one
    /// change. A VALUE that reads as TOML (11112, true, ["seg", "sr"], "text") is taken as
    /// such, anything else as a string.
    Set {
        /// KEY VALUE [KEY VALUE ...]
        #[arg(value_name = "KEY VALUE", num_args = 0..)]
        pairs: Vec<String>,
        /// A key to remove (web.users.NAME removes that user).
        #[arg(long, value_name = "KEY")]
        unset: Vec<String>,
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
}

/// Where install.sh and the image put the config.
const DEFAULT_CONFIG_PATH: &str = "/etc/lungwatch/lungwatch.toml";

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
        Command::Serve(args) => serve_command(args),
        Command::Inspect(args) => inspect_command(args),
        Command::Analyze(args) => analyze_command(args),
        Command::Validate(args) => validate_command(args),
        Command::Calibrate(args) => calibrate_command(args),
        Command::Check(args) => check_command(args),
        Command::Echo(args) => echo_command(args),
        Command::Send(args) => send_command(args),
        Command::Status(args) => status_command(args),
        Command::Passwd => passwd_command(),
        Command::Config { action } => config_command(action),
        Command::Audit(args) => audit_command(args),
    }
}

fn serve_command(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs {
        config: config_path,
    } = args;
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

fn inspect_command(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let InspectArgs {
        paths,
        json,
        config,
    } = args;
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

fn analyze_command(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let AnalyzeArgs {
        paths,
        json,
        per_slice,
        out,
        models,
        threads,
        tract_threads,
        config,
    } = args;
    let config = Config::load_or_default(config.as_deref())?;
    init_logging(&config);
    if tract_threads > 1 {
        use tract_linalg::multithread::{Executor, set_default_executor};
        set_default_executor(Executor::multithread(tract_threads));
    }
    let models = load_models(models.unwrap_or_else(|| config.models_dir()))?;
    let threads = threads.unwrap_or_else(|| config.decode_threads());
    let analyser = Analyser::new(Arc::new(models), threads);
    let options = AnalyzeOptions { per_slice, out };
    let outcome = analyze::analyze(&paths, &config, &analyser, &options)?;
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

fn check_command(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let CheckArgs { config, models } = args;
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

fn echo_command(args: EchoArgs) -> anyhow::Result<ExitCode> {
    let EchoArgs { name, config } = args;
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

fn send_command(args: SendArgs) -> anyhow::Result<ExitCode> {
    let SendArgs {
        study_uid,
        name,
        config,
    } = args;
    let config = Config::load_or_default(config.as_deref())?;
    let rows = lungwatch::send::send_study(&config, &study_uid, name.as_deref())?;
    let mut all_sent = true;
    for row in &rows {
        let outcome = match row.state {
            DeliveryState::Sent => "sent".to_string(),
            DeliveryState::Sending => "being sent by the running serve".to_string(),
            state @ (DeliveryState::Pending | DeliveryState::Failed) => {
                all_sent = false;
                format!(
                    "{}: {}",
                    state.as_str(),
                    row.last_error.as_deref().unwrap_or("")
                )
            }
        };
        println!(
            "{:<10} {:<3} {}  {outcome}",
            row.destination, row.kind, row.sop_instance_uid
        );
    }
    let sent = rows
        .iter()
        .filter(|r| r.state == DeliveryState::Sent)
        .count();
    println!("{sent} of {} objects sent", rows.len());
    Ok(if all_sent {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn status_command(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let StatusArgs { config, json } = args;
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

fn passwd_command() -> anyhow::Result<ExitCode> {
    let password = lungwatch::passwd::read_password()?;
    println!("{}", lungwatch::passwd::hash_line(&password)?);
    Ok(ExitCode::SUCCESS)
}

fn audit_command(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let AuditArgs { config, since, csv } = args;
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
/// analyser on the models they name.
fn labelled_run_setup(
    config: Option<&std::path::Path>,
    models: Option<PathBuf>,
) -> anyhow::Result<(Config, Analyser)> {
    let config = Config::load_or_default(config)?;
    init_logging(&config);
    let models = load_models(models.unwrap_or_else(|| config.models_dir()))?;
    let analyser = Analyser::new(Arc::new(models), config.decode_threads());
    Ok((config, analyser))
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
fn validate_command(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let ValidateArgs {
        labels,
        models,
        json,
        out,
        slice_threshold_mm2,
        config,
    } = args;
    let (labels, out) = (labels.as_path(), out.as_deref());
    let (config, analyser) = labelled_run_setup(config.as_deref(), models)?;
    let bar = series_progress_bar();
    let result = lungwatch::validate::validate(
        labels,
        &config,
        &analyser,
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

fn calibrate_command(args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    let CalibrateArgs {
        labels,
        out,
        models,
        folds,
        json,
        config,
    } = args;
    let (labels, out) = (labels.as_path(), out.as_path());
    let (config, analyser) = labelled_run_setup(config.as_deref(), models)?;
    let bar = series_progress_bar();
    let result = lungwatch::calibrate::calibrate(
        labels,
        out,
        folds,
        &config,
        &analyser,
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

fn config_command(action: ConfigAction) -> anyhow::Result<ExitCode> {
    match action {
        ConfigAction::Get { key, config } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("cannot read {}", config.display()))?;
            match config_edit::get(&text, &key)? {
                Some(value) => {
                    println!("{value}");
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("lungwatch: {key} is not set in {}", config.display());
                    Ok(ExitCode::from(1))
                }
            }
        }
        ConfigAction::Set {
            pairs,
            unset,
            config,
        } => {
            if pairs.len() % 2 != 0 {
                anyhow::bail!(
                    "give KEY VALUE pairs: {:?} has no value",
                    pairs[pairs.len() - 1]
                );
            }
            if pairs.is_empty() && unset.is_empty() {
                anyhow::bail!("nothing to change: give KEY VALUE pairs or --unset KEY");
            }
            let edits: Vec<config_edit::Edit> = unset
                .into_iter()
                .map(|key| config_edit::Edit { key, value: None })
                .chain(pairs.chunks_exact(2).map(|kv| config_edit::Edit {
                    key: kv[0].clone(),
                    value: Some(kv[1].clone()),
                }))
                .collect();
            config_edit::edit_file(&config, &edits)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
