//! `/artifacts/{result_id}/{file}`: a result's previews and mask. Only the file names the
//! report defines are served, only from the folder the result row names, and only when
//! that folder resolves inside `paths.data`: no request can reach any other file.

use std::path::{Component, Path};

use super::server::Reply;
use crate::db::{ReadQueries, Reader};
use crate::report::{CORONAL_PREVIEW, LABELS_FILE, axial_preview_name};

/// At most this many axial previews are looked for.
const MAX_AXIAL: usize = 64;

/// Whether `file` is one of the artifact names of `crate::report`.
pub fn allowed_name(file: &str) -> bool {
    if file == LABELS_FILE || file == CORONAL_PREVIEW {
        return true;
    }
    file.strip_prefix("axial-")
        .and_then(|r| r.strip_suffix(".png"))
        .and_then(|k| k.parse::<usize>().ok())
        .is_some_and(|k| k < MAX_AXIAL && axial_preview_name(k) == file)
}

/// The artifact files present in a result folder: coronal, axial-0.. in order, labels.
pub fn present(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if dir.join(CORONAL_PREVIEW).is_file() {
        out.push(CORONAL_PREVIEW.to_string());
    }
    for k in 0..MAX_AXIAL {
        let name = axial_preview_name(k);
        if !dir.join(&name).is_file() {
            break;
        }
        out.push(name);
    }
    if dir.join(LABELS_FILE).is_file() {
        out.push(LABELS_FILE.to_string());
    }
    out
}

/// A relative path made only of plain names (no `..`, no root, no prefix).
fn is_plain_relative(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

pub fn serve(db: &Reader, data_dir: &Path, result_id: &str, file: &str) -> Reply {
    if !allowed_name(file) {
        return Reply::not_found("no such artifact");
    }
    let Ok(id) = result_id.parse::<i64>() else {
        return Reply::not_found("no such result");
    };
    let dir = match db.result_artifacts_dir(id) {
        Ok(Some(d)) => d,
        Ok(None) => return Reply::not_found("no such result"),
        Err(e) => return Reply::server_error(&e.to_string()),
    };
    if !is_plain_relative(Path::new(&dir)) {
        log::warn!("result {id} has an artifact folder outside the data folder: {dir:?}");
        return Reply::forbidden();
    }
    let path = data_dir.join(&dir).join(file);
    // Symbolic links must not lead out of the data folder either.
    let (Ok(real), Ok(root)) = (path.canonicalize(), data_dir.canonicalize()) else {
        return Reply::not_found("artifact not stored");
    };
    if !real.starts_with(&root) {
        return Reply::forbidden();
    }
    match std::fs::read(&real) {
        Ok(bytes) => {
            let content_type = if file.ends_with(".png") {
                "image/png"
            } else {
                "application/gzip"
            };
            let mut r = Reply::bytes(200, content_type, bytes);
            if file == LABELS_FILE {
                r.headers.push((
                    "Content-Disposition".into(),
                    format!("attachment; filename=\"result-{id}-{LABELS_FILE}\""),
                ));
            }
            r.headers
                .push(("Cache-Control".into(), "private, max-age=3600".into()));
            r
        }
        Err(_) => Reply::not_found("artifact not stored"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_report_names_are_allowed() {
        for ok in [
            "labels.nii.gz",
            "coronal.png",
            "axial-0.png",
            "axial-12.png",
        ] {
            assert!(allowed_name(ok), "{ok}");
        }
        for bad in [
            "../labels.nii.gz",
            "axial-01.png",
            "axial--1.png",
            "axial-1.png/..",
            "axial-999.png",
            "report.json",
            "",
            "/etc/passwd",
        ] {
            assert!(!allowed_name(bad), "{bad}");
        }
        assert!(is_plain_relative(Path::new("results/1.2/7")));
        assert!(!is_plain_relative(Path::new("../x")));
        assert!(!is_plain_relative(Path::new("/etc")));
        assert!(!is_plain_relative(Path::new("a/../../b")));
    }
}
