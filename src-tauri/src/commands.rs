//! The commands the UI invokes. Each is a few lines: parse, run the core call
//! off the UI thread, and turn a core error into the `{code, message, field}`
//! the UI shows.

use std::sync::Arc;

use shopdesk_core::catalog::{ImportSummary, Product};
use shopdesk_core::checkout::{OrderRequest, PlacedOrder};
use shopdesk_core::error::PublicError;
use shopdesk_core::orders::OrderSummary;
use shopdesk_core::queue::admin::{JobDetail, QueueState};
use shopdesk_core::queue::{JobInfo, JobStats, JobStatus};
use shopdesk_core::settings::{SettingsForm, SettingsUpdate, ShopInfo};
use shopdesk_core::Shop;
use tauri::{AppHandle, Emitter, State};

use crate::app::{AppState, ORDERS_CHANGED};

/// Most rows any list command returns at once.
const MAX_LIMIT: usize = 1000;

type CmdResult<T> = Result<T, PublicError>;

/// The error the UI sees. Input errors pass through as the core words them;
/// storage, I/O and internal failures are logged in full and shown in plain
/// words, so paths and SQL never reach the screen.
pub fn public_error(e: &shopdesk_core::Error) -> PublicError {
    let mut public = e.to_public();
    let plain = match public.code.as_str() {
        "storage" => Some("The shop's database could not be read or written. Details are in the log."),
        "io" => Some("A file in the shop's data folder could not be read or written. Details are in the log."),
        "internal" => Some("Something went wrong. Details are in the log."),
        "busy" => Some("The shop's database is busy. Please try again."),
        _ => None,
    };
    if let Some(plain) = plain {
        tracing::error!(code = %public.code, error = %e, "command failed");
        public.message = plain.to_string();
    }
    public
}

fn internal(message: impl std::fmt::Display) -> PublicError {
    tracing::error!(error = %message, "command failed");
    PublicError {
        code: "internal".into(),
        message: "Something went wrong. Details are in the log.".into(),
        field: None,
    }
}

/// Runs a core call on the blocking pool: SQLite must not stall the UI thread
/// nor the async workers.
async fn blocking<T, F>(shop: &Arc<Shop>, f: F) -> CmdResult<T>
where
    T: Send + 'static,
    F: FnOnce(&Shop) -> shopdesk_core::Result<T> + Send + 'static,
{
    let shop = Arc::clone(shop);
    tauri::async_runtime::spawn_blocking(move || f(&shop))
        .await
        .map_err(internal)?
        .map_err(|e| public_error(&e))
}

fn clamp_limit(limit: Option<usize>, default: usize) -> usize {
    limit.unwrap_or(default).clamp(1, MAX_LIMIT)
}

/// Accepts the stored spelling (`Failed`) and the friendly one (`retrying`).
fn parse_status(status: Option<&str>) -> CmdResult<Option<JobStatus>> {
    match status.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => JobStatus::parse(s).map(Some).ok_or_else(|| PublicError {
            code: "invalid_input".into(),
            message: format!("Unknown job status \"{s}\" (pending, running, failed, done, dead)."),
            field: Some("status".into()),
        }),
    }
}

fn emit_orders_changed(app: &AppHandle) {
    if let Err(e) = app.emit(ORDERS_CHANGED, ()) {
        tracing::warn!(error = %e, "could not emit {ORDERS_CHANGED}");
    }
}

#[tauri::command]
pub async fn shop_info(state: State<'_, AppState>) -> CmdResult<ShopInfo> {
    blocking(&state.shop, |shop| shop.info()).await
}

/// The Settings page's fields (the API key only masked).
#[tauri::command]
pub async fn get_settings(state: State<'_, AppState>) -> CmdResult<SettingsForm> {
    blocking(&state.shop, |shop| shop.settings_form()).await
}

/// Saves the Settings page; a blank API key keeps the stored one.
#[tauri::command]
pub async fn save_settings(
    state: State<'_, AppState>,
    settings: SettingsUpdate,
) -> CmdResult<SettingsForm> {
    blocking(&state.shop, move |shop| shop.save_settings(&settings)).await
}

