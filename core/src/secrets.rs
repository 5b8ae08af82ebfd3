//! Secrets (the email provider's API key). They are kept in the OS keyring
//! when one works (the Secret Service on a Linux desktop, the Keychain on
//! macOS, the Credential Manager on Windows) and otherwise in a file that
//! only the owner can read (`<data dir>/secrets/<name>`, mode 0600), e.g. on
//! a headless machine with no keyring service. Never in the database, never
//! in a log.
//!
//! `SHOPDESK_SECRET_STORE=file` forces the file (tests, kiosks);
//! `keyring` forces the keyring (an error when it does not work); anything
//! else (the default) stores in the keyring, or in the file (with a warning)
//! when the keyring does not work, and reads the file first, then the
//! keyring: the file is there only while it holds the newest value.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variable choosing where secrets go: `file`, `keyring` or `auto`.
pub const SECRET_STORE_ENV: &str = "SHOPDESK_SECRET_STORE";

/// The keyring service name all ShopDesk entries share.
const KEYRING_SERVICE: &str = "shopdesk";

/// A place secrets can be kept.
pub trait SecretStore {
    /// The secret, or `None` when none is stored.
    fn get(&self, name: &str) -> Result<Option<String>>;
    fn set(&self, name: &str, value: &str) -> Result<()>;
    /// Removes it (no error when there was none).
    fn delete(&self, name: &str) -> Result<()>;
}

/// Secrets as files readable only by their owner.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

impl SecretStore for FileStore {
    fn get(&self, name: &str) -> Result<Option<String>> {
        match std::fs::read_to_string(self.path(name)) {
            Ok(s) => Ok(Some(s.trim_end_matches(['\r', '\n']).to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn set(&self, name: &str, value: &str) -> Result<()> {
        create_private_dir(&self.dir)?;
        // Written to a fresh 0600 file, then renamed: the secret is never in
        // a file anyone else could read, not even for a moment.
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        {
            let mut f = create_private_file(&tmp)?;
            f.write_all(value.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.path(name))?;
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<()> {
        match std::fs::remove_file(self.path(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Secrets in the OS keyring, one entry per secret and data directory (two
/// shops on one account do not share keys).
#[derive(Debug, Clone)]
pub struct KeyringStore {
    scope: String,
}

impl KeyringStore {
    pub fn new(data_dir: &Path) -> Self {
        let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        Self {
            scope: dir.display().to_string(),
        }
    }

    fn entry(&self, name: &str) -> Result<keyring::Entry> {
        keyring::Entry::new(KEYRING_SERVICE, &format!("{name}@{}", self.scope))
            .map_err(keyring_error)
    }
}

fn keyring_error(e: keyring::Error) -> Error {
    // keyring errors name the store and the failure, never the secret.
    Error::Other(format!("OS keyring: {e}"))
}

impl SecretStore for KeyringStore {
    fn get(&self, name: &str) -> Result<Option<String>> {
        match self.entry(name)?.get_password() {
            Ok(s) => Ok(Some(s)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(keyring_error(e)),
        }
    }

    fn set(&self, name: &str, value: &str) -> Result<()> {
        self.entry(name)?.set_password(value).map_err(keyring_error)
    }

    fn delete(&self, name: &str) -> Result<()> {
        match self.entry(name)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(keyring_error(e)),
        }
    }
}

/// Which stores to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The keyring when it works, else the file.
    Auto,
    Keyring,
    File,
}

impl Mode {
    /// From [`SECRET_STORE_ENV`].
    pub fn from_env() -> Mode {
        match std::env::var(SECRET_STORE_ENV)
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "file" => Mode::File,
            "keyring" => Mode::Keyring,
            _ => Mode::Auto,
        }
    }
}

/// A data directory's secrets: the keyring first, the file as the fallback.
#[derive(Debug, Clone)]
pub struct Secrets {
    mode: Mode,
    keyring: KeyringStore,
    file: FileStore,
}

impl Secrets {
    pub fn new(data_dir: &Path, mode: Mode) -> Self {
        Self {
            mode,
            keyring: KeyringStore::new(data_dir),
            file: FileStore::new(data_dir.join("secrets")),
        }
    }

    /// Where the fallback file of `name` is.
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.file.path(name)
    }
}

impl SecretStore for Secrets {
    fn get(&self, name: &str) -> Result<Option<String>> {
        match self.mode {
            Mode::File => self.file.get(name),
            Mode::Keyring => self.keyring.get(name),
            // The file first: it exists only when the keyring could not
            // take the latest value (storing in the keyring removes it), so
            // whatever the keyring still holds is older. A key set while no
            // keyring worked must not be shadowed by the one it replaced once
            // the keyring is back.
            Mode::Auto => match self.file.get(name)? {
                Some(s) => Ok(Some(s)),
                None => self.keyring.get(name).or_else(|e| {
                    tracing::debug!(error = %e, "no working OS keyring and no secret file");
                    Ok(None)
                }),
            },
        }
    }

    fn set(&self, name: &str, value: &str) -> Result<()> {
        match self.mode {
            Mode::File => self.file.set(name, value),
            Mode::Keyring => self.keyring.set(name, value),
            Mode::Auto => match self.keyring.set(name, value) {
                Ok(()) => {
                    // Stored safely: no stale copy left in a file.
                    self.file.delete(name)?;
                    tracing::info!(secret = name, "secret stored in the OS keyring");
                    Ok(())
                }
                Err(e) => {
                    self.file.set(name, value)?;
                    tracing::warn!(
                        secret = name,
                        file = %self.file.path(name).display(),
                        reason = %e,
                        "no working OS keyring: the secret is kept in a file only its owner can read"
                    );
                    Ok(())
                }
            },
        }
    }

    fn delete(&self, name: &str) -> Result<()> {
        if self.mode != Mode::File {
            let r = self.keyring.delete(name);
            if self.mode == Mode::Keyring {
                r?;
            }
        }
        if self.mode != Mode::Keyring {
            self.file.delete(name)?;
        }
        Ok(())
    }
}

/// Shows a secret without giving it away: its first 3 characters and last
/// 4 (`re_…a1b2`), or only `…` and the last 2 when it is short.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() >= 12 {
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}…{tail}")
    } else if chars.len() >= 6 {
        let tail: String = chars[chars.len() - 2..].iter().collect();
        format!("…{tail}")
    } else {
        "…".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_fallback_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::new(dir.path(), Mode::File);
        assert_eq!(secrets.get("email_api_key").unwrap(), None);
        secrets.set("email_api_key", "re_123456789a1b2").unwrap();
        assert_eq!(
            secrets.get("email_api_key").unwrap().as_deref(),
            Some("re_123456789a1b2")
        );
        let path = secrets.file_path("email_api_key");
        assert!(path.starts_with(dir.path().join("secrets")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        secrets.set("email_api_key", "re_other_key_9999").unwrap();
        assert_eq!(
            secrets.get("email_api_key").unwrap().as_deref(),
            Some("re_other_key_9999")
        );
        secrets.delete("email_api_key").unwrap();
        assert_eq!(secrets.get("email_api_key").unwrap(), None);
        secrets.delete("email_api_key").unwrap();
    }

    #[test]
    fn masks_show_only_the_ends() {
        assert_eq!(mask("re_9f8e7d6c5b4a1b2"), "re_…a1b2");
        assert_eq!(mask("short1"), "…t1");
        assert_eq!(mask("abc"), "…");
        assert!(!mask("re_9f8e7d6c5b4a1b2").contains("9f8e7d"));
    }
}
