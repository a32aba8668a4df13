//! `lungwatch passwd`: reads a password (from the terminal without echo, or from stdin when
//! it is not a terminal, for scripts such as the image's first boot) and makes the
//! `password_hash = "…"` line of a `[[web.users]]` entry.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;

/// Reads one line from the terminal with echo switched off, restoring the terminal after.
fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal settings")?;
    let mut silent = saved.clone();
    silent.local_modes.remove(LocalModes::ECHO);
    silent.local_modes.insert(LocalModes::ECHONL);
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    tcsetattr(&stdin, OptionalActions::Flush, &silent).context("cannot switch echo off")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    tcsetattr(&stdin, OptionalActions::Flush, &saved).context("cannot restore the terminal")?;
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The password to hash: asked twice on a terminal, else the first line of stdin.
pub fn read_password() -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = read_hidden("Password: ")?;
        let again = read_hidden("Repeat it: ")?;
        if first != again {
            anyhow::bail!("the passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.chars().count() < 8 {
        anyhow::bail!("the password must be at least 8 characters");
    }
    Ok(password)
}

/// The line to paste into a `[[web.users]]` table.
pub fn hash_line(password: &str) -> anyhow::Result<String> {
    // A PHC string has no quotes or backslashes, so it needs no TOML escaping.
    Ok(format!(
        "password_hash = \"{}\"",
        crate::web::hash_password(password)?
    ))
}
