//! Finding the reference memory server's memory file (`@modelcontextprotocol/server-memory`).
//!
//! The reference keeps its memory where its `ensureMemoryFilePath` says: `MEMORY_FILE_PATH` as is
//! when absolute, joined to the directory of its own `dist/index.js` when relative, and without
//! it `memory.jsonl` in that directory (after renaming a legacy `memory.json` there, if only that
//! exists). That directory is inside whatever installed the package: the npx cache
//! (`$npm_config_cache/_npx/<hash>/node_modules/...`), a global install (`$(npm root -g)/...`),
//! pnpm's dlx cache or global store, yarn classic's global folder.
//!
//! [`Env`] is everything the search depends on, passed in (tests use a temporary home);
//! [`Env::from_process`] fills it from this process, optionally asking `npm` (with a timeout).
//! [`locate`] lists the files that exist, newest first; nothing here writes.
//!
//! `env.rs` gathers the environment; `start.rs` decides what `cairn mcp` imports on start and
//! runs `cairn import --from-reference`.

mod env;
mod start;
#[cfg(test)]
mod tests;

pub(crate) use env::Env;
pub(crate) use start::{ImportReference, Start, import_from_reference, on_start};

use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::Serialize;

/// The package's directory below a `node_modules`.
const PACKAGE: [&str; 2] = ["@modelcontextprotocol", "server-memory"];

/// Where an install (and so a memory file) was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    /// `npx @modelcontextprotocol/server-memory`: `<npm cache>/_npx/<hash>/node_modules`.
    NpxCache,
    /// `pnpm dlx`: `<pnpm cache>/dlx/...`.
    PnpmDlx,
    /// `npm install -g` (any prefix, nvm, fnm, asdf, volta), `pnpm add -g`, `yarn global add`.
    Global,
    /// Named by MEMORY_FILE_PATH (a candidate's source only, never an install's).
    MemoryFilePath,
}

impl Source {
    fn describe(self) -> &'static str {
        match self {
            Source::NpxCache => "npx cache",
            Source::PnpmDlx => "pnpm dlx cache",
            Source::Global => "global install",
            Source::MemoryFilePath => "MEMORY_FILE_PATH",
        }
    }
}

/// One installed copy of the reference server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Install {
    pub(crate) source: Source,
    /// Its `dist` directory (symlinks resolved, as Node resolves `import.meta.url`).
    pub(crate) dist: PathBuf,
}

/// A memory file the reference would read (or did, before MEMORY_FILE_PATH changed).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Candidate {
    pub(crate) path: PathBuf,
    /// `memory_file_path` when MEMORY_FILE_PATH named it, else the install's source.
    pub(crate) found_in: Source,
    /// The install whose `dist` directory holds it (or a relative MEMORY_FILE_PATH was joined to).
    pub(crate) install: Option<PathBuf>,
    /// A `memory.json` (the reference's old name; it renames it to `memory.jsonl` on start).
    pub(crate) legacy: bool,
    /// A legacy `memory.json` with a `memory.jsonl` beside it: the reference ignores it.
    pub(crate) shadowed: bool,
    pub(crate) size: u64,
    /// Last modified, milliseconds since the epoch.
    pub(crate) modified_ms: Option<i64>,
    /// Non-blank lines.
    pub(crate) lines: usize,
    pub(crate) entities: usize,
    pub(crate) relations: usize,
}

impl Candidate {
    fn at(path: PathBuf, found_in: Source, install: Option<PathBuf>, legacy: bool, shadowed: bool) -> Option<Self> {
        let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
        let modified_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok());
        let (mut lines, mut entities, mut relations) = (0, 0, 0);
        if let Ok(bytes) = std::fs::read(&path) {
            for line in String::from_utf8_lossy(&bytes).lines().filter(|l| !l.trim().is_empty()) {
                lines += 1;
                let kind = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| match v.get("type") {
                    Some(serde_json::Value::String(t)) => Some(t.clone()),
                    _ => None,
                });
                match kind.as_deref() {
                    Some("entity") => entities += 1,
                    Some("relation") => relations += 1,
                    _ => {}
                }
            }
        }
        Some(Candidate {
            path,
            found_in,
            install,
            legacy,
            shadowed,
            size: meta.len(),
            modified_ms,
            lines,
            entities,
            relations,
        })
    }

    /// One line about it (paths and data made safe by the caller's printer).
    pub(crate) fn summary(&self) -> String {
        let when = self.modified_ms.map(crate::output::time).unwrap_or_else(|| "unknown time".into());
        let mut s = format!(
            "{}, modified {when}, {} bytes, {} lines: {} entities, {} relations",
            self.found_in.describe(),
            self.size,
            self.lines,
            self.entities,
            self.relations
        );
        if self.shadowed {
            s.push_str("; legacy memory.json, ignored by the reference (memory.jsonl is beside it)");
        } else if self.legacy {
            s.push_str("; legacy memory.json (the reference renames it to memory.jsonl on start)");
        }
        s
    }
}

