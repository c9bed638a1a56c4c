//! Secrets of the configuration (the passwords courier logs in to Kafka and
//! Cassandra with) and the files that hold them. A password comes from the config
//! file, a `COURIER_*` variable or a file of its own, so it need not sit in a file
//! that everyone reads; once read it is a [`Secret`], which never prints.

use std::fmt;
use std::path::{Path, PathBuf};

/// A value that `Debug` and `Display` print as `********`, so neither a log line nor
/// an error message carrying settings shows it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// `path` with a leading `~/` replaced by the home directory (`$HOME`), so one
/// config file can name files under every user's home (compose/local/courier.toml
/// names the local servers' CA and password files so). Anything else unchanged.
pub fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => Path::new(&home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// Refuses a section (`kafka`, `cassandra`) that sets both `password` and
/// `password_file`: which one is meant would be a guess.
pub fn at_most_one(section: &str, inline: bool, file: bool) -> Result<(), String> {
    if inline && file {
        return Err(format!(
            "{section}.password and {section}.password_file are both set; set one (an empty \
             COURIER_{}__PASSWORD_FILE unsets the file)",
            section.to_ascii_uppercase()
        ));
    }
    Ok(())
}

/// The password of a section from its `password` or its `password_file` (at most
/// one of them set; `section` names them in errors, e.g. `kafka`). A file holds the
/// password alone; one trailing newline is not part of it.
pub fn password(
    section: &str,
    inline: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Secret>, String> {
    at_most_one(section, inline.is_some(), file.is_some())?;
    match (inline, file) {
        (Some(_), Some(_)) => unreachable!("refused above"),
        (Some(p), None) => Ok(Some(Secret::new(p))),
        (None, Some(path)) => {
            let path = expand_home(path);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{section}.password_file {}: {e}", path.display()))?;
            let value = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            if value.is_empty() {
                return Err(format!(
                    "{section}.password_file {}: the file is empty",
                    path.display()
                ));
            }
            Ok(Some(Secret::new(value)))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "******** ********");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_password_comes_from_the_config_or_a_file_not_both() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(password("kafka", None, None).unwrap(), None);
        assert_eq!(
            password("kafka", Some("x"), None).unwrap(),
            Some(Secret::new("x"))
        );
        assert_eq!(
            password("kafka", None, Some(&f)).unwrap(),
            Some(Secret::new("s3cret"))
        );
        let e = password("kafka", Some("x"), Some(&f)).unwrap_err();
        assert!(e.contains("kafka.password and kafka.password_file"), "{e}");
        let e = password("cassandra", None, Some(&dir.path().join("none"))).unwrap_err();
        assert!(e.starts_with("cassandra.password_file"), "{e}");
        std::fs::write(&f, "\n").unwrap();
        let e = password("kafka", None, Some(&f)).unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn a_leading_tilde_is_the_home_directory() {
        let home = std::env::var("HOME").unwrap();
        assert_eq!(
            expand_home(Path::new("~/.cache/x")),
            Path::new(&home).join(".cache/x")
        );
        assert_eq!(expand_home(Path::new("/etc/x")), Path::new("/etc/x"));
        assert_eq!(expand_home(Path::new("a/~/b")), Path::new("a/~/b"));
    }
}
