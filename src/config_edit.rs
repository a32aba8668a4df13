//! `lungwatch config get|set`: reads and edits the config file in place, keeping its
//! comments and layout (toml_edit), and writes nothing that start-up would refuse: the
//! edited text goes through `Config::from_toml`, the same parse and validation as `serve`,
//! before it replaces the file.
//!
//! Keys are dotted paths (`web.listen`, `dicom.ae_title`). In the arrays of tables that
//! the config names by their `name` key (`[[web.users]]`, `[[destinations]]`), the segment
//! after the array is that name: `web.users.radiology.role`, `destinations.pacs.port`.

use std::io::Write;
use std::path::Path;

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value};

use crate::config::Config;

/// The arrays of tables whose elements are addressed by their `name` key.
pub const NAMED_ARRAYS: &[&str] = &["web.users", "destinations"];

/// One change: set `key` to `value`, or remove it (`None`).
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub key: String,
    pub value: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EditError {
    #[error("the config is not valid TOML: {0}")]
    Syntax(String),
    #[error("{key}: {problem}")]
    Key { key: String, problem: String },
}

fn key_error(key: &str, problem: impl Into<String>) -> EditError {
    EditError::Key {
        key: key.into(),
        problem: problem.into(),
    }
}

/// A value as the command line gives it: TOML when it reads as a TOML value (`8443`,
/// `true`, `["seg", "sr"]`, `"quoted"`), else the text itself as a string (`0.0.0.0:8443`,
/// a path, a password hash).
pub fn parse_value(text: &str) -> Value {
    let mut value = text.parse::<Value>().unwrap_or_else(|_| Value::from(text));
    // Default spacing (`key = value`), whatever surrounded the text.
    value.decor_mut().clear();
    value
}

/// Walks `segments` from `root`, creating missing tables (and named-array elements) when
/// `create` is set. Returns the table that holds the last segment; None when a part of the
/// path is missing and `create` is not set.
fn walk<'a>(
    root: &'a mut Table,
    key: &str,
    segments: &[&str],
    create: bool,
) -> Result<Option<&'a mut Table>, EditError> {
    let mut table = root;
    let mut path = String::new();
    let mut i = 0;
    while i + 1 < segments.len() {
        let segment = segments[i];
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(segment);
        let named = NAMED_ARRAYS.contains(&path.as_str());
        if !table.contains_key(segment) {
            if !create {
                return Ok(None);
            }
            let item = if named {
                Item::ArrayOfTables(ArrayOfTables::new())
            } else {
                Item::Table(Table::new())
            };
            table.insert(segment, item);
        }
        let item = table.get_mut(segment).expect("inserted above");
        table = match item {
            Item::Table(t) if !named => t,
            Item::ArrayOfTables(array) if named => {
                let name = segments[i + 1];
                i += 1;
                if i + 1 == segments.len() {
                    return Err(key_error(
                        key,
                        format!("name a key of {path}.{name}, for example {path}.{name}.role"),
                    ));
                }
                match position_by_name(array, name) {
                    Some(at) => array.get_mut(at).expect("position is in range"),
                    None if create => {
                        let mut element = Table::new();
                        element.insert("name", Item::Value(Value::from(name)));
                        array.push(element);
                        array.get_mut(array.len() - 1).expect("just pushed")
                    }
                    None => return Ok(None),
                }
            }
            _ => {
                return Err(key_error(
                    key,
                    format!(
                        "{path} is not {} in this file: edit it by hand",
                        if named {
                            "an array of [[tables]]"
                        } else {
                            "a [table]"
                        }
                    ),
                ));
            }
        };
        i += 1;
    }
    Ok(Some(table))
}

fn position_by_name(array: &ArrayOfTables, name: &str) -> Option<usize> {
    array
        .iter()
        .position(|t| t.get("name").and_then(Item::as_str) == Some(name))
}

/// The segments of a dotted key, in TOML's own syntax: a segment with a dot in it is
/// quoted, as in `web.users."dr.smith".role`.
fn split(key: &str) -> Result<Vec<String>, EditError> {
    let keys = toml_edit::Key::parse(key)
        .map_err(|_| key_error(key, "a key is dotted names, like web.listen"))?;
    Ok(keys.iter().map(|k| k.get().to_string()).collect())
}

