//! From a file in the drop folder to an indexed instance in the store, or to quarantine.
//!
//! Invariant: a file taken from the drop folder is either stored and indexed, or in
//! quarantine with its reason recorded, before the original is removed. Nothing is ever
//! deleted without being stored or quarantined first.

pub mod stability;
pub mod store;
pub mod watcher;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use dicom_core::DicomValue;
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::db::{self, Database, NewInstance, ReadQueries};
use crate::dicom::InstanceHeader;
use crate::dicom::header::{hex, path_component, sha256};
use crate::dicom::read::{self, Extent, ParseError};

/// Why a file cannot be used; `code` names its quarantine folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectionCode,
    pub reason: String,
}

/// Why a file is quarantined. The kebab-case name is what the quarantine folder, the
/// database, the status page and a C-STORE failure comment show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionCode {
    Empty,
    NoSeriesIdentity,
    UndecodableTransferSyntax,
    MissingPixelData,
    Truncated,
    Malformed,
    NotDicom,
    ConflictingDuplicate,
}

impl RejectionCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionCode::Empty => "empty",
            RejectionCode::NoSeriesIdentity => "no-series-identity",
            RejectionCode::UndecodableTransferSyntax => "undecodable-transfer-syntax",
            RejectionCode::MissingPixelData => "missing-pixel-data",
            RejectionCode::Truncated => "truncated",
            RejectionCode::Malformed => "malformed",
            RejectionCode::NotDicom => "not-dicom",
            RejectionCode::ConflictingDuplicate => "conflicting-duplicate",
        }
    }
}

