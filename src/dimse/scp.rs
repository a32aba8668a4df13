//! The listener and one thread per association: negotiation (AE titles, presentation
//! contexts), C-ECHO, and C-STORE into `ingest::ingest_bytes`, the drop folder's own path.
//!
//! Each received data set is framed as the Part 10 file it would be on disk (preamble,
//! file meta group built from the command and the presentation context, the data set bytes
//! exactly as received), then stored and indexed, or quarantined, before its C-STORE
//! response is sent: a success status means the instance is durable and indexed. An
//! association that ends before a data set is complete (the peer killed, an abort, a
//! timeout) stores nothing of it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use dicom_object::FileMetaTableBuilder;
use dicom_ul::Pdu;
use dicom_ul::association::CloseSocket;
use dicom_ul::association::server::{
    AccessControl, ServerAssociation, ServerAssociationOptions, TlsStream,
};
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJServiceUserReason, AssociationRJSource, PDataValue, PDataValueType,
    PresentationContextResultReason, UserIdentity,
};
use log::{info, warn};

use super::in_service::TlsConfigs;
use super::message::{self, C_ECHO_RQ, C_STORE_RQ, Command, Status};
use super::syntaxes::{STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES};
use super::tls;
use crate::config::DicomConfig;
use crate::db::{self, AssociationRecord, Database, EventLevel};
use crate::ingest::{self, Dirs, Outcome};

/// Identifies lungwatch as the writer of the file meta groups it frames received data sets
/// with (a `2.25.` UUID-derived UID, fixed for the product).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.112960305826047436018940713114447909276";
/// How often a waiting association looks at the stop flag and its deadlines.
const TICK: Duration = Duration::from_millis(500);
/// How often the listener looks for a new connection or the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// The largest P-DATA PDU we announce: fewer, larger reads for 0.5 MB CT slices.
const MAX_PDU: u32 = 256 * 1024;
/// A data set larger than this is refused (the association is aborted): it must be held in
/// memory until stored.
const MAX_DATA_SET_BYTES: usize = 1 << 30;

/// What the receiver shares with the rest of `serve`.
pub struct ScpContext {
    pub db_path: PathBuf,
    pub dirs: Dirs,
    /// Set while the data disk is full: instances are refused with "out of resources".
    pub paused: Arc<AtomicBool>,
    /// The receiver speaks TLS only when this holds a server configuration; each
    /// association takes the one in service when it starts (SIGHUP may replace it).
    pub tls: Arc<TlsConfigs>,
}

/// The running receiver. `stop` ends it: no new associations, open ones are aborted
/// between PDUs (an instance not yet answered is not stored), and every thread is joined.
pub struct ScpHandle {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
}

impl ScpHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.listener.take()
            && t.join().is_err()
        {
            log::error!("the DICOM listener panicked");
        }
    }
}

impl Drop for ScpHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Binds `config.listen` and serves associations on their own threads: over TLS only when
/// `context.tls` has a server configuration (`dicom.tls_cert` was set at start).
pub fn start(config: &DicomConfig, context: ScpContext) -> anyhow::Result<ScpHandle> {
    let addr = config
        .listen_addr()?
        .context("dicom.listen is not set: the DICOM receiver is off")?;
    let tls = context.tls.server().is_some();
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("cannot listen for DICOM on {addr} (dicom.listen)"))?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        config: config.clone(),
        tls,
        context,
        stop: stop.clone(),
        active: AtomicUsize::new(0),
    });
    let thread = std::thread::Builder::new()
        .name("dicom-listener".into())
        .spawn(move || listen(listener, shared))?;
    Ok(ScpHandle {
        local_addr,
        stop,
        listener: Some(thread),
    })
}

struct Shared {
    config: DicomConfig,
    /// The receiver speaks TLS (only): fixed at start, whatever SIGHUP loads.
    tls: bool,
    context: ScpContext,
    stop: Arc<AtomicBool>,
    active: AtomicUsize,
}

