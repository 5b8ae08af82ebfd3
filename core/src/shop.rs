//! `Shop`: the one handle the desktop app and the CLI hold. It owns the
//! till's writing connection (checkout commits with `synchronous=FULL`) and
//! answers everything the UI asks.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

use crate::catalog::{self, ImportSummary, Product};
use crate::checkout::{self, OrderRequest, PlacedOrder};
use crate::db::{self, Durability};
use crate::error::{Error, Result};
use crate::jobs::{self, ShopJobs};
use crate::orders::{self, OrderSummary};
use crate::paths::DataDir;
use crate::queue::admin::{self, JobDetail, QueueState};
use crate::queue::{self, JobHandler, JobInfo, JobStats, JobStatus};
use crate::secrets::{self, SecretStore, Secrets};
use crate::settings::{self, SettingsForm, SettingsUpdate, ShopInfo};
use crate::worker::WorkerConfig;

pub struct Shop {
    data: DataDir,
    conn: Mutex<Connection>,
}

impl Shop {
    /// Opens the shop in `data_dir`, creating it and bringing the database
    /// schema up to date.
    pub fn open(data_dir: &Path) -> Result<Shop> {
        let data = DataDir::new(data_dir);
        std::fs::create_dir_all(data.root()).map_err(|e| {
            Error::invalid(
                "data_dir",
                format!(
                    "cannot use {} as the data folder: {}",
                    data.root().display(),
                    if data.root().exists() && !data.root().is_dir() {
                        "it is a file, not a folder".to_string()
                    } else {
                        e.to_string()
                    }
                ),
            )
        })?;
        let conn = db::open(&data.database(), Durability::Full)?;
        Ok(Shop {
            data,
            conn: Mutex::new(conn),
        })
    }

    pub fn data(&self) -> &DataDir {
        &self.data
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the
        // transaction rolls back when dropped), so the connection is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn info(&self) -> Result<ShopInfo> {
        let conn = self.conn();
        Ok(ShopInfo {
            shop_name: settings::get(&conn, "shop_name")?,
            currency: settings::get(&conn, "currency")?,
            data_dir: self.data.root().display().to_string(),
            outbox_dir: self.data.outbox().display().to_string(),
        })
    }

    pub fn setting(&self, key: &str) -> Result<String> {
        settings::get(&self.conn(), key)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        settings::set(&self.conn(), key, value)
    }

    /// Where this shop's secrets (the email API key) are kept.
    pub fn secrets(&self) -> Secrets {
        Secrets::new(self.data.root(), secrets::Mode::from_env())
    }

    /// One setting as `config get` shows it: the API key masked, or
    /// `(not set)`.
    pub fn config_get(&self, key: &str) -> Result<String> {
        if key == settings::EMAIL_API_KEY {
            return Ok(self
                .secrets()
                .get(key)?
                .map_or_else(|| "(not set)".to_string(), |k| secrets::mask(&k)));
        }
        self.setting(key)
    }

    /// Every setting `config get` lists, in order.
    pub fn config_list(&self) -> Result<Vec<(String, String)>> {
        settings::config_keys()
            .into_iter()
            .map(|k| Ok((k.to_string(), self.config_get(k)?)))
            .collect()
    }

    /// Sets one setting (`config set`); an empty API key removes it. The
    /// email provider must stay able to send, as on the Settings page: the
    /// HTTP provider is chosen after its key and from-address are set, and
    /// neither can then be taken away.
    pub fn config_set(&self, key: &str, value: &str) -> Result<()> {
        let secrets = self.secrets();
        let after = |k: &str| -> Result<String> {
            if k == key {
                Ok(value.trim().to_string())
            } else {
                self.setting(k)
            }
        };
        if matches!(
            key,
            "email_provider" | "shop_email" | settings::EMAIL_API_KEY
        ) {
            let has_key = if key == settings::EMAIL_API_KEY {
                !value.trim().is_empty()
            } else {
                secrets.get(settings::EMAIL_API_KEY)?.is_some()
            };
            settings::check_provider_ready(
                &after("email_provider")?,
                &after("shop_email")?,
                has_key,
            )?;
        }
        if key == settings::EMAIL_API_KEY {
            let value = value.trim();
            if value.is_empty() {
                return secrets.delete(key);
            }
            settings::check_api_key(value).map_err(|e| match e {
                Error::Invalid { message, .. } => Error::invalid("value", message),
                other => other,
            })?;
            return secrets.set(key, value);
        }
        self.set_setting(key, value)
    }

    /// The Settings page's fields.
    pub fn settings_form(&self) -> Result<SettingsForm> {
        let conn = self.conn();
        let key = self.secrets().get(settings::EMAIL_API_KEY)?;
        Ok(SettingsForm {
            shop_name: settings::get(&conn, "shop_name")?,
            shop_email: settings::get(&conn, "shop_email")?,
            email_provider: settings::get(&conn, "email_provider")?,
            email_api_url: settings::get(&conn, "email_api_url")?,
            email_api_key: key.map(|k| secrets::mask(&k)),
        })
    }

