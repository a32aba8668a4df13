//! The JSON that rows hold (`instances.header_json`, `results.report_json`) is a
//! compatibility promise: each document carries the version of its layout, `format`, so
//! a row written by a newer lungwatch is refused with a clear reason instead of being
//! misread, and a reader can tell which layout it has. Rows written before the field
//! existed have the first layout and read as format 1.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The layout version this build writes for every stored document.
pub const FORMAT: u32 = 1;

fn first_format() -> u32 {
    1
}

#[derive(Serialize)]
struct Outgoing<'a, T> {
    format: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// Only the version, read first: a newer layout is refused before its body is parsed.
#[derive(Deserialize)]
struct Version {
    #[serde(default = "first_format")]
    format: u32,
}

/// `value` as stored JSON, with the current format.
pub fn to_json<T: Serialize>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string(&Outgoing {
        format: FORMAT,
        body: value,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("stored by a newer lungwatch (format {0}, this build reads up to {FORMAT})")]
    Newer(u32),
    #[error("not a readable document: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads stored JSON of any format up to the current one.
pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, ReadError> {
    let version: Version = serde_json::from_str(text)?;
    if version.format > FORMAT {
        return Err(ReadError::Newer(version.format));
    }
    // `format` itself is an unknown field to the body's type, which ignores it.
    Ok(serde_json::from_str(text)?)
}

/// As a rusqlite error on column `column`, for row mappers.
pub fn column_error(column: usize, e: ReadError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::InstanceHeader;

    #[test]
    fn round_trip_and_legacy_rows() {
        let h = InstanceHeader {
            rows: Some(512),
            modality: Some("CT".into()),
            ..Default::default()
        };
        let json = to_json(&h).unwrap();
        assert!(json.contains("\"format\":1"), "{json}");
        assert_eq!(from_json::<InstanceHeader>(&json).unwrap(), h);
        // A row written before `format` existed.
        let legacy = serde_json::to_string(&h).unwrap();
        assert_eq!(from_json::<InstanceHeader>(&legacy).unwrap(), h);
    }

    #[test]
    fn newer_and_damaged_rows_are_refused_with_a_reason() {
        let newer = r#"{"format":7,"transfer_syntax":"1.2"}"#;
        let e = from_json::<InstanceHeader>(newer).unwrap_err();
        assert!(e.to_string().contains("newer lungwatch (format 7"), "{e}");
        assert!(from_json::<InstanceHeader>("{not json").is_err());
    }
}