fn listen(listener: TcpListener, shared: Arc<Shared>) {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                threads.retain(|t| !t.is_finished());
                if let Err(e) = stream.set_nonblocking(false) {
                    warn!("DICOM connection from {peer}: {e}");
                    continue;
                }
                if !shared.config.peer_allowed(peer.ip()) {
                    // Closed before a PDU is read: nothing of it reaches the DICOM parser.
                    drop(stream);
                    log_refused_peer(peer, &shared);
                    continue;
                }
                if shared.active.load(Ordering::SeqCst) >= shared.config.max_associations {
                    // Answered here, on the listener: it reads one PDU with a short timeout.
                    reject_busy(stream, peer, &shared);
                    continue;
                }
                shared.active.fetch_add(1, Ordering::SeqCst);
                let s = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("dicom-{peer}"))
                    .spawn(move || {
                        // Released even if the association's thread panics.
                        let _slot = Slot(&s.active);
                        serve_association(stream, peer, &s);
                    });
                match spawned {
                    Ok(t) => threads.push(t),
                    Err(e) => {
                        shared.active.fetch_sub(1, Ordering::SeqCst);
                        warn!("cannot start a thread for the DICOM association from {peer}: {e}");
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
            }
            Err(e) => {
                warn!("DICOM listener: {e}");
                std::thread::sleep(ACCEPT_POLL * 5);
            }
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

/// One of `max_associations`, given back when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Access control that also remembers what it saw, for the association log.
#[derive(Clone)]
struct Gate {
    allowed: Arc<Vec<String>>,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    calling: String,
    called: String,
    refusal: Option<String>,
}

impl AccessControl for Gate {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let (calling, called, this) = (
            calling_ae_title.trim(),
            called_ae_title.trim(),
            this_ae_title.trim(),
        );
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.calling = calling.to_string();
        seen.called = called.to_string();
        if called != this {
            seen.refusal = Some(format!("called AE title {called:?} is not {this:?}"));
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| a.trim() == calling) {
            seen.refusal = Some(format!(
                "calling AE title {calling:?} is not in dicom.allowed_calling_aes"
            ));
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

/// Counts kept while an association runs.
struct Tally {
    record: AssociationRecord,
    started: Instant,
}

fn serve_association(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let config = &shared.config;
    let tally = Tally {
        record: AssociationRecord {
            peer: peer.to_string(),
            started_at: db::now_secs(),
            ..Default::default()
        },
        started: Instant::now(),
    };
    let db = match Database::open(&shared.context.db_path) {
        Ok(db) => db,
        Err(e) => {
            log::error!("DICOM association from {peer} refused: cannot open the database: {e}");
            return;
        }
    };
    let gate = Gate {
        allowed: Arc::new(config.allowed_calling_aes.clone()),
        seen: Arc::new(Mutex::new(Seen::default())),
    };
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(gate.clone())
        .ae_title(config.ae_title.trim().to_string())
        .with_abstract_syntax(message::VERIFICATION)
        .max_pdu_length(MAX_PDU)
        // Tolerate peers whose PDUs exceed what they negotiated, as reading tolerates files.
        .strict(false)
        .read_timeout(config.idle_timeout())
        .write_timeout(config.idle_timeout());
    for (uid, _) in STORAGE_SOP_CLASSES {
        options = options.with_abstract_syntax(*uid);
    }
    for (uid, _) in TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(*uid);
    }
    if let Err(why) = first_bytes(&stream, shared.tls, config.idle_timeout()) {
        let mut tally = tally;
        tally.record.outcome = format!("not established: {why}");
        finish(&db, tally);
        return;
    }
    // The configuration in service now: this association keeps it to its end.
    match &shared.context.tls.server() {
        Some(config) => {
            let established = options.tls_config(config.clone()).establish_tls(stream);
            run(established, &gate, shared, db, tally);
        }
        None => run(options.establish(stream), &gate, shared, db, tally),
    }
}

/// Waits (up to `timeout`) until the peer's first message is there to read: the first
/// byte of an A-ASSOCIATE-RQ on plain TCP, the first TLS record, holding the whole
/// ClientHello, on TLS. dicom-ul 0.10 with its TLS feature spins forever on a connection that ends before
/// them (its TLS acceptor reads an exhausted stream in a loop), so nothing reaches it
/// without them; a TLS client on the plain port and a plain one on the TLS port are told
/// apart here too.
fn first_bytes(stream: &TcpStream, tls: bool, timeout: Duration) -> Result<(), String> {
    const TLS_HANDSHAKE: u8 = 0x16;
    const A_ASSOCIATE_RQ: u8 = 0x01;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 5 + (1 << 14) + 2048];
    let mut needed = if tls { 5 } else { 1 };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "nothing complete received for dicom.idle_timeout_secs ({} s)",
                timeout.as_secs()
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let n = match stream.peek(&mut buf) {
            Ok(0) => return Err("connection closed before a PDU".into()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        match (tls, buf[0]) {
            (false, A_ASSOCIATE_RQ) => return Ok(()),
            (false, TLS_HANDSHAKE) => {
                return Err("a TLS client on a receiver without dicom.tls_cert".into());
            }
            (false, b) => {
                return Err(format!(
                    "the first PDU (type 0x{b:02X}) is not an A-ASSOCIATE-RQ"
                ));
            }
            (true, TLS_HANDSHAKE) => {}
            (true, A_ASSOCIATE_RQ) => {
                return Err("plain DICOM (no TLS) on a receiver that speaks TLS only".into());
            }
            (true, b) => return Err(format!("not a TLS handshake (first byte 0x{b:02X})")),
        }
        if n >= 5 {
            needed = 5 + usize::from(u16::from_be_bytes([buf[3], buf[4]]));
            if needed > buf.len() {
                return Err(format!(
                    "a TLS record of {needed} bytes, over the TLS limit"
                ));
            }
        }
        if n >= needed {
            if !tls {
                return Ok(());
            }
            // The whole ClientHello in this record: dicom-ul's acceptor would spin on a
            // connection that ends between the records of a split one.
            let hello = 4 + u32::from_be_bytes([0, buf[6], buf[7], buf[8]]) as usize;
            return if buf[5] == 0x01 && 5 + hello <= needed {
                Ok(())
            } else {
                Err("the first TLS record is not a whole ClientHello".into())
            };
        }
        // Part of the record is there: the rest is on its way (or never comes: the deadline).
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The transports an association runs on: plain TCP, or TLS over it.
trait Transport: Read + Write + CloseSocket {
    fn tcp(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Transport for TlsStream {
    fn tcp(&self) -> &TcpStream {
        self.get_ref()
    }
}

/// An association once negotiation is over, on either transport.
fn run<S: Transport>(
    established: Result<ServerAssociation<S>, dicom_ul::association::Error>,
    gate: &Gate,
    shared: &Shared,
    mut db: Database,
    mut tally: Tally,
) {
    {
        let seen = gate.seen.lock().unwrap_or_else(|p| p.into_inner());
        tally.record.calling_ae = seen.calling.clone();
        tally.record.called_ae = seen.called.clone();
        if let Err(e) = &established {
            tally.record.outcome = match &seen.refusal {
                Some(why) => format!("rejected: {why}"),
                None => format!("not established: {}", tls::chain(e)),
            };
        }
    }
    let Ok(mut association) = established else {
        finish(&db, tally);
        return;
    };
    // From here reads wake every TICK, so that stop and the deadlines are seen; a read cut
    // by the timeout keeps its partial PDU in dicom-ul's buffer and simply resumes.
    if let Err(e) = association
        .inner_stream()
        .tcp()
        .set_read_timeout(Some(TICK))
    {
        tally.record.outcome = format!("aborted: {e}");
        let _ = association.abort();
        finish(&db, tally);
        return;
    }
    let end = receive_loop(&mut association, shared, &mut db, &mut tally);
    tally.record.outcome = match end {
        End::Released => "released".to_string(),
        End::PeerAborted => "aborted by the peer".to_string(),
        End::Lost(why) => format!("connection lost: {why}"),
        End::Abort(why) => {
            let _ = association.abort();
            format!("aborted: {why}")
        }
    };
    finish(&db, tally);
}

/// How an established association ended.
enum End {
    Released,
    PeerAborted,
    /// The connection broke (the peer vanished, a write failed).
    Lost(String),
    /// We end it with an A-ABORT, for this reason.
    Abort(String),
}

/// A C-STORE whose data set is arriving.
struct Incoming {
    presentation_context_id: u8,
    command: Command,
    /// The Part 10 file: preamble and meta group, then the data set as it arrives.
    file: Vec<u8>,
    head_len: usize,
}

/// What the loop holds between PDVs: the command being read, the instance being received.
#[derive(Default)]
struct Receiving {
    command_bytes: Vec<u8>,
    incoming: Option<Incoming>,
}

fn receive_loop<S: Transport>(
    association: &mut ServerAssociation<S>,
    shared: &Shared,
    db: &mut Database,
    tally: &mut Tally,
) -> End {
    let config = &shared.config;
    let mut last_activity = Instant::now();
    let mut rx = Receiving::default();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return End::Abort("lungwatch is shutting down".into());
        }
        if tally.started.elapsed() > config.max_association() {
            return End::Abort(format!(
                "open longer than dicom.max_association_secs ({} s)",
                config.max_association_secs
            ));
        }
        let pdu = match association.receive() {
            Ok(pdu) => pdu,
            Err(e) if is_timeout(&e) => {
                if last_activity.elapsed() > config.idle_timeout() {
                    return End::Abort(format!(
                        "nothing received for dicom.idle_timeout_secs ({} s)",
                        config.idle_timeout_secs
                    ));
                }
                continue;
            }
            Err(e) => return End::Lost(e.to_string()),
        };
        last_activity = Instant::now();
        let values = match pdu {
            Pdu::PData { data } => data,
            Pdu::ReleaseRQ => {
                return match association.send(&Pdu::ReleaseRP) {
                    Ok(()) if rx.incoming.is_none() => End::Released,
                    Ok(()) => End::Lost("released with an instance incomplete".into()),
                    Err(e) => End::Lost(e.to_string()),
                };
            }
            Pdu::AbortRQ { .. } => return End::PeerAborted,
            other => return End::Abort(format!("unexpected PDU {other:?}")),
        };
        for value in values {
            let step = match value.value_type {
                PDataValueType::Command => on_command(association, tally, &mut rx, &value),
                PDataValueType::Data => on_data(association, shared, db, tally, &mut rx, &value),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }
}

/// A command fragment; at the last one, a C-ECHO is answered and a C-STORE starts an
/// instance. Err ends the association.
fn on_command<S: Transport>(
    association: &mut ServerAssociation<S>,
    tally: &Tally,
    rx: &mut Receiving,
    value: &PDataValue,
) -> Result<(), End> {
    rx.command_bytes.extend_from_slice(&value.data);
    if !value.is_last {
        return Ok(());
    }
    let command = message::parse_command(&rx.command_bytes).map_err(End::Abort)?;
    rx.command_bytes.clear();
    let pc = value.presentation_context_id;
    match command.field {
        C_ECHO_RQ => {
            let rsp = message::echo_response(&command);
            send_command(association, pc, rsp).map_err(End::Lost)
        }
        C_STORE_RQ if command.has_data_set && rx.incoming.is_none() => {
            let Some(ts) = accepted_transfer_syntax(association, pc) else {
                return Err(End::Abort(format!(
                    "C-STORE on presentation context {pc}, which was not accepted"
                )));
            };
            let file = file_head(&command, &ts, &tally.record.calling_ae).map_err(End::Abort)?;
            rx.incoming = Some(Incoming {
                presentation_context_id: pc,
                command,
                head_len: file.len(),
                file,
            });
            Ok(())
        }
        field => Err(End::Abort(format!(
            "unsupported or out-of-order DIMSE command 0x{field:04X}"
        ))),
    }
}

/// A data set fragment of the instance being received; at the last one, the instance is
/// stored and the C-STORE answered. Err ends the association.
fn on_data<S: Transport>(
    association: &mut ServerAssociation<S>,
    shared: &Shared,
    db: &mut Database,
    tally: &mut Tally,
    rx: &mut Receiving,
    value: &PDataValue,
) -> Result<(), End> {
    let Some(inc) = rx.incoming.as_mut() else {
        return Err(End::Abort("a data set without its C-STORE command".into()));
    };
    if inc.presentation_context_id != value.presentation_context_id {
        return Err(End::Abort(
            "data set fragment on another presentation context".into(),
        ));
    }
    if inc.file.len() - inc.head_len + value.data.len() > MAX_DATA_SET_BYTES {
        return Err(End::Abort(format!(
            "data set larger than {} MiB",
            MAX_DATA_SET_BYTES >> 20
        )));
    }
    inc.file.extend_from_slice(&value.data);
    tally.record.bytes += value.data.len() as i64;
    if !value.is_last {
        return Ok(());
    }
    let inc = rx.incoming.take().expect("checked above");
    let status = store(shared, db, &inc, tally);
    let rsp = message::store_response(&inc.command, &status);
    send_command(association, inc.presentation_context_id, rsp).map_err(End::Lost)
}

/// Stores one complete instance; the status to answer with.
fn store(shared: &Shared, db: &mut Database, inc: &Incoming, tally: &mut Tally) -> Status {
    let origin = format!(
        "C-STORE from {} at {}/{}",
        tally.record.calling_ae, tally.record.peer, inc.command.affected_sop_instance_uid
    );
    if shared.context.paused.load(Ordering::SeqCst) {
        tally.record.refused += 1;
        return Status::OutOfResources("disk full on lungwatch: ingest paused".into());
    }
    match ingest::ingest_bytes(db, &shared.context.dirs, &inc.file, &origin, true) {
        Ok(Outcome::Stored { .. }) => {
            tally.record.stored += 1;
            Status::Success
        }
        Ok(Outcome::Duplicate { sop_instance_uid }) => {
            info!("{origin}: duplicate of stored instance {sop_instance_uid}");
            tally.record.duplicates += 1;
            Status::Success
        }
        Ok(Outcome::Quarantined(r)) => {
            tally.record.refused += 1;
            db.report(EventLevel::Warn, &format!("quarantined {origin}: {r}"));
            Status::CannotUnderstand(r.to_string())
        }
        // Neither happens with quarantine_truncated = true and bytes in memory.
        Ok(Outcome::Deferred(r)) => {
            tally.record.refused += 1;
            Status::OutOfResources(r.to_string())
        }
        Ok(Outcome::Vanished) => {
            tally.record.refused += 1;
            Status::OutOfResources("not stored".into())
        }
        Err(e) => {
            tally.record.refused += 1;
            db.report(EventLevel::Error, &format!("cannot store {origin}: {e}"));
            Status::OutOfResources(format!("not stored: {e}"))
        }
    }
}

/// The transfer syntax negotiated for an accepted presentation context.
fn accepted_transfer_syntax<S>(association: &ServerAssociation<S>, id: u8) -> Option<String> {
    association
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == id && pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| pc.transfer_syntax.trim_end_matches(['\0', ' ']).to_string())
}

/// Preamble, `DICM` and a file meta group for a data set received under `command` in
/// `transfer_syntax`: the bytes a Part 10 file of it starts with.
fn file_head(
    command: &Command,
    transfer_syntax: &str,
    calling_ae: &str,
) -> Result<Vec<u8>, String> {
    let version: String = format!("LUNGWATCH_{}", env!("CARGO_PKG_VERSION"))
        .chars()
        .take(16)
        .collect();
    let mut builder = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(command.affected_sop_class_uid.as_str())
        .media_storage_sop_instance_uid(command.affected_sop_instance_uid.as_str())
        .transfer_syntax(transfer_syntax)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(version);
    if !calling_ae.is_empty() {
        builder = builder.source_application_entity_title(calling_ae);
    }
    let meta = builder
        .build()
        .map_err(|e| format!("cannot build a file meta group for the C-STORE: {e}"))?;
    let mut out = Vec::with_capacity(600 * 1024);
    out.extend_from_slice(&[0u8; 128]);
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| format!("cannot write a file meta group: {e}"))?;
    Ok(out)
}

fn send_command<S: Transport>(
    association: &mut ServerAssociation<S>,
    presentation_context_id: u8,
    data: Vec<u8>,
) -> Result<(), String> {
    association
        .send(&message::command_pdu(presentation_context_id, data))
        .map_err(|e| e.to_string())
}

/// A read that ended on the socket timeout, not on an error.
fn is_timeout(e: &dicom_ul::association::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            );
        }
        source = s.source();
    }
    false
}

/// A peer address outside `dicom.allowed_peers`: logged like any rejected association.
fn log_refused_peer(peer: SocketAddr, shared: &Shared) {
    let record = AssociationRecord {
        peer: peer.to_string(),
        started_at: db::now_secs(),
        outcome: format!(
            "rejected: peer address {} is not in dicom.allowed_peers (connection closed)",
            peer.ip()
        ),
        ..Default::default()
    };
    warn!("DICOM connection from {peer} {}", record.outcome);
    match Database::open(&shared.context.db_path) {
        Ok(db) => {
            if let Err(e) = db.log_association(&record) {
                log::error!("cannot record the DICOM association: {e}");
            }
        }
        Err(e) => log::error!("cannot record the DICOM association: {e}"),
    }
}

/// Over `max_associations`: read the A-ASSOCIATE-RQ (after the TLS handshake, on a TLS
/// receiver) and reject it as transient ("local limit exceeded"), which tells the peer to
/// try again later.
fn reject_busy(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let started = Instant::now();
    let mut record = AssociationRecord {
        peer: peer.to_string(),
        started_at: db::now_secs(),
        outcome: format!(
            "rejected: {} associations already open (dicom.max_associations)",
            shared.config.max_associations
        ),
        ..Default::default()
    };
    let short = Some(Duration::from_secs(2));
    let answered = stream
        .set_read_timeout(short)
        .and_then(|()| stream.set_write_timeout(short))
        .map_err(|e| e.to_string())
        .and_then(|()| match &shared.context.tls.server() {
            Some(config) => {
                let conn = rustls::ServerConnection::new(config.clone())
                    .map_err(|e| format!("TLS: {e}"))?;
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let answered = reject_transient(&mut tls, &mut record);
                tls.conn.send_close_notify();
                let _ = tls.flush();
                answered
            }
            None => reject_transient(&mut stream, &mut record),
        });
    if let Err(why) = answered {
        record.outcome = format!(
            "{} (the rejection was not delivered: {why})",
            record.outcome
        );
    }
    record.duration_ms = started.elapsed().as_millis() as i64;
    warn!(
        "DICOM association from {} ({peer}) {}",
        record.calling_ae, record.outcome
    );
    match Database::open(&shared.context.db_path) {
        Ok(db) => {
            if let Err(e) = db.log_association(&record) {
                log::error!("cannot record the DICOM association: {e}");
            }
        }
        Err(e) => log::error!("cannot record the DICOM association: {e}"),
    }
}

/// Reads one A-ASSOCIATE-RQ from `stream` (its AE titles into `record`) and answers it
/// with a transient A-ASSOCIATE-RJ.
fn reject_transient<S: Read + Write>(
    stream: &mut S,
    record: &mut AssociationRecord,
) -> Result<(), String> {
    let mut head = [0u8; 6];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
    if head[0] != 0x01 || len > 64 * 1024 {
        return Err("not an A-ASSOCIATE-RQ".into());
    }
    let mut pdu = head.to_vec();
    pdu.resize(6 + len, 0);
    stream
        .read_exact(&mut pdu[6..])
        .map_err(|e| e.to_string())?;
    if let Ok(Some(Pdu::AssociationRQ(rq))) =
        dicom_ul::read_pdu(&pdu[..], dicom_ul::pdu::MAXIMUM_PDU_SIZE, false)
    {
        record.calling_ae = rq.calling_ae_title;
        record.called_ae = rq.called_ae_title;
    }
    let rj = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    let mut out = Vec::new();
    dicom_ul::write_pdu(&mut out, &rj).map_err(|e| e.to_string())?;
    stream.write_all(&out).map_err(|e| e.to_string())?;
    stream.flush().map_err(|e| e.to_string())
}

fn finish(db: &Database, mut tally: Tally) {
    tally.record.duration_ms = tally.started.elapsed().as_millis() as i64;
    let r = &tally.record;
    let line = format!(
        "DICOM association from {:?} ({}) to {:?}: {}; {} stored, {} duplicates, {} refused, {} bytes in {} ms",
        r.calling_ae,
        r.peer,
        r.called_ae,
        r.outcome,
        r.stored,
        r.duplicates,
        r.refused,
        r.bytes,
        r.duration_ms
    );
    if r.outcome == "released" {
        info!("{line}");
    } else {
        warn!("{line}");
    }
    if let Err(e) = db.log_association(r) {
        log::error!("cannot record the DICOM association: {e}");
    }
}
