//! Schema migrations, applied in order and recorded in `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

/// Each entry moves the schema from version `index` to `index + 1`. Never edit a released
/// entry: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: ingest — instances, series, jobs, quarantine and recent events.
    "CREATE TABLE series (
         series_uid         TEXT PRIMARY KEY,
         study_uid          TEXT,
         patient_id         TEXT,
         patient_name       TEXT,
         study_date         TEXT,
         accession_number   TEXT,
         modality           TEXT,
         series_description TEXT,
         state              TEXT NOT NULL CHECK (state IN ('receiving', 'selected', 'skipped')),
         skip_reason        TEXT,
         first_seen_at      INTEGER NOT NULL,
         last_instance_at   INTEGER NOT NULL,
         completed_at       INTEGER
     );
     CREATE INDEX series_state ON series (state, last_instance_at);
     CREATE TABLE instances (
         id               INTEGER PRIMARY KEY,
         sop_instance_uid TEXT NOT NULL UNIQUE,
         uid_derived      INTEGER NOT NULL,
         series_uid       TEXT NOT NULL REFERENCES series (series_uid),
         instance_number  INTEGER,
         store_path       TEXT NOT NULL UNIQUE,
         sha256           TEXT NOT NULL,
         size_bytes       INTEGER NOT NULL,
         transfer_syntax  TEXT NOT NULL,
         original_name    TEXT NOT NULL,
         header_json      TEXT NOT NULL,
         received_at      INTEGER NOT NULL
     );
     CREATE INDEX instances_series ON instances (series_uid);
     CREATE TABLE jobs (
         id          INTEGER PRIMARY KEY,
         series_uid  TEXT NOT NULL REFERENCES series (series_uid),
         state       TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
         reason      TEXT,
         attempts    INTEGER NOT NULL DEFAULT 0,
         created_at  INTEGER NOT NULL,
         started_at  INTEGER,
         finished_at INTEGER
     );
     CREATE INDEX jobs_state ON jobs (state, id);
     CREATE TABLE quarantine (
         id            INTEGER PRIMARY KEY,
         original_name TEXT NOT NULL,
         path          TEXT NOT NULL UNIQUE,
         reason_code   TEXT NOT NULL,
         reason        TEXT NOT NULL,
         at            INTEGER NOT NULL
     );
     CREATE TABLE events (
         id      INTEGER PRIMARY KEY,
         at      INTEGER NOT NULL,
         level   TEXT NOT NULL,
         message TEXT NOT NULL
     );",
    // 2: analysis results — one row per finished job, the full report as JSON plus the
    // columns the pages filter and sort on.
    "CREATE TABLE results (
         id               INTEGER PRIMARY KEY,
         job_id           INTEGER NOT NULL UNIQUE REFERENCES jobs (id),
         series_uid       TEXT NOT NULL REFERENCES series (series_uid),
         study_uid        TEXT,
         patient_id       TEXT,
         study_date       TEXT,
         accession_number TEXT,
         top_class        TEXT NOT NULL,
         p_covid19        REAL NOT NULL,
         p_other          REAL NOT NULL,
         p_normal         REAL NOT NULL,
         affected_ratio   REAL NOT NULL,
         lesion_ml        REAL NOT NULL,
         severity_score   INTEGER NOT NULL,
         processing_ms    INTEGER NOT NULL,
         report_json      TEXT NOT NULL,
         artifacts_dir    TEXT NOT NULL,
         created_at       INTEGER NOT NULL
     );
     CREATE INDEX results_patient ON results (patient_id, study_date);
     CREATE INDEX results_study ON results (study_uid);
     CREATE INDEX results_series ON results (series_uid, id);
     CREATE INDEX results_created ON results (created_at);",
    // 3: why a job failed, as a code (`FailureKind`) beside the free-text reason, so
    // /metrics can count failures by kind.
    "ALTER TABLE jobs ADD COLUMN failure_kind TEXT;",
    // 4: the audit trail of the web page (issue 15): who read which patient's data, and
    // every failed or throttled login. Written only by `db::AuditWriter`.
    "CREATE TABLE audit (
         id         INTEGER PRIMARY KEY,
         at         INTEGER NOT NULL,
         user       TEXT,
         client     TEXT NOT NULL,
         method     TEXT NOT NULL,
         path       TEXT NOT NULL,
         status     INTEGER NOT NULL,
         patient_id TEXT,
         event      TEXT NOT NULL CHECK (event IN ('read', 'login-failed', 'throttled'))
     );
     CREATE INDEX audit_at ON audit (at);
     CREATE INDEX audit_user ON audit (user, at);
     CREATE INDEX audit_patient ON audit (patient_id, at);",
    // 5: the DICOM receiver's associations, one row each (accepted or rejected), for the
    // status page. `outcome` is how it ended, in words.
    "CREATE TABLE associations (
         id          INTEGER PRIMARY KEY,
         calling_ae  TEXT NOT NULL,
         called_ae   TEXT NOT NULL,
         peer        TEXT NOT NULL,
         started_at  INTEGER NOT NULL,
         duration_ms INTEGER NOT NULL,
         stored      INTEGER NOT NULL,
         duplicates  INTEGER NOT NULL,
         refused     INTEGER NOT NULL,
         bytes       INTEGER NOT NULL,
         outcome     TEXT NOT NULL
     );
     CREATE INDEX associations_started ON associations (started_at);",
    // 6: the outbox (issue 13): one row per DICOM object and destination, inserted in the
    // transaction that stores the job's result. `path` is relative to `paths.data`.
    "CREATE TABLE outbox (
         id               INTEGER PRIMARY KEY,
         job_id           INTEGER NOT NULL REFERENCES jobs (id),
         destination      TEXT NOT NULL,
         path             TEXT NOT NULL,
         kind             TEXT NOT NULL CHECK (kind IN ('seg', 'sr', 'sc')),
         sop_class_uid    TEXT NOT NULL,
         sop_instance_uid TEXT NOT NULL,
         study_uid        TEXT,
         state            TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
         attempts         INTEGER NOT NULL DEFAULT 0,
         last_error       TEXT,
         next_attempt_at  INTEGER NOT NULL,
         created_at       INTEGER NOT NULL,
         sent_at          INTEGER,
         UNIQUE (job_id, destination, path)
     );
     CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
     CREATE INDEX outbox_study ON outbox (study_uid);",
];

/// The schema version this build writes and reads.
pub const VERSION: usize = MIGRATIONS.len();

/// Brings the schema up to date. The version is read inside an immediate (write-locked)
/// transaction, so two processes opening a new database at once (the daemon starting while
/// `lungwatch status` runs) cannot both apply the same migration.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = tx.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
    }
    tx.commit()
}
