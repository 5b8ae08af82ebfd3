//! ShopDesk's core: the shop's domain, its store, checkout, catalog import,
//! the job queue and the jobs it runs (email, notifications).
//!
//! Nothing here knows about Tauri or GTK; the desktop app and the CLI are thin
//! adapters over [`Shop`] and [`worker`].

pub mod catalog;
pub mod checkout;
pub mod db;
pub mod email_api;
pub mod error;
pub mod jobs;
pub mod mail;
pub mod money;
pub mod notify;
pub mod orders;
pub mod paths;
pub mod queue;
pub mod secrets;
pub mod settings;
pub mod shop;
pub mod text;
pub mod worker;

pub use error::{Error, Result};
pub use shop::Shop;