#[tauri::command]
pub async fn list_products(
    state: State<'_, AppState>,
    query: Option<String>,
    limit: Option<usize>,
) -> CmdResult<Vec<Product>> {
    let query = query
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty());
    let limit = clamp_limit(limit, 200);
    blocking(&state.shop, move |shop| {
        shop.list_products(query.as_deref(), limit)
    })
    .await
}

#[tauri::command]
pub async fn import_products_csv(
    app: AppHandle,
    state: State<'_, AppState>,
    name: String,
    content: String,
) -> CmdResult<ImportSummary> {
    let summary = blocking(&state.shop, move |shop| {
        shop.import_products_csv_str(&name, &content)
    })
    .await?;
    tracing::info!(
        source = %summary.source,
        imported = summary.imported,
        updated = summary.updated,
        skipped = summary.skipped.len(),
        "catalog imported"
    );
    emit_orders_changed(&app);
    Ok(summary)
}

#[tauri::command]
pub async fn place_order(
    app: AppHandle,
    state: State<'_, AppState>,
    request: OrderRequest,
) -> CmdResult<PlacedOrder> {
    let placed = blocking(&state.shop, move |shop| shop.place_order(&request)).await?;
    emit_orders_changed(&app);
    // The order queued its confirmation email: refresh counts now rather
    // than when the worker first touches the job.
    state.jobs_changed.notify_one();
    Ok(placed)
}

#[tauri::command]
pub async fn list_orders(
    state: State<'_, AppState>,
    limit: Option<usize>,
) -> CmdResult<Vec<OrderSummary>> {
    let limit = clamp_limit(limit, 100);
    blocking(&state.shop, move |shop| shop.list_orders(limit)).await
}

#[tauri::command]
pub async fn job_stats(state: State<'_, AppState>) -> CmdResult<JobStats> {
    blocking(&state.shop, |shop| shop.job_stats()).await
}

#[tauri::command]
pub async fn list_jobs(
    state: State<'_, AppState>,
    status: Option<String>,
    limit: Option<usize>,
) -> CmdResult<Vec<JobInfo>> {
    let status = parse_status(status.as_deref())?;
    let limit = clamp_limit(limit, 100);
    blocking(&state.shop, move |shop| shop.list_jobs(status, limit)).await
}

#[tauri::command]
pub async fn set_queue_paused(state: State<'_, AppState>, paused: bool) -> CmdResult<()> {
    blocking(&state.shop, move |shop| shop.set_queue_paused(paused)).await?;
    tracing::info!(paused, "queue paused state changed");
    state.jobs_changed.notify_one();
    Ok(())
}

/// One job with its payload, for the Jobs page's detail row.
#[tauri::command]
pub async fn get_job(state: State<'_, AppState>, id: String) -> CmdResult<JobDetail> {
    blocking(&state.shop, move |shop| shop.job(&id)).await
}

/// Runs a dead or retrying job again now; its order's email reads queued.
#[tauri::command]
pub async fn retry_job(
    app: AppHandle,
    state: State<'_, AppState>,
    id: String,
) -> CmdResult<JobInfo> {
    let job = blocking(&state.shop, move |shop| shop.retry_job(&id)).await?;
    tracing::info!(job = %job.id, job_type = %job.job_type, "job retried by the owner");
    state.jobs_changed.notify_one();
    emit_orders_changed(&app);
    Ok(job)
}

/// Cancels a pending or retrying job; its order's email reads failed.
#[tauri::command]
pub async fn cancel_job(
    app: AppHandle,
    state: State<'_, AppState>,
    id: String,
) -> CmdResult<JobInfo> {
    let job = blocking(&state.shop, move |shop| shop.cancel_job(&id)).await?;
    tracing::info!(job = %job.id, job_type = %job.job_type, "job cancelled by the owner");
    state.jobs_changed.notify_one();
    emit_orders_changed(&app);
    Ok(job)
}