impl std::fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Rejection {
    fn new(code: RejectionCode, reason: impl Into<String>) -> Self {
        Rejection {
            code,
            reason: reason.into(),
        }
    }
    /// True for a file that may simply not have finished arriving.
    pub fn may_still_be_arriving(&self) -> bool {
        matches!(self.code, RejectionCode::Truncated | RejectionCode::Empty)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

/// Decides whether `bytes` are a usable DICOM image and returns its header.
///
/// The header is read only up to Pixel Data. The Pixel Data element itself is then checked
/// for presence and completeness (not decoded): a file whose pixels are cut short is
/// rejected here rather than failing an analysis later.
pub fn examine(bytes: &[u8]) -> Result<InstanceHeader, Rejection> {
    if bytes.is_empty() {
        return Err(Rejection::new(RejectionCode::Empty, "the file is empty"));
    }
    let header_obj = read::parse(bytes, Extent::Header).map_err(parse_rejection)?;
    let header = InstanceHeader::from_object(&header_obj);
    drop(header_obj);

    if header.series_instance_uid.is_none() {
        return Err(Rejection::new(
            RejectionCode::NoSeriesIdentity,
            "no Series Instance UID: the file cannot be assigned to a series",
        ));
    }
    match TransferSyntaxRegistry.get(&header.transfer_syntax) {
        None => {
            return Err(Rejection::new(
                RejectionCode::UndecodableTransferSyntax,
                format!("unknown transfer syntax {}", header.transfer_syntax),
            ));
        }
        Some(ts) if !ts.can_decode_all() => {
            return Err(Rejection::new(
                RejectionCode::UndecodableTransferSyntax,
                format!(
                    "transfer syntax {} ({}) has no pixel decoder in this build",
                    ts.uid(),
                    ts.name()
                ),
            ));
        }
        Some(_) => {}
    }

    let full = read::parse(bytes, Extent::Full).map_err(parse_rejection)?;
    let Some(pixel_data) = full.element_opt(tags::PIXEL_DATA).ok().flatten() else {
        // lungwatch's own measurement report, routed back by a PACS: kept and indexed like
        // its images, so that selection skips its series with the reason.
        if header.manufacturer.as_deref() == Some(crate::objects::MANUFACTURER)
            && header
                .sop_class_uid
                .as_deref()
                .and_then(crate::objects::kind_of)
                .is_some()
        {
            return Ok(header);
        }
        return Err(Rejection::new(
            RejectionCode::MissingPixelData,
            "the file has no Pixel Data",
        ));
    };
    match pixel_data.value() {
        DicomValue::Primitive(p) => {
            let needed = expected_native_bytes(&header);
            let have = p.calculate_byte_len();
            if let Some(needed) = needed {
                if have < needed {
                    return Err(Rejection::new(
                        RejectionCode::Truncated,
                        format!("Pixel Data holds {have} bytes, {needed} expected"),
                    ));
                }
                // More than one pad byte: Rows, Columns or Bits Allocated do not describe
                // the stored image, and reading it by the header would be garbage.
                if have > needed + 1 {
                    return Err(Rejection::new(
                        RejectionCode::Malformed,
                        format!(
                            "Pixel Data holds {have} bytes, but the header's Rows, Columns, \
                             samples, frames and Bits Allocated declare {needed}"
                        ),
                    ));
                }
            }
        }
        DicomValue::PixelSequence(seq) => {
            check_fragments(seq.fragments(), &header.transfer_syntax)?;
        }
        DicomValue::Sequence(_) => {
            return Err(Rejection::new(
                RejectionCode::Malformed,
                "Pixel Data is a sequence",
            ));
        }
    }
    Ok(header)
}

/// The encapsulated syntaxes whose fragments hold JPEG-family codestreams (JPEG, JPEG-LS,
/// JPEG 2000, HTJ2K), each ending with the marker FF D9.
const CODESTREAM_SYNTAXES: &[&str] = &[
    uids::JPEG_BASELINE8_BIT,
    uids::JPEG_EXTENDED12_BIT,
    uids::JPEG_LOSSLESS,
    uids::JPEG_LOSSLESS_SV1,
    uids::JPEGLS_LOSSLESS,
    uids::JPEGLS_NEAR_LOSSLESS,
    uids::JPEG2000_LOSSLESS,
    uids::JPEG2000,
    uids::HTJ2K_LOSSLESS,
    uids::HTJ2K_LOSSLESS_RPCL,
    uids::HTJ2K,
];

/// Structural completeness of encapsulated Pixel Data, without decoding it: a file cut
/// short loses the end of its last codestream. JPEG, JPEG-LS and JPEG 2000 codestreams all
/// end with the marker FF D9; an RLE fragment's header must point inside the fragment.
fn check_fragments(fragments: &[Vec<u8>], transfer_syntax: &str) -> Result<(), Rejection> {
    let truncated = |why: String| Rejection::new(RejectionCode::Truncated, why);
    let Some(last) = fragments.iter().rev().find(|f| !f.is_empty()) else {
        return Err(truncated("encapsulated Pixel Data has no fragments".into()));
    };
    if CODESTREAM_SYNTAXES.contains(&transfer_syntax) {
        // Encoders pad an odd-length codestream with one byte (0x00 or 0xFF); entropy-coded
        // data never contains FF D9, so finding it among the last bytes is conclusive.
        let tail = &last[last.len().saturating_sub(4)..];
        let end = tail.windows(2).any(|w| w == [0xFF, 0xD9]);
        if !end {
            return Err(truncated(
                "the compressed image stream ends without its end-of-image marker".into(),
            ));
        }
    } else if transfer_syntax == uids::RLE_LOSSLESS {
        for f in fragments.iter().filter(|f| !f.is_empty()) {
            let word = |i: usize| {
                f.get(i * 4..i * 4 + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            };
            let segments = word(0).unwrap_or(0);
            if !(1..=15).contains(&segments) || f.len() < 64 {
                return Err(truncated("RLE fragment has an invalid header".into()));
            }
            for i in 1..=segments {
                if word(i).is_none_or(|offset| offset >= f.len()) {
                    return Err(truncated("RLE segment starts beyond its fragment".into()));
                }
            }
        }
    }
    Ok(())
}

fn expected_native_bytes(h: &InstanceHeader) -> Option<usize> {
    let bits = h.bits_allocated? as usize;
    // Native YBR_FULL_422 stores two samples per pixel (Y, and Cb or Cr in turn).
    let samples = match h.photometric_interpretation.as_deref() {
        Some("YBR_FULL_422") => 2,
        _ => h.samples_per_pixel.unwrap_or(1) as usize,
    };
    let n = h.rows? as usize
        * h.columns? as usize
        * samples
        * h.number_of_frames.unwrap_or(1).max(1) as usize;
    Some((n * bits).div_ceil(8))
}

fn parse_rejection(e: ParseError) -> Rejection {
    let code = match &e {
        ParseError::NotDicom(_) => RejectionCode::NotDicom,
        ParseError::Truncated(_) => RejectionCode::Truncated,
        ParseError::Malformed(_) => RejectionCode::Malformed,
        ParseError::UnsupportedTransferSyntax(_) => RejectionCode::UndecodableTransferSyntax,
    };
    Rejection::new(code, e.to_string())
}

/// The folders ingest writes to, and the lock that makes every edge of ingest (the drop
/// folder, the DICOM receiver's associations) one writer.
///
/// Why a lock and not one writer thread: each edge already runs on its own thread and holds
/// its own SQLite connection (SQLite's busy timeout orders their transactions). What must
/// never interleave is the look-up → placement → index sequence of two copies of one
/// instance: they would race for the same store path and staging name. Holding `lock` over
/// that sequence gives exactly the single-writer order, without a queue and a reply channel
/// between the receiving threads and a writer.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub store: PathBuf,
    pub quarantine: PathBuf,
    pub staging: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl Dirs {
    pub fn new(store: PathBuf, quarantine: PathBuf, staging: PathBuf) -> Self {
        Dirs {
            store,
            quarantine,
            staging,
            lock: Arc::new(Mutex::new(())),
        }
    }

    fn exclusive(&self) -> MutexGuard<'_, ()> {
        // The guarded value is (): a panic while holding it leaves nothing inconsistent
        // that the store's atomic placement and the index transaction do not already cover.
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        sop_instance_uid: String,
        series_uid: String,
    },
    /// The same instance was already stored (same bytes, or the same data set under a
    /// different file meta group); the copy was removed.
    Duplicate {
        sop_instance_uid: String,
    },
    Quarantined(Rejection),
    /// Looks unfinished (truncated); left in place to be looked at again later.
    Deferred(Rejection),
    /// The file disappeared before it could be read.
    Vanished,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError + '_ {
    move |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Ingests one file that has stopped changing: `ingest_bytes` on its content, then the
/// original is removed, unless it was deferred.
///
/// `quarantine_truncated` is false while the file may still be arriving: a truncated file
/// is then deferred instead of quarantined.
pub fn ingest_file(
    db: &mut Database,
    dirs: &Dirs,
    path: &Path,
    quarantine_truncated: bool,
) -> Result<Outcome, IngestError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Vanished),
        Err(e) => return Err(io_err(path)(e)),
    };
    let outcome = ingest_bytes(db, dirs, &bytes, &original_name(path), quarantine_truncated)?;
    if !matches!(outcome, Outcome::Deferred(_)) {
        remove_original(path)?;
    }
    Ok(outcome)
}

