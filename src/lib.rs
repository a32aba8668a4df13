//! lungwatch: an offline appliance that watches a PACS drop folder and analyses chest CT.

pub mod config;
pub mod dicom;
