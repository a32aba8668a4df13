//! lungwatch: an offline appliance that watches a PACS drop folder and analyses chest CT.
//!
//! See ARCHITECTURE.md for the map of modules and the invariants they keep.

#![forbid(unsafe_code)]

pub mod analysis;
pub mod analyze;
pub mod audit_export;
pub mod calibrate;
pub mod config;
pub mod config_edit;
pub mod daemon;
pub mod db;
pub mod dicom;
pub mod dimse;
pub mod ingest;
pub mod inspect;
pub mod labelled;
pub mod objects;
pub mod outbox;
pub mod passwd;
pub mod pem;
pub mod pipeline;
pub mod plausible;
pub mod report;
pub mod send;
pub mod series;
pub mod status;
pub mod sys;
pub mod validate;
pub mod web;
pub mod worker;
