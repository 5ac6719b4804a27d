//! `cairn._cairn.Sync`: a relay sync client on a tokio runtime this handle owns (one worker
//! thread). No Python event loop is involved: the client runs whether or not Python code runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use serde_json::json;

use cairn::Replica;
use cairn_sync::{ClientOptions, SyncClient};
use cairn_tools::ToolError;

use crate::errors;

/// The longest a single wait may block: an hour.
const MAX_WAIT_SECONDS: f64 = 3_600.0;

#[pyclass(frozen, name = "Sync", module = "cairn._cairn")]
pub(crate) struct PySync {
    /// The relay URLs, comma-separated, with any `?token=` hidden: what `status` reports.
    shown: String,
    runtime: tokio::runtime::Runtime,
    /// `None` once stopped. A mutex because waiting for a connection needs the client mutably;
    /// it is held only by calls on this handle, never by the client's own task.
    client: Mutex<Option<SyncClient>>,
}

fn seconds(timeout: f64) -> Result<Duration, ToolError> {
    if !(0.0..=MAX_WAIT_SECONDS).contains(&timeout) {
        return Err(ToolError::invalid(format!(
            "timeout must be between 0 and {MAX_WAIT_SECONDS} seconds, not {timeout}"
        )));
    }
    Ok(Duration::from_secs_f64(timeout))
}

impl PySync {
    /// `urls`: one relay URL, or several separated by commas: the first, failing over to the
    /// others on disconnect (as `--relay URL1,URL2`).
    pub(crate) fn start(py: Python<'_>, replica: Arc<Replica>, urls: String, token: Option<String>) -> PyResult<Self> {
        let options = ClientOptions::for_relays(&urls).token(token);
        if options.url.is_empty() {
            return Err(errors::to_py(py, ToolError::invalid("no relay URL given")));
        }
        let shown: Vec<&str> =
            std::iter::once(&options.url).chain(&options.fallbacks).map(|u| cairn_sync::redacted_url(u)).collect();
        let shown = shown.join(",");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cairn-sync")
            .enable_all()
            .build()
            .map_err(|e| errors::to_py(py, ToolError::invalid(format!("cannot start the sync runtime: {e}"))))?;
        let client = {
            let _entered = runtime.enter();
            SyncClient::spawn(replica, options)
        };
        Ok(PySync { shown, runtime, client: Mutex::new(Some(client)) })
    }

    /// Runs `f` on the client (if not stopped) with the GIL released.
    fn with_client<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&tokio::runtime::Runtime, &mut SyncClient) -> T + Send,
        stopped: T,
    ) -> T {
        py.detach(|| {
            // A panic while the lock was held leaves a client that is still usable.
            let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_mut() {
                Some(client) => f(&self.runtime, client),
                None => stopped,
            }
        })
    }
}

#[pymethods]
impl PySync {
    /// Waits up to `timeout` seconds for a connection; whether there is one.
    fn wait_connected(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = seconds(timeout).map_err(|e| errors::to_py(py, e))?;
        Ok(self.with_client(py, |rt, c| rt.block_on(c.wait_connected(timeout)), false))
    }

    /// Waits up to `timeout` seconds until both sides hold the same changes; whether they do.
    fn wait_settled(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = seconds(timeout).map_err(|e| errors::to_py(py, e))?;
        Ok(self.with_client(py, |rt, c| rt.block_on(c.wait_settled(timeout)), false))
    }

    /// The client's state as JSON text: connected, the last error, what the relay lacks.
    fn status(&self, py: Python<'_>) -> PyResult<String> {
        let value = self.with_client(
            py,
            |rt, c| {
                let pending = rt.block_on(c.pending()).ok();
                json!({
                    "url": self.shown,
                    "running": true,
                    "connected": c.is_connected(),
                    "last_error": c.last_error().map(|e| e.to_string()),
                    "pending": pending.as_ref().map(|p| p.changes),
                    "settled": pending.as_ref().map(|p| p.settled),
                    "read_only": c.is_read_only(),
                })
            },
            json!({ "url": self.shown, "running": false, "connected": false }),
        );
        Ok(value.to_string())
    }

    /// Stops the client (it pushes nothing more); calling it again does nothing.
    fn stop(&self, py: Python<'_>) {
        py.detach(|| {
            let client = self.client.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(client) = client {
                self.runtime.block_on(client.stop());
            }
        })
    }
}
