//! `cairn._cairn.Replica`: one replica shared by every thread and task of a process.
//!
//! Every method that touches the file releases the GIL for the whole of its work
//! (`Python::detach`), so threads run their calls in parallel and an event loop's executor
//! threads never wait on each other's Python. Arguments and answers cross as JSON text: the
//! reference server's shapes, which `cairn_tools` checks and builds exactly as `cairn mcp` does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use serde_json::{Value, json};

use cairn::{Durability, OpenOptions, Replica, Version};
use cairn_tools::{ToolError, reply, text};

use crate::errors;
use crate::sync::PySync;

/// The longest `wait_for_change` may block: a day. Longer waits are a loop of shorter ones.
const MAX_WAIT_SECONDS: f64 = 86_400.0;

#[pyclass(frozen, name = "Replica", module = "cairn._cairn")]
pub(crate) struct PyReplica {
    replica: Arc<Replica>,
}

fn invalid(e: impl std::fmt::Display) -> ToolError {
    ToolError::invalid(e.to_string())
}

#[pymethods]
impl PyReplica {
    /// Opens (or creates) the replica in the SQLite file at `path`, writing as `agent`.
    #[new]
    #[pyo3(signature = (path, agent, graph = None, durability = None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        agent: &str,
        graph: Option<&str>,
        durability: Option<&str>,
    ) -> PyResult<Self> {
        let options = (|| {
            let mut options = OpenOptions::new(agent.parse().map_err(invalid)?);
            if let Some(graph) = graph {
                options = options.graph(graph.parse().map_err(invalid)?);
            }
            let durability = match durability.map(str::trim) {
                None | Some("full") => Durability::Full,
                Some("normal") => Durability::Normal,
                Some(other) => {
                    return Err(invalid(format!("unknown durability {other:?}: give \"full\" or \"normal\"")));
                }
            };
            Ok(options.durability(durability))
        })()
        .map_err(|e| errors::to_py(py, e))?;
        let replica = py.detach(|| Replica::open_with(path, options)).map_err(|e| errors::core(py, e))?;
        Ok(PyReplica { replica: Arc::new(replica) })
    }

    /// Runs the tool `tool` (a name `cairn mcp` lists) with its arguments as JSON text; answers
    /// JSON text: `{"value", "texts", "seen", "written"}` (see `cairn_tools::Reply`).
    fn call(&self, py: Python<'_>, tool: &str, args: &str) -> PyResult<String> {
        let answer = py.detach(|| {
            let args = match serde_json::from_str::<Value>(args).map_err(invalid)? {
                Value::Object(map) => map,
                other => return Err(invalid(format!("arguments must be an object, not {other}"))),
            };
            let reply = cairn_tools::call(&self.replica, tool, args)?;
            Ok(json!({
                "value": reply.structured,
                "texts": reply.texts,
                "seen": reply.seen,
                "written": reply.written,
            })
            .to_string())
        });
        answer.map_err(|e| errors::to_py(py, e))
    }

    /// The replica's status as JSON text: `memory_status`' answer without the sync fields (a
    /// `Sync` handle reports those).
    fn status(&self, py: Python<'_>) -> PyResult<String> {
        let status = py.detach(|| self.replica.status()).map_err(|e| errors::core(py, e))?;
        let notice = reply::notice(&status.freshness, &status.peers, &status.unseen, status.read_only);
        Ok(json!({
            "version": status.version,
            "freshness": status.freshness,
            "summary": text::freshness(&status.freshness),
            "unseen": status.unseen,
            "entities": status.entities,
            "observations": status.observations,
            "relations": status.relations,
            "peers": status.peers,
            "conflicts": reply::conflicts(&status.conflicts),
            "read_only": status.read_only,
            "notice": notice,
        })
        .to_string())
    }

    /// Blocks (without the GIL) until a change is logged after `since` or `timeout` seconds
    /// pass; answers `{"changes", "version"}` as JSON text (no changes on timeout).
    fn wait_for_change(&self, py: Python<'_>, since: &str, timeout: f64) -> PyResult<String> {
        let answer = py.detach(|| {
            let since: Version = since.parse().map_err(invalid)?;
            if !(0.0..=MAX_WAIT_SECONDS).contains(&timeout) {
                return Err(invalid(format!("timeout must be between 0 and {MAX_WAIT_SECONDS} seconds, not {timeout}")));
            }
            let read = self.replica.wait_for_change(since, Duration::from_secs_f64(timeout))?;
            Ok(json!({ "changes": read.data, "version": read.version, "freshness": read.freshness, "unseen": read.unseen })
                .to_string())
        });
        answer.map_err(|e| errors::to_py(py, e))
    }

    /// Starts loading the graph into memory on a thread of Cairn's own (`Replica::warm_up`).
    /// With `wait`, blocks (without the GIL) up to that many seconds for it to end and answers
    /// how many documents it loaded; `None` without `wait`, or if it is still loading.
    #[pyo3(signature = (wait = None))]
    fn warm_up(&self, py: Python<'_>, wait: Option<f64>) -> PyResult<Option<usize>> {
        if let Some(wait) = wait.filter(|w| !(0.0..=MAX_WAIT_SECONDS).contains(w)) {
            let e = invalid(format!("wait must be between 0 and {MAX_WAIT_SECONDS} seconds, not {wait}"));
            return Err(errors::to_py(py, e));
        }
        let warming = self.replica.warm_up().map_err(|e| errors::core(py, e))?;
        Ok(wait.and_then(|wait| py.detach(|| warming.wait(Duration::from_secs_f64(wait)))))
    }

    /// Starts syncing with the relay at `urls` (one URL, or several comma-separated to fail
    /// over between) on a thread and runtime of Cairn's own.
    #[pyo3(signature = (urls, token = None))]
    fn sync(&self, py: Python<'_>, urls: String, token: Option<String>) -> PyResult<PySync> {
        PySync::start(py, self.replica.clone(), urls, token)
    }

    /// The agent this replica writes as.
    #[getter]
    fn agent(&self) -> String {
        self.replica.agent().to_string()
    }

    /// The graph this replica holds.
    #[getter]
    fn graph(&self) -> String {
        self.replica.graph().to_string()
    }

    /// The SQLite file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.replica.path().to_owned()
    }
}
