//! Secrets and keys `ctl` reads from outside its command line: a password from stdin, a file
//! or the environment (never only from argv, which `ps` and shell history show), and OpenSSH
//! public key files.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use super::ApiError;

/// Where `user create` and `user set` take a password from: at most one of these.
#[derive(clap::Args)]
pub(super) struct PasswordArgs {
    /// The password, in the clear on the command line (prefer the other ways).
    #[arg(long, group = "secret")]
    password: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long, group = "secret")]
    password_stdin: bool,
    /// Read the password from the first line of FILE.
    #[arg(long, value_name = "FILE", group = "secret")]
    password_file: Option<PathBuf>,
    /// Take the password from SITECAST_USER_PASSWORD.
    #[arg(long, group = "secret")]
    password_env: bool,
}

impl PasswordArgs {
    /// The password from the one source given, or None when none was.
    pub(super) fn read(self) -> Result<Option<String>, ApiError> {
        Ok(if let Some(p) = self.password {
            Some(p)
        } else if self.password_stdin {
            Some(from_stdin()?)
        } else if let Some(f) = self.password_file {
            Some(from_file(&f)?)
        } else if self.password_env {
            Some(from_env("SITECAST_USER_PASSWORD")?)
        } else {
            None
        })
    }
}

/// The first line of stdin, without its line end.
fn from_stdin() -> Result<String, ApiError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| ApiError::Invalid(format!("reading the password from stdin: {e}")))?;
    first_line(&line, "stdin")
}

/// The first line of `file`, without its line end.
fn from_file(file: &Path) -> Result<String, ApiError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        ApiError::Invalid(format!(
            "cannot read the password file {}: {e}",
            file.display()
        ))
    })?;
    first_line(&text, &file.display().to_string())
}

/// The value of the environment variable `name`.
fn from_env(name: &str) -> Result<String, ApiError> {
    let v = std::env::var(name)
        .map_err(|_| ApiError::Invalid(format!("{name} is not set (or not UTF-8)")))?;
    first_line(&v, name)
}

fn first_line(text: &str, from: &str) -> Result<String, ApiError> {
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(ApiError::Invalid(format!(
            "the password from {from} is empty"
        )));
    }
    Ok(line.to_owned())
}

/// One OpenSSH public key line from `file` (the origin parses and checks it).
pub(super) fn read_key(file: &Path) -> Result<String, ApiError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ApiError::Invalid(format!("cannot read {}: {e}", file.display())))?;
    let mut keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    match (keys.next(), keys.next()) {
        (Some(k), None) => Ok(k.to_owned()),
        (None, _) => Err(ApiError::Invalid(format!(
            "{} holds no public key",
            file.display()
        ))),
        (Some(_), Some(_)) => Err(ApiError::Invalid(format!(
            "{} holds more than one key; give one file per --ssh-key",
            file.display()
        ))),
    }
}
