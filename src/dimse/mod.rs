//! The DICOM network edge: a C-STORE receiver (SCP) inside `serve`, on dicom-ul.
//!
//! It is another edge of ingest: every received instance goes through
//! `ingest::ingest_bytes`, exactly as a file from the drop folder, before its C-STORE
//! response is sent. This module knows DIMSE and associations; it knows nothing of series,
//! selection or jobs.
//!
//! - `syntaxes.rs`: the SOP classes accepted and the transfer syntaxes offered.
//! - `message.rs`: DIMSE command sets, read and written (pure).
//! - `scp.rs`: the listener, one thread per association, the association log.
//! - `scu.rs`: lungwatch as a client of a configured destination (C-ECHO, C-STORE).
//! - `tls.rs`: DICOM TLS, the receiver's and the client's rustls configurations.
//! - `in_service.rs`: those configurations in service in `serve`, their SIGHUP reload, and
//!   what the status page says of DICOM TLS.

pub mod in_service;
pub mod message;
mod scp;
pub mod scu;
pub mod syntaxes;
pub mod tls;

pub use in_service::{DicomSecurity, Reloaded, TlsConfigs};
pub use scp::{IMPLEMENTATION_CLASS_UID, ScpContext, ScpHandle, start};