/// Stores and indexes one instance held in memory, or quarantines it with its reason. The
/// common path of every edge: when it returns `Ok` (other than `Deferred`), the instance
/// is durably in the store and the index, or in the quarantine with its reason recorded.
///
/// `origin` names where the bytes came from (the dropped file's path, or the association
/// that sent them); its last `/`-separated part names the quarantined copy.
pub fn ingest_bytes(
    db: &mut Database,
    dirs: &Dirs,
    bytes: &[u8],
    origin: &str,
    quarantine_truncated: bool,
) -> Result<Outcome, IngestError> {
    let digest = sha256(bytes);
    let header = match examine(bytes) {
        Ok(h) => h,
        Err(r) if r.may_still_be_arriving() && !quarantine_truncated => {
            return Ok(Outcome::Deferred(r));
        }
        Err(r) => {
            let _writer = dirs.exclusive();
            return quarantine(db, dirs, origin, bytes, &digest, r);
        }
    };
    let identity = header.instance_identity(&digest);
    let digest_hex = hex(&digest);
    let _writer = dirs.exclusive();
    if let Some(existing) = db.find_instance(&identity.uid)? {
        if existing.sha256 == digest_hex || same_data_set(dirs, &existing.store_path, bytes) {
            return Ok(Outcome::Duplicate {
                sop_instance_uid: identity.uid,
            });
        }
        let r = Rejection::new(
            RejectionCode::ConflictingDuplicate,
            format!(
                "SOP Instance UID {} is already stored with different content",
                identity.uid
            ),
        );
        return quarantine(db, dirs, origin, bytes, &digest, r);
    }
    let series_uid = header
        .series_instance_uid
        .clone()
        .expect("examine() guarantees a series UID");
    let relative = PathBuf::from(path_component(
        header
            .study_instance_uid
            .as_deref()
            .unwrap_or("unknown-study"),
    ))
    .join(path_component(&series_uid))
    .join(format!("{}.dcm", path_component(&identity.uid)));
    let dest = dirs.store.join(&relative);
    store::place_atomically(bytes, &dirs.staging, &dest).map_err(io_err(&dest))?;
    db.insert_instance(
        &NewInstance {
            sop_instance_uid: &identity.uid,
            uid_derived: identity.derived,
            header: &header,
            series_uid: &series_uid,
            store_path: &relative.to_string_lossy(),
            sha256: &digest_hex,
            size_bytes: bytes.len() as u64,
            original_name: origin,
        },
        db::now_secs(),
    )?;
    Ok(Outcome::Stored {
        sop_instance_uid: identity.uid,
        series_uid,
    })
}

