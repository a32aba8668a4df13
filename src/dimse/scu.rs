//! lungwatch as a client (SCU) of a configured destination: C-ECHO (is it reachable, does
//! it accept lungwatch's association?) and C-STORE of lungwatch's own objects, one
//! association for a batch of them.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use dicom_dictionary_std::uids;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use dicom_ul::ClientAssociationOptions;
use dicom_ul::Pdu;
use dicom_ul::association::CloseSocket;
use dicom_ul::association::client::ClientAssociation;
use dicom_ul::pdu::{PDataValueType, PresentationContextResultReason};

use super::in_service::TlsConfigs;
use super::message::{self, StoreVerdict};
use super::tls;
use crate::config::{Destination, DicomConfig};

/// How long to wait for the peer at each step.
const TIMEOUT: Duration = Duration::from_secs(15);
/// How long a destination may take to answer one C-STORE (a PACS writing a large SEG).
const STORE_TIMEOUT: Duration = Duration::from_secs(120);
/// The transfer syntaxes proposed for every object: lungwatch writes explicit VR little
/// endian, and re-encodes in implicit VR little endian for a peer that takes only that.
const STORE_SYNTAXES: [&str; 2] = [
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
];

/// One object to send: its SOP class and instance, and the Part 10 file it is in.
#[derive(Debug, Clone)]
pub struct StoreRequest {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub path: PathBuf,
}

/// What became of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Confirmed by the destination (success or a warning status).
    Stored,
    /// Not stored, worth trying again later (the destination down, busy, out of
    /// resources, the association lost).
    Retry(String),
    /// Not stored, and sending it again would give the same answer.
    Refused(String),
}

/// Sends `requests` to `destination` in one association as `local.ae_title`, over TLS with
/// the destination's configuration in `tls` when it has `tls`. Returns one outcome per
/// request, in order. An association that cannot be made, or that breaks,
/// gives `Retry` for every request not yet confirmed: nothing is reported stored that the
/// destination did not confirm.
pub fn store(
    local: &DicomConfig,
    destination: &Destination,
    tls: &TlsConfigs,
    requests: &[StoreRequest],
) -> Vec<StoreOutcome> {
    if requests.is_empty() {
        return Vec::new();
    }
    let mut classes: Vec<&str> = requests.iter().map(|r| r.sop_class_uid.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(local.ae_title.trim().to_string())
        .called_ae_title(destination.ae_title.trim().to_string())
        .connection_timeout(TIMEOUT)
        .read_timeout(STORE_TIMEOUT)
        .write_timeout(STORE_TIMEOUT);
    for class in &classes {
        options = options.with_presentation_context(
            class.to_string(),
            STORE_SYNTAXES.iter().map(|s| s.to_string()).collect(),
        );
    }
    let address = format!("{}:{}", destination.host, destination.port);
    let no_association = |why: String| {
        let why = format!(
            "no association with {} ({} at {address}{}): {why}",
            destination.name,
            destination.ae_title,
            if destination.tls { ", TLS" } else { "" }
        );
        requests
            .iter()
            .map(|_| StoreOutcome::Retry(why.clone()))
            .collect()
    };
    if !destination.tls {
        return match options.establish(address.as_str()) {
            Ok(a) => store_on(a, destination, requests),
            Err(e) => no_association(tls::chain(&e)),
        };
    }
    // With nothing in service yet, a TLS file that cannot be used now may be fixed before
    // the next attempt.
    let config = match tls.client(local, destination) {
        Ok(c) => c,
        Err(e) => return no_association(format!("{e:#}")),
    };
    match options
        .tls_config(config)
        .server_name(&destination.host)
        .establish_tls(address.as_str())
    {
        Ok(a) => store_on(a, destination, requests),
        Err(e) => no_association(tls::chain(&e)),
    }
}

/// The C-STOREs of [`store`] on an established association, on either transport.
fn store_on<S: CloseSocket + Read + Write>(
    mut association: ClientAssociation<S>,
    destination: &Destination,
    requests: &[StoreRequest],
) -> Vec<StoreOutcome> {
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut broken: Option<String> = None;
    for (k, request) in requests.iter().enumerate() {
        if let Some(why) = &broken {
            outcomes.push(StoreOutcome::Retry(why.clone()));
            continue;
        }
        let accepted = association
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.reason == PresentationContextResultReason::Acceptance
                    && pc.abstract_syntax.trim_end_matches('\0') == request.sop_class_uid
            })
            .map(|pc| (pc.id, pc.transfer_syntax.trim_end_matches('\0').to_string()));
        let Some((pc, syntax)) = accepted else {
            outcomes.push(StoreOutcome::Refused(format!(
                "{} does not accept SOP class {} (presentation context rejected)",
                destination.name, request.sop_class_uid
            )));
            continue;
        };
        let data_set = match encode_data_set(request, &syntax) {
            Ok(bytes) => bytes,
            Err(e) => {
                outcomes.push(StoreOutcome::Refused(format!("{e:#}")));
                continue;
            }
        };
        // Message IDs count from 1 and wrap: the peer only pairs a response with its request.
        let message_id = (k % usize::from(u16::MAX)) as u16 + 1;
        match store_one(&mut association, pc, message_id, request, &data_set) {
            Ok(status) => outcomes.push(match message::store_verdict(status) {
                StoreVerdict::Stored => StoreOutcome::Stored,
                StoreVerdict::Transient => StoreOutcome::Retry(format!(
                    "{} answered status 0x{status:04X} (out of resources)",
                    destination.name
                )),
                StoreVerdict::Refused => StoreOutcome::Refused(format!(
                    "{} refused the object with status 0x{status:04X}",
                    destination.name
                )),
            }),
            Err(e) => {
                let why = format!("association with {} lost: {e:#}", destination.name);
                outcomes.push(StoreOutcome::Retry(why.clone()));
                broken = Some(why);
            }
        }
    }
    if broken.is_some() {
        let _ = association.abort();
    } else {
        let _ = association.release();
    }
    outcomes
}