/// What [`locate`] found.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Located {
    /// MEMORY_FILE_PATH as set (then only what it names counts, as for the reference).
    pub(crate) memory_file_path: Option<PathBuf>,
    /// Every install of the reference found, in search order.
    pub(crate) installs: Vec<Install>,
    /// The memory files that exist, newest first.
    pub(crate) candidates: Vec<Candidate>,
    /// Index into `candidates` of the one to import: the newest the reference would read.
    pub(crate) chosen: Option<usize>,
    /// The directories searched for installs.
    pub(crate) searched: Vec<PathBuf>,
}

impl Located {
    pub(crate) fn chosen(&self) -> Option<&Candidate> {
        self.chosen.map(|i| &self.candidates[i])
    }
}

/// Every install of the reference under the environment's roots, each once.
pub(crate) fn installs(env: &Env) -> (Vec<Install>, Vec<PathBuf>) {
    let mut found: Vec<Install> = Vec::new();
    let mut searched = Vec::new();
    for (source, root) in env.roots() {
        if !root.is_dir() {
            continue;
        }
        searched.push(root.clone());
        let dist = root.join(PACKAGE[0]).join(PACKAGE[1]).join("dist");
        if !dist.is_dir() {
            continue;
        }
        // Node runs the real file behind a symlink (pnpm's layout, a pkg link): so does this.
        let dist = std::fs::canonicalize(&dist).unwrap_or(dist);
        if !found.iter().any(|i| i.dist == dist) {
            found.push(Install { source, dist });
        }
    }
    (found, searched)
}

/// `path.isAbsolute`: rooted (on Windows `\dir` too, which Rust calls relative).
fn is_absolute(p: &Path) -> bool {
    p.is_absolute() || p.has_root()
}

/// `path.join(dir, rel)`: joined, then `.` and `..` resolved without looking at the disk.
pub(crate) fn node_join(dir: &Path, rel: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in dir.join(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The reference memory files the environment points to, newest first, and the one to import:
/// the newest the reference would read (a legacy `memory.json` with a `memory.jsonl` beside it
/// is listed but never chosen).
pub(crate) fn locate(env: &Env) -> Located {
    let (installs, searched) = installs(env);
    let mut candidates = Vec::new();
    match &env.memory_file_path {
        Some(p) if is_absolute(p) => {
            candidates.extend(Candidate::at(p.clone(), Source::MemoryFilePath, None, false, false));
        }
        Some(rel) => {
            for i in &installs {
                let path = node_join(&i.dist, rel);
                candidates.extend(Candidate::at(path, Source::MemoryFilePath, Some(i.dist.clone()), false, false));
            }
        }
        None => {
            for i in &installs {
                let jsonl = i.dist.join("memory.jsonl");
                let has_jsonl = jsonl.is_file();
                let found_in = i.source;
                candidates.extend(Candidate::at(jsonl, found_in, Some(i.dist.clone()), false, false));
                candidates.extend(Candidate::at(
                    i.dist.join("memory.json"),
                    found_in,
                    Some(i.dist.clone()),
                    true,
                    has_jsonl,
                ));
            }
        }
    }
    // Newest first; the search order breaks ties (stable sort).
    candidates.sort_by_key(|c| std::cmp::Reverse(c.modified_ms));
    let chosen = candidates.iter().position(|c| !c.shadowed);
    Located { memory_file_path: env.memory_file_path.clone(), installs, candidates, chosen, searched }
}