/// The known queues and whether each is paused.
#[tauri::command]
pub async fn queue_states(state: State<'_, AppState>) -> CmdResult<Vec<QueueState>> {
    blocking(&state.shop, |shop| shop.queue_states()).await
}

/// Pauses or resumes one queue by name, or all when `queue` is null.
/// Returns every queue's state afterwards.
#[tauri::command]
pub async fn set_queue_paused_by_name(
    state: State<'_, AppState>,
    queue: Option<String>,
    paused: bool,
) -> CmdResult<Vec<QueueState>> {
    let states = blocking(&state.shop, move |shop| {
        shop.set_queue_paused_by_name(queue.as_deref(), paused)?;
        shop.queue_states()
    })
    .await?;
    tracing::info!(paused, ?states, "queue paused state changed");
    state.jobs_changed.notify_one();
    Ok(states)
}

/// Deletes dead jobs (those dead for `older_than_days` or more, when
/// given). Returns how many went.
#[tauri::command]
pub async fn purge_dead_jobs(
    app: AppHandle,
    state: State<'_, AppState>,
    older_than_days: Option<u32>,
) -> CmdResult<u64> {
    let deleted = blocking(&state.shop, move |shop| {
        shop.purge_dead_jobs(older_than_days)
    })
    .await?;
    tracing::info!(deleted, "dead jobs deleted by the owner");
    state.jobs_changed.notify_one();
    emit_orders_changed(&app);
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shopdesk_core::Error;

    fn json_of(e: &Error) -> serde_json::Value {
        serde_json::to_value(public_error(e)).unwrap()
    }

    #[test]
    fn input_errors_reach_the_ui_with_their_field() {
        let e = Error::invalid("lines[1].quantity", "Quantity must be at least 1.");
        assert_eq!(
            json_of(&e),
            json!({
                "code": "invalid_input",
                "message": "Quantity must be at least 1.",
                "field": "lines[1].quantity"
            })
        );
    }

    #[test]
    fn out_of_stock_names_the_line() {
        let e = Error::OutOfStock {
            field: "lines[0].quantity".into(),
            message: "Only 2 left of Mug.".into(),
        };
        assert_eq!(
            json_of(&e),
            json!({"code": "out_of_stock", "message": "Only 2 left of Mug.", "field": "lines[0].quantity"})
        );
    }

    #[test]
    fn errors_without_a_field_have_no_field_key() {
        let e = Error::Conflict("That order key was already used for another order.".into());
        assert_eq!(
            json_of(&e),
            json!({"code": "conflict", "message": "That order key was already used for another order."})
        );
    }

    #[test]
    fn internal_details_never_reach_the_ui() {
        let io = Error::Io(std::io::Error::other(
            "/home/owner/shop/outbox: permission denied",
        ));
        let v = json_of(&io);
        assert_eq!(v["code"], "io");
        assert!(!v["message"].as_str().unwrap().contains("/home"), "{v}");
        assert!(v.get("field").is_none());

        let other = Error::Other("SELECT * FROM orders failed".into());
        let v = json_of(&other);
        assert_eq!(v["code"], "internal");
        assert!(!v["message"].as_str().unwrap().contains("SELECT"), "{v}");
    }

    #[test]
    fn job_status_filter_accepts_both_spellings() {
        assert_eq!(parse_status(None).unwrap(), None);
        assert_eq!(parse_status(Some("")).unwrap(), None);
        assert_eq!(
            parse_status(Some("Failed")).unwrap(),
            Some(JobStatus::Failed)
        );
        assert_eq!(parse_status(Some("dead")).unwrap(), Some(JobStatus::Killed));
        let err = parse_status(Some("sleeping")).unwrap_err();
        assert_eq!(err.code, "invalid_input");
        assert_eq!(err.field.as_deref(), Some("status"));
    }

    #[test]
    fn limits_stay_in_range() {
        assert_eq!(clamp_limit(None, 100), 100);
        assert_eq!(clamp_limit(Some(0), 100), 1);
        assert_eq!(clamp_limit(Some(1_000_000), 100), MAX_LIMIT);
    }
}
