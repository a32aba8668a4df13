//! DIMSE command sets: reading a request's command, writing C-ECHO and C-STORE responses.
//! Pure functions on bytes; the association loop (`scp.rs`) moves them over the wire.
//!
//! Command sets are always encoded in implicit VR little endian (PS3.7 6.3.1), whatever the
//! presentation context's transfer syntax.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::Pdu;
use dicom_ul::pdu::{PDataValue, PDataValueType};

/// Command Field values (PS3.7 E.1).
pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
/// Command Data Set Type: no data set follows.
const NO_DATA_SET: u16 = 0x0101;
/// The Verification SOP Class.
pub const VERIFICATION: &str = uids::VERIFICATION;

/// The fields of a request command this SCP acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub field: u16,
    /// Message ID; in a response, the Message ID Being Responded To.
    pub message_id: u16,
    pub affected_sop_class_uid: String,
    /// Empty for C-ECHO.
    pub affected_sop_instance_uid: String,
    pub has_data_set: bool,
    /// Status (0000,0900), in a response.
    pub status: Option<u16>,
}

/// A C-STORE response status (PS3.4 B.2.3, PS3.7 C).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Success,
    /// A700: nothing was stored (disk full, I/O or database error); the peer may retry.
    OutOfResources(String),
    /// C000: the data set was received and kept in quarantine, but it cannot be used.
    CannotUnderstand(String),
}

impl Status {
    pub fn code(&self) -> u16 {
        match self {
            Status::Success => 0x0000,
            Status::OutOfResources(_) => 0xA700,
            Status::CannotUnderstand(_) => 0xC000,
        }
    }
    fn comment(&self) -> Option<&str> {
        match self {
            Status::Success => None,
            Status::OutOfResources(c) | Status::CannotUnderstand(c) => Some(c),
        }
    }
}

/// A whole command set in one P-DATA PDU on presentation context `pc`: command sets are
/// small (under 200 bytes), far below any peer's maximum PDU length.
pub fn command_pdu(pc: u8, command: Vec<u8>) -> Pdu {
    Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type: PDataValueType::Command,
            is_last: true,
            data: command,
        }],
    }
}

/// Reads a command set. Errors are in words for the association log.
pub fn parse_command(bytes: &[u8]) -> Result<Command, String> {
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| format!("unreadable command set: {e}"))?;
    let int = |tag| -> Result<u16, String> {
        obj.element(tag)
            .map_err(|_| format!("command set without {tag}"))?
            .to_int::<u16>()
            .map_err(|e| format!("command element {tag}: {e}"))
    };
    let text = |tag| -> String {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' ').to_string())
            .unwrap_or_default()
    };
    Ok(Command {
        field: int(tags::COMMAND_FIELD)?,
        message_id: int(tags::MESSAGE_ID).or_else(|_| int(tags::MESSAGE_ID_BEING_RESPONDED_TO))?,
        affected_sop_class_uid: text(tags::AFFECTED_SOP_CLASS_UID),
        affected_sop_instance_uid: text(tags::AFFECTED_SOP_INSTANCE_UID),
        has_data_set: int(tags::COMMAND_DATA_SET_TYPE)? != NO_DATA_SET,
        status: int(tags::STATUS).ok(),
    })
}

/// Command Data Set Type: a data set follows (any value but 0101).
const DATA_SET_FOLLOWS: u16 = 0x0000;
/// Priority: medium.
const PRIORITY_MEDIUM: u16 = 0x0000;

/// A C-STORE-RQ with `message_id` for one instance; its data set follows in data PDVs.
pub fn store_request(message_id: u16, sop_class_uid: &str, sop_instance_uid: &str) -> Vec<u8> {
    encode(vec![
        uid(tags::AFFECTED_SOP_CLASS_UID, sop_class_uid),
        us(tags::COMMAND_FIELD, C_STORE_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::PRIORITY, PRIORITY_MEDIUM),
        us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_FOLLOWS),
        uid(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance_uid),
    ])
}

/// What a C-STORE response status means for the sender (PS3.4 B.2.3, PS3.7 C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreVerdict {
    /// Success, or a warning (coercion, elements discarded): the instance is stored.
    Stored,
    /// Out of resources (A7xx) or a resource limitation (0213): try again later.
    Transient,
    /// Anything else (SOP class not supported, data set mismatch, cannot understand…):
    /// sending the same object again gives the same answer.
    Refused,
}

pub fn store_verdict(status: u16) -> StoreVerdict {
    match status {
        0x0000 | 0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF => StoreVerdict::Stored,
        0xA700..=0xA7FF | 0x0213 => StoreVerdict::Transient,
        _ => StoreVerdict::Refused,
    }
}