/// The object's data set in `syntax` (the file's own encoding when it matches).
fn encode_data_set(request: &StoreRequest, syntax: &str) -> anyhow::Result<Vec<u8>> {
    let object = dicom_object::open_file(&request.path)
        .with_context(|| format!("cannot read {}", request.path.display()))?;
    let ts = TransferSyntaxRegistry
        .get(syntax)
        .with_context(|| format!("the accepted transfer syntax {syntax} is unknown"))?;
    let mut out = Vec::new();
    object
        .write_dataset_with_ts(&mut out, ts)
        .with_context(|| format!("cannot encode {} in {syntax}", request.path.display()))?;
    Ok(out)
}

/// One C-STORE: the command, the data set, the response's status.
fn store_one<S: CloseSocket + Read + Write>(
    association: &mut ClientAssociation<S>,
    pc: u8,
    message_id: u16,
    request: &StoreRequest,
    data_set: &[u8],
) -> anyhow::Result<u16> {
    let command = message::store_request(
        message_id,
        &request.sop_class_uid,
        &request.sop_instance_uid,
    );
    association
        .send(&message::command_pdu(pc, command))
        .context("cannot send the C-STORE request")?;
    {
        let mut writer = association.send_pdata(pc);
        writer
            .write_all(data_set)
            .context("cannot send the data set")?;
        writer.finish().context("cannot send the data set")?;
    }
    let response = receive_command(association)?;
    anyhow::ensure!(
        response.field == message::C_STORE_RSP,
        "the answer is not a C-STORE response (command 0x{:04X})",
        response.field
    );
    anyhow::ensure!(
        response.message_id == message_id,
        "the response answers message {}, not {message_id}",
        response.message_id
    );
    response
        .status
        .context("the C-STORE response has no status")
}

/// Reads PDUs until a whole command set has arrived.
fn receive_command<S: CloseSocket + Read + Write>(
    association: &mut ClientAssociation<S>,
) -> anyhow::Result<message::Command> {
    let mut command = Vec::new();
    loop {
        match association.receive().context("no response")? {
            Pdu::PData { data } => {
                for v in data {
                    if v.value_type == PDataValueType::Command {
                        command.extend_from_slice(&v.data);
                        if v.is_last {
                            return message::parse_command(&command).map_err(anyhow::Error::msg);
                        }
                    }
                }
            }
            Pdu::AbortRQ { source } => {
                anyhow::bail!("the peer aborted the association ({source:?})")
            }
            other => anyhow::bail!("unexpected PDU instead of a response: {other:?}"),
        }
    }
}

/// C-ECHO `destination` as `dicom.ae_title` (over TLS when it says `tls = true`); the
/// round trip on success.
pub fn echo(local: &DicomConfig, destination: &Destination) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let address = format!("{}:{}", destination.host, destination.port);
    let options = ClientAssociationOptions::new()
        .calling_ae_title(local.ae_title.trim().to_string())
        .called_ae_title(destination.ae_title.trim().to_string())
        .with_abstract_syntax(message::VERIFICATION)
        .connection_timeout(TIMEOUT)
        .read_timeout(TIMEOUT);
    let context = || {
        format!(
            "no association with {} ({} at {address}{})",
            destination.name,
            destination.ae_title,
            if destination.tls { ", TLS" } else { "" }
        )
    };
    if destination.tls {
        let config = tls::client_config(local, destination).with_context(context)?;
        let association = options
            .tls_config(config)
            .server_name(&destination.host)
            .establish_tls(address.as_str())
            .map_err(|e| anyhow::anyhow!("{}", tls::chain(&e)))
            .with_context(context)?;
        echo_on(association)?;
    } else {
        let association = options
            .establish(address.as_str())
            .map_err(|e| anyhow::anyhow!("{}", tls::chain(&e)))
            .with_context(context)?;
        echo_on(association)?;
    }
    Ok(started.elapsed())
}

/// One C-ECHO on an established association, then its release.
fn echo_on<S: CloseSocket + Read + Write>(
    mut association: ClientAssociation<S>,
) -> anyhow::Result<()> {
    let pc = association
        .presentation_contexts()
        .iter()
        .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| pc.id)
        .context("the peer accepted no Verification presentation context")?;
    association
        .send(&message::command_pdu(pc, message::echo_request(1)))
        .context("cannot send the C-ECHO request")?;
    let response = receive_command(&mut association).context("no C-ECHO response")?;
    let _ = association.release();
    anyhow::ensure!(
        response.field == message::C_ECHO_RSP,
        "the answer is not a C-ECHO response (command 0x{:04X})",
        response.field
    );
    match response.status {
        Some(0) => Ok(()),
        Some(s) => anyhow::bail!("C-ECHO failed with status 0x{s:04X}"),
        None => anyhow::bail!("the C-ECHO response has no status"),
    }
}
