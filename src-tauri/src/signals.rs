//! Requests to quit from outside: Ctrl-C (SIGINT) and, on Unix, SIGTERM
//! (what `kill`, systemd and the end of a desktop session send). Both mean
//! "stop gracefully": running jobs get their grace, claimed ones go back to
//! the queue.

/// Listens for a request to quit from the moment it is created: a signal
/// that comes before [`QuitSignals::recv`] is awaited is kept, not lost.
pub struct QuitSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl QuitSignals {
    /// Starts listening. Must be called inside the Tokio runtime. From then
    /// on these signals no longer end the process at once: whoever holds
    /// the result decides what they do.
    #[cfg(unix)]
    pub fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Starts listening (Ctrl-C only: there is no SIGTERM here).
    #[cfg(not(unix))]
    pub fn listen() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// Waits for the first request to quit; returns the signal's name.
    #[cfg(unix)]
    pub async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    /// Waits for the first request to quit; returns the signal's name.
    #[cfg(not(unix))]
    pub async fn recv(self) -> &'static str {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C; only Quit stops ShopDesk");
            std::future::pending::<()>().await;
        }
        "Ctrl-C"
    }
}
