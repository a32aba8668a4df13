//! lungwatch as a client (SCU) of a configured destination. Today: C-ECHO, to check that a
//! destination is reachable and accepts lungwatch's association.

use std::time::{Duration, Instant};

use anyhow::Context;
use dicom_ul::ClientAssociationOptions;
use dicom_ul::Pdu;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};

use super::message;
use crate::config::{Destination, DicomConfig};

/// How long to wait for the peer at each step.
const TIMEOUT: Duration = Duration::from_secs(15);

/// C-ECHO `destination` as `dicom.ae_title`; the round trip on success.
pub fn echo(local: &DicomConfig, destination: &Destination) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let address = format!("{}:{}", destination.host, destination.port);
    let mut association = ClientAssociationOptions::new()
        .calling_ae_title(local.ae_title.trim().to_string())
        .called_ae_title(destination.ae_title.trim().to_string())
        .with_abstract_syntax(message::VERIFICATION)
        .connection_timeout(TIMEOUT)
        .read_timeout(TIMEOUT)
        .establish(address.as_str())
        .with_context(|| {
            format!(
                "no association with {} ({} at {address})",
                destination.name, destination.ae_title
            )
        })?;
    let pc = association
        .presentation_contexts()
        .iter()
        .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| pc.id)
        .context("the peer accepted no Verification presentation context")?;
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Command,
                is_last: true,
                data: message::echo_request(1),
            }],
        })
        .context("cannot send the C-ECHO request")?;
    let mut command = Vec::new();
    let response = loop {
        match association.receive().context("no C-ECHO response")? {
            Pdu::PData { data } => {
                let mut done = None;
                for v in data {
                    if v.value_type == PDataValueType::Command {
                        command.extend_from_slice(&v.data);
                        if v.is_last {
                            done =
                                Some(message::parse_command(&command).map_err(anyhow::Error::msg)?);
                        }
                    }
                }
                if let Some(r) = done {
                    break r;
                }
            }
            other => anyhow::bail!("unexpected answer to the C-ECHO: {other:?}"),
        }
    };
    let _ = association.release();
    anyhow::ensure!(
        response.field == message::C_ECHO_RSP,
        "the answer is not a C-ECHO response (command 0x{:04X})",
        response.field
    );
    match response.status {
        Some(0) => Ok(started.elapsed()),
        Some(s) => anyhow::bail!("C-ECHO failed with status 0x{s:04X}"),
        None => anyhow::bail!("the C-ECHO response has no status"),
    }
}