/// A C-ECHO-RQ with `message_id`.
pub fn echo_request(message_id: u16) -> Vec<u8> {
    encode(vec![
        uid(tags::AFFECTED_SOP_CLASS_UID, VERIFICATION),
        us(tags::COMMAND_FIELD, C_ECHO_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
    ])
}

/// The C-ECHO-RSP to `request`: success.
pub fn echo_response(request: &Command) -> Vec<u8> {
    encode(vec![
        uid(tags::AFFECTED_SOP_CLASS_UID, VERIFICATION),
        us(tags::COMMAND_FIELD, C_ECHO_RSP),
        us(tags::MESSAGE_ID_BEING_RESPONDED_TO, request.message_id),
        us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
        us(tags::STATUS, 0x0000),
    ])
}

/// The C-STORE-RSP to `request` with `status`; a failure carries its reason as Error
/// Comment (at most 64 characters, the LO limit).
pub fn store_response(request: &Command, status: &Status) -> Vec<u8> {
    let mut elements = vec![
        uid(
            tags::AFFECTED_SOP_CLASS_UID,
            &request.affected_sop_class_uid,
        ),
        us(tags::COMMAND_FIELD, C_STORE_RSP),
        us(tags::MESSAGE_ID_BEING_RESPONDED_TO, request.message_id),
        us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
        us(tags::STATUS, status.code()),
        uid(
            tags::AFFECTED_SOP_INSTANCE_UID,
            &request.affected_sop_instance_uid,
        ),
    ];
    if let Some(comment) = status.comment() {
        let short: String = comment
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .filter(|c| *c != '\\')
            .take(64)
            .collect();
        elements.push(DataElement::new(
            tags::ERROR_COMMENT,
            VR::LO,
            PrimitiveValue::from(short),
        ));
    }
    encode(elements)
}

fn uid(tag: dicom_core::Tag, value: &str) -> dicom_object::mem::InMemElement {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(value))
}

fn us(tag: dicom_core::Tag, value: u16) -> dicom_object::mem::InMemElement {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

fn encode(elements: Vec<dicom_object::mem::InMemElement>) -> Vec<u8> {
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let mut out = Vec::with_capacity(160);
    obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("a command set of fixed elements always encodes");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_request() -> Command {
        Command {
            field: C_STORE_RQ,
            message_id: 7,
            affected_sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            affected_sop_instance_uid: "1.2.3.4.5".into(),
            has_data_set: true,
            status: None,
        }
    }

    #[test]
    fn responses_read_back_with_their_fields() {
        let rq = store_request();
        let bytes = store_response(&rq, &Status::Success);
        let back = parse_command(&bytes).unwrap();
        assert_eq!((back.field, back.message_id), (C_STORE_RSP, 7));
        assert_eq!(back.affected_sop_instance_uid, "1.2.3.4.5");
        assert_eq!(back.affected_sop_class_uid, rq.affected_sop_class_uid);
        assert!(!back.has_data_set);
        assert_eq!(back.status, Some(0));
        let rq = parse_command(&echo_request(9)).unwrap();
        assert_eq!((rq.field, rq.message_id, rq.status), (C_ECHO_RQ, 9, None));
        let echo = parse_command(&echo_response(&rq)).unwrap();
        assert_eq!(
            (echo.field, echo.affected_sop_class_uid.as_str()),
            (C_ECHO_RSP, VERIFICATION)
        );
    }

    #[test]
    fn failure_status_and_comment_are_encoded() {
        let rq = store_request();
        let long = format!("conflicting-duplicate: {}", "x".repeat(100));
        let bytes = store_response(&rq, &Status::CannotUnderstand(long));
        let obj =
            InMemDicomObject::read_dataset_with_ts(&bytes[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
        assert_eq!(
            obj.element(tags::STATUS).unwrap().to_int::<u16>().unwrap(),
            0xC000
        );
        let comment = obj.element(tags::ERROR_COMMENT).unwrap().to_str().unwrap();
        assert!(comment.trim().len() <= 64 && comment.starts_with("conflicting-duplicate"));
        // The group length counts every byte after itself.
        let group_length = obj
            .element(tags::COMMAND_GROUP_LENGTH)
            .unwrap()
            .to_int::<u32>()
            .unwrap();
        assert_eq!(group_length as usize, bytes.len() - 12);
    }

    #[test]
    fn a_store_request_reads_back_and_statuses_have_verdicts() {
        let rq = parse_command(&super::store_request(
            3,
            "1.2.840.10008.5.1.4.1.1.66.4",
            "2.25.9",
        ))
        .unwrap();
        assert_eq!((rq.field, rq.message_id), (C_STORE_RQ, 3));
        assert_eq!(rq.affected_sop_class_uid, "1.2.840.10008.5.1.4.1.1.66.4");
        assert_eq!(rq.affected_sop_instance_uid, "2.25.9");
        assert!(rq.has_data_set);
        for (status, verdict) in [
            (0x0000, StoreVerdict::Stored),
            (0xB000, StoreVerdict::Stored),
            (0xB007, StoreVerdict::Stored),
            (0xA700, StoreVerdict::Transient),
            (0xA7FF, StoreVerdict::Transient),
            (0x0213, StoreVerdict::Transient),
            (0x0122, StoreVerdict::Refused),
            (0xA900, StoreVerdict::Refused),
            (0xC000, StoreVerdict::Refused),
            (0x0110, StoreVerdict::Refused),
        ] {
            assert_eq!(store_verdict(status), verdict, "status {status:04X}");
        }
    }

    #[test]
    fn a_command_without_its_field_is_refused() {
        let bytes = encode(vec![us(tags::COMMAND_FIELD, C_ECHO_RQ)]);
        assert!(
            parse_command(&bytes)
                .unwrap_err()
                .contains("command set without")
        );
        assert!(parse_command(b"\x01\x02").is_err());
    }
}