/// True when the stored copy holds exactly the data set of `bytes`, whatever their file
/// meta groups say: a PACS's folder export and its C-STORE of one instance differ only
/// there (implementation UID, source AE title), and are one instance, not a conflict.
fn same_data_set(dirs: &Dirs, store_path: &str, bytes: &[u8]) -> bool {
    let Ok(stored) = std::fs::read(dirs.store.join(store_path)) else {
        return false;
    };
    match (read::data_set_bytes(&stored), read::data_set_bytes(bytes)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn quarantine(
    db: &mut Database,
    dirs: &Dirs,
    origin: &str,
    bytes: &[u8],
    digest: &[u8; 32],
    rejection: Rejection,
) -> Result<Outcome, IngestError> {
    let dest = store::quarantine_path(
        &dirs.quarantine,
        rejection.code.as_str(),
        Path::new(origin),
        digest,
    );
    store::place_atomically(bytes, &dirs.staging, &dest).map_err(io_err(&dest))?;
    let relative = dest
        .strip_prefix(&dirs.quarantine)
        .unwrap_or(&dest)
        .to_string_lossy()
        .into_owned();
    db.record_quarantine(
        origin,
        &relative,
        rejection.code.as_str(),
        &rejection.reason,
        db::now_secs(),
    )?;
    Ok(Outcome::Quarantined(rejection))
}

fn remove_original(path: &Path) -> Result<(), IngestError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn original_name(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Whether a name in the drop folder is one an export is still writing, or hidden.
pub fn is_ignored_name(name: &str, ignore_suffixes: &[String]) -> bool {
    name.starts_with('.') || ignore_suffixes.iter().any(|s| name.ends_with(s.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_and_hidden_names_are_ignored() {
        let suffixes = crate::config::Config::default().watch.ignore_suffixes;
        for name in [".hidden.dcm", "a.dcm.part", "x.tmp", "y.filepart", "z~"] {
            assert!(is_ignored_name(name, &suffixes), "{name}");
        }
        for name in ["IM0001.dcm", "IM0001", "1.2.3.4"] {
            assert!(!is_ignored_name(name, &suffixes), "{name}");
        }
    }

    /// A 2×2 CT image as a Part 10 file; `source_ae` only changes the file meta group.
    fn tiny_ct(source_ae: &str, pixels: [u16; 4]) -> Vec<u8> {
        use dicom_core::{DataElement, PrimitiveValue, VR};
        use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
        let text = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
        let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
        let obj = InMemDicomObject::from_element_iter([
            text(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
            text(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.1"),
            text(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3.4"),
            text(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4.0"),
            text(tags::MODALITY, VR::CS, "CT"),
            us(tags::SAMPLES_PER_PIXEL, 1),
            text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
            us(tags::ROWS, 2),
            us(tags::COLUMNS, 2),
            us(tags::BITS_ALLOCATED, 16),
            us(tags::BITS_STORED, 16),
            us(tags::HIGH_BIT, 15),
            us(tags::PIXEL_REPRESENTATION, 0),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(pixels.to_vec().into()),
            ),
        ]);
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax("1.2.840.10008.1.2.1")
                    .source_application_entity_title(source_ae),
            )
            .unwrap();
        let mut out = Vec::new();
        file.write_all(&mut out).unwrap();
        out
    }

    #[test]
    fn duplicates_are_judged_on_the_data_set_not_the_meta_group() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs::new(
            dir.path().join("store"),
            dir.path().join("quarantine"),
            dir.path().join("staging"),
        );
        let mut db = Database::open_in_memory().unwrap();
        let mut ingest =
            |bytes: &[u8]| ingest_bytes(&mut db, &dirs, bytes, "test/x", true).unwrap();
        let first = tiny_ct("EXPORT", [1, 2, 3, 4]);
        assert!(matches!(ingest(&first), Outcome::Stored { .. }));
        assert!(matches!(ingest(&first), Outcome::Duplicate { .. }));
        // The same instance received with another meta group (as by C-STORE).
        let resent = tiny_ct("PACS", [1, 2, 3, 4]);
        assert_ne!(resent, first);
        assert!(matches!(ingest(&resent), Outcome::Duplicate { .. }));
        // The same UID with other pixels is a conflict, kept in quarantine.
        match ingest(&tiny_ct("PACS", [9, 9, 9, 9])) {
            Outcome::Quarantined(r) => assert_eq!(r.code, RejectionCode::ConflictingDuplicate),
            other => panic!("{other:?}"),
        }
        assert_eq!(db.status_counts().unwrap().instances, 1);
        assert_eq!(db.status_counts().unwrap().quarantined, 1);
    }

    #[test]
    fn garbage_is_rejected_with_a_code() {
        assert_eq!(examine(b"").unwrap_err().code, RejectionCode::Empty);
        assert_eq!(
            examine(&[7u8; 4000]).unwrap_err().code,
            RejectionCode::NotDicom
        );
    }
}
