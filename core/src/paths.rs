//! Where ShopDesk keeps its data.

use std::path::{Path, PathBuf};

/// Environment variable that overrides the data directory.
pub const DATA_DIR_ENV: &str = "SHOPDESK_DATA_DIR";

/// The data directory: `explicit` (from `--data-dir`), else `$SHOPDESK_DATA_DIR`,
/// else the OS app-data directory (`~/.local/share/shopdesk` on Linux).
pub fn data_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    directories::ProjectDirs::from("app", "ShopDesk", "shopdesk")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("shopdesk-data"))
}

/// Files inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("shopdesk.db")
    }
    /// Confirmation emails land here as `.eml` files when no provider is set.
    pub fn outbox(&self) -> PathBuf {
        self.root.join("outbox")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
}