    /// Saves the Settings page: every field is checked first and nothing is
    /// saved when one is wrong (the error names that field).
    pub fn save_settings(&self, update: &SettingsUpdate) -> Result<SettingsForm> {
        let new_key = update
            .email_api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        if let Some(k) = new_key {
            settings::check_api_key(k)?;
        }
        let fields = [
            ("shop_name", update.shop_name.as_str()),
            ("shop_email", update.shop_email.as_str()),
            ("email_provider", update.email_provider.as_str()),
            ("email_api_url", update.email_api_url.as_str()),
        ];
        let secrets = self.secrets();
        settings::check_provider_ready(
            &update.email_provider,
            &update.shop_email,
            new_key.is_some() || secrets.get(settings::EMAIL_API_KEY)?.is_some(),
        )?;
        {
            let mut conn = self.conn();
            db::write(&mut conn, |tx| {
                for (key, value) in fields {
                    settings::set(tx, key, value).map_err(|e| match e {
                        Error::Invalid { message, .. } => Error::invalid(key, message),
                        other => other,
                    })?;
                }
                Ok(())
            })?;
        }
        if let Some(k) = new_key {
            secrets.set(settings::EMAIL_API_KEY, k)?;
        }
        self.settings_form()
    }

    /// Imports a Shopify product CSV given as text (the UI reads the file).
    pub fn import_products_csv_str(
        &self,
        source_name: &str,
        content: &str,
    ) -> Result<ImportSummary> {
        let mut conn = self.conn();
        db::write(&mut conn, |tx| {
            catalog::import_shopify_csv(tx, source_name, content.as_bytes())
        })
    }

    /// Imports a Shopify product CSV file.
    pub fn import_products_file(&self, path: &Path) -> Result<ImportSummary> {
        let content = std::fs::read(path)
            .map_err(|e| Error::invalid("file", format!("cannot read {}: {e}", path.display())))?;
        let content = String::from_utf8(content)
            .map_err(|_| Error::invalid("file", format!("{} is not UTF-8 text", path.display())))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.import_products_csv_str(&name, &content)
    }

    pub fn list_products(&self, query: Option<&str>, limit: usize) -> Result<Vec<Product>> {
        catalog::search(&self.conn(), query, limit)
    }

    pub fn place_order(&self, req: &OrderRequest) -> Result<PlacedOrder> {
        let started = std::time::Instant::now();
        let placed = checkout::place(&mut self.conn(), req)?;
        tracing::info!(
            receipt = %placed.receipt_number,
            duplicate = placed.duplicate,
            elapsed_us = started.elapsed().as_micros() as u64,
            "checkout"
        );
        Ok(placed)
    }

    pub fn list_orders(&self, limit: usize) -> Result<Vec<OrderSummary>> {
        orders::list(&self.conn(), limit)
    }

    pub fn order(&self, order_id: &str) -> Result<orders::OrderDetail> {
        orders::get(&self.conn(), order_id)?
            .ok_or_else(|| Error::NotFound(format!("no order with id {order_id}")))
    }

    pub fn job_stats(&self) -> Result<JobStats> {
        queue::stats(&self.conn())
    }

    /// Jobs, newest first, each with its order's receipt number.
    pub fn list_jobs(&self, status: Option<JobStatus>, limit: usize) -> Result<Vec<JobInfo>> {
        let conn = self.conn();
        let mut jobs = queue::list(&conn, status, limit)?;
        jobs::add_receipts(&conn, &mut jobs)?;
        Ok(jobs)
    }

    /// Pauses or resumes every queue (persisted across restarts).
    pub fn set_queue_paused(&self, paused: bool) -> Result<()> {
        queue::set_paused(&self.conn(), None, paused)?;
        queue::wake();
        Ok(())
    }

    /// A job with its payload, for inspection.
    pub fn job(&self, id: &str) -> Result<JobDetail> {
        let conn = self.conn();
        let mut detail = admin::get_detail(&conn, id)?;
        jobs::add_receipts(&conn, std::slice::from_mut(&mut detail.info))?;
        Ok(detail)
    }

    /// Runs a dead or retrying job again, with a fresh set of attempts.
    pub fn retry_job(&self, id: &str) -> Result<JobInfo> {
        let conn = self.conn();
        let mut job = admin::retry(&conn, id, queue::now_ms())?;
        jobs::add_receipts(&conn, std::slice::from_mut(&mut job))?;
        Ok(job)
    }

    /// Cancels a pending or retrying job (it becomes dead, "cancelled").
    pub fn cancel_job(&self, id: &str) -> Result<JobInfo> {
        let conn = self.conn();
        let mut job = admin::cancel(&conn, id, queue::now_ms())?;
        jobs::add_receipts(&conn, std::slice::from_mut(&mut job))?;
        Ok(job)
    }

    /// Pauses or resumes one queue by name (`email`, `notify`), or all
    /// (`None`). See [`admin::set_queue_paused`] for the rules.
    pub fn set_queue_paused_by_name(&self, queue: Option<&str>, paused: bool) -> Result<()> {
        admin::set_queue_paused(&self.conn(), queue, paused)
    }

    /// The known queues and whether each is paused.
    pub fn queue_states(&self) -> Result<Vec<QueueState>> {
        admin::queue_states(&self.conn())
    }

    /// Deletes dead jobs (only those dead for at least `older_than_days`,
    /// when given). Returns how many.
    pub fn purge_dead_jobs(&self, older_than_days: Option<u32>) -> Result<u64> {
        admin::purge_dead(
            &self.conn(),
            older_than_days,
            queue::now_ms().div_euclid(1000),
        )
    }

    /// A watch for commits made to this shop's database by any other
    /// connection, in this process or another (see [`db::CommitWatch`]).
    pub fn watch_commits(&self) -> Result<db::CommitWatch> {
        db::CommitWatch::open(&self.data.database())
    }

    /// The handler that runs this shop's jobs (emails, notifications).
    pub fn job_handler(&self) -> Arc<dyn JobHandler> {
        Arc::new(ShopJobs::new(self.data.clone()))
    }

    /// Worker settings for this shop's database, with defaults.
    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig::new(self.data.database())
    }
}