/// Applies `edits` to the TOML `text` in order, keeping comments and layout.
pub fn apply(text: &str, edits: &[Edit]) -> Result<String, EditError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| EditError::Syntax(e.to_string()))?;
    for edit in edits {
        let owned = split(&edit.key)?;
        let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
        let (last, parents) = segments.split_last().expect("a key has a segment");
        match &edit.value {
            Some(text) => {
                let table = walk(doc.as_table_mut(), &edit.key, &segments, true)?
                    .expect("walk creates what is missing");
                if table.get(last).is_some_and(|i| !i.is_value()) {
                    return Err(key_error(&edit.key, "is a table, not a value"));
                }
                let mut value = parse_value(text);
                match table.get_mut(last) {
                    // In place, so that the key keeps the comment above it and the value
                    // its trailing one.
                    Some(old) => {
                        if let Some(old) = old.as_value() {
                            *value.decor_mut() = old.decor().clone();
                        }
                        *old = Item::Value(value);
                    }
                    None => {
                        table.insert(last, Item::Value(value));
                    }
                }
            }
            None => {
                // An element of a named array goes as a whole: `web.users.radiology`.
                let parent = parents.join(".");
                if NAMED_ARRAYS.contains(&parent.as_str()) {
                    remove_named(doc.as_table_mut(), &edit.key, parents, last)?;
                } else if let Some(table) = walk(doc.as_table_mut(), &edit.key, &segments, false)? {
                    table.remove(last);
                }
            }
        }
    }
    Ok(doc.to_string())
}

fn remove_named(
    root: &mut Table,
    key: &str,
    array_path: &[&str],
    name: &str,
) -> Result<(), EditError> {
    let array_key = array_path.last().expect("a named array has a path");
    // `walk` stops at the table that holds the path's last segment: the array's parent.
    let Some(parent) = walk(root, key, array_path, false)? else {
        return Ok(());
    };
    if let Some(Item::ArrayOfTables(array)) = parent.get_mut(array_key)
        && let Some(at) = position_by_name(array, name)
    {
        array.remove(at);
    }
    Ok(())
}

/// The value of `key` as written in `text` (not the built-in default): a string as its
/// text, any other value as TOML; for a named array, its elements' names, one per line.
/// None when the file does not set it.
pub fn get(text: &str, key: &str) -> Result<Option<String>, EditError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| EditError::Syntax(e.to_string()))?;
    let owned = split(key)?;
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    let last = *segments.last().expect("a key has a segment");
    let Some(table) = walk(doc.as_table_mut(), key, &segments, false)? else {
        return Ok(None);
    };
    Ok(match table.get(last) {
        None => None,
        Some(Item::Value(Value::String(s))) => Some(s.value().clone()),
        Some(Item::Value(v)) => Some(v.clone().decorated("", "").to_string()),
        Some(Item::ArrayOfTables(array)) if NAMED_ARRAYS.contains(&key) => Some(
            array
                .iter()
                .filter_map(|t| t.get("name").and_then(Item::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Some(_) => return Err(key_error(key, "is a table: name one of its keys")),
    })
}

/// Edits the config file at `path`: applies `edits`, checks the result as `serve` would
/// at start-up, and only then replaces the file (same owner and mode, written to a
/// temporary file in the same folder, synced, renamed over it).
pub fn edit_file(path: &Path, edits: &[Edit]) -> anyhow::Result<()> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let edited = apply(&text, edits)?;
    Config::from_toml(&edited, path)
        .context("not written: the edited config would not start lungwatch")?;
    replace_file(path, edited.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".lungwatch-new");
    let tmp = std::path::PathBuf::from(tmp);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        // Mode and owner first: the config may hold password hashes (0640 root:lungwatch).
        file.set_permissions(meta.permissions())?;
        if let Err(e) = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid())) {
            // Only root may give a file away; anyone else keeps their own ownership.
            if e.kind() != std::io::ErrorKind::PermissionDenied {
                return Err(e);
            }
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str) -> Edit {
        Edit {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    fn unset(key: &str) -> Edit {
        Edit {
            key: key.into(),
            value: None,
        }
    }

    const SITE: &str = r#"# Site config of the radiology department.

[paths]
# The PACS export share.
incoming = "/mnt/pacs"   # mounted by fstab

[web]
listen = "127.0.0.1:8080"

[[web.users]]
name = "radiology"
password_hash = "old"
role = "viewer"

[[web.users]]
name = "it"
password_hash = "x"
"#;

    #[test]
    fn set_keeps_comments_and_the_other_keys() {
        let out = apply(SITE, &[set("paths.incoming", "/srv/pacs")]).unwrap();
        assert!(out.contains("# Site config of the radiology department."));
        assert!(
            out.contains("# The PACS export share.\nincoming = \"/srv/pacs\"   # mounted by fstab"),
            "{out}"
        );
        assert!(out.contains("listen = \"127.0.0.1:8080\""));
        assert_eq!(
            get(&out, "paths.incoming").unwrap().as_deref(),
            Some("/srv/pacs")
        );
    }

    #[test]
    fn values_are_toml_when_they_read_as_toml_else_strings() {
        let out = apply(
            "",
            &[
                set("dicom.port", "11112"),
                set("outbox.retry_min_secs", "10"),
                set("web.listen", "0.0.0.0:8443"),
                set(
                    "web.users.r.password_hash",
                    "$argon2id$v=19$m=19456,t=2,p=1$abc$def",
                ),
                set("dicom.ae_title", "\"LUNGWATCH\""),
                set("x.list", "[\"seg\", \"sr\"]"),
            ],
        )
        .unwrap();
        assert!(out.contains("port = 11112\n"), "{out}");
        assert!(out.contains("listen = \"0.0.0.0:8443\"\n"), "{out}");
        assert!(
            out.contains("password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$abc$def\"\n"),
            "{out}"
        );
        assert!(out.contains("ae_title = \"LUNGWATCH\"\n"), "{out}");
        assert!(out.contains("list = [\"seg\", \"sr\"]\n"), "{out}");
        assert_eq!(get(&out, "dicom.port").unwrap().as_deref(), Some("11112"));
    }

    #[test]
    fn named_arrays_are_addressed_by_name() {
        let out = apply(
            SITE,
            &[
                set("web.users.radiology.role", "admin"),
                set("web.users.radiology.password_hash", "new"),
                set("web.users.reader.password_hash", "h"),
                unset("web.users.it"),
                set("web.users.\"dr.smith\".role", "viewer"),
            ],
        )
        .unwrap();
        assert_eq!(
            get(&out, "web.users").unwrap().as_deref(),
            Some("radiology\nreader\ndr.smith")
        );
        assert_eq!(
            get(&out, "web.users.\"dr.smith\".role").unwrap().as_deref(),
            Some("viewer")
        );
        assert_eq!(
            get(&out, "web.users.radiology.role").unwrap().as_deref(),
            Some("admin")
        );
        assert_eq!(
            get(&out, "web.users.radiology.password_hash")
                .unwrap()
                .as_deref(),
            Some("new")
        );
        assert_eq!(
            get(&out, "web.users.reader.name").unwrap().as_deref(),
            Some("reader")
        );
        assert_eq!(get(&out, "web.users.it.password_hash").unwrap(), None);
        // The untouched element keeps its place and form.
        assert!(
            out.contains(
                "[[web.users]]\nname = \"radiology\"\npassword_hash = \"new\"\nrole = \"admin\"\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn unset_removes_a_key_and_ignores_what_is_not_there() {
        let out = apply(
            SITE,
            &[
                unset("web.listen"),
                unset("web.basic_user"),
                unset("nothing.here"),
            ],
        )
        .unwrap();
        assert_eq!(get(&out, "web.listen").unwrap(), None);
        assert!(out.contains("[web]"));
    }

    #[test]
    fn bad_keys_and_bad_files_are_clear_errors() {
        for (edits, want) in [
            (vec![set("web", "x")], "is a table"),
            (vec![set("paths.incoming.deeper", "x")], "is not a [table]"),
            (vec![set("web..listen", "x")], "dotted names"),
            (
                vec![set("web.users.radiology", "x")],
                "name a key of web.users.radiology",
            ),
        ] {
            let e = apply(SITE, &edits).unwrap_err().to_string();
            assert!(e.contains(want), "{edits:?}: {e}");
        }
        assert!(matches!(apply("[web", &[]), Err(EditError::Syntax(_))));
        assert!(
            get(SITE, "web")
                .unwrap_err()
                .to_string()
                .contains("is a table")
        );
        assert_eq!(get(SITE, "dicom.port").unwrap(), None);
    }

    #[test]
    fn a_file_edit_that_start_up_would_refuse_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lungwatch.toml");
        // `lungwatch passwd` of "secret-password": start-up accepts only Argon2id hashes.
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$6TpTALIXJ5H/z619YCMEGQ$9nZ2mrqNZEpUmwEAOFiXDgN0Ppmk978jCa4sZnzt/ao";
        let site = SITE
            .replace("\"old\"", &format!("{hash:?}"))
            .replace("\"x\"", &format!("{hash:?}"));
        std::fs::write(&path, &site).unwrap();
        // Without TLS, the page may not listen beyond loopback: refused, file untouched.
        let e = edit_file(&path, &[set("web.listen", "0.0.0.0:8443")]).unwrap_err();
        assert!(format!("{e:#}").contains("not written"), "{e:#}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), site);
        edit_file(&path, &[set("paths.incoming", "/srv/pacs")]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            get(&text, "paths.incoming").unwrap().as_deref(),
            Some("/srv/pacs")
        );
        assert!(!dir.path().join("lungwatch.toml.lungwatch-new").exists());
    }
}
