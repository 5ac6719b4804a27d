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

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde::Serialize;

use crate::options::ReplicaOpts;

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

/// Everything the search depends on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Env {
    pub(crate) home: Option<PathBuf>,
    /// MEMORY_FILE_PATH (unset or empty: `None`, as for the reference).
    pub(crate) memory_file_path: Option<PathBuf>,
    /// npm cache directories (`npm_config_cache`, `NPM_CONFIG_CACHE`, `npm config get cache`);
    /// `~/.npm` and `%LOCALAPPDATA%\npm-cache` are always searched too.
    pub(crate) npm_caches: Vec<PathBuf>,
    /// npm prefixes (`npm_config_prefix`, `NPM_CONFIG_PREFIX`, system ones): global packages are
    /// in `<prefix>/lib/node_modules` (Unix) or `<prefix>/node_modules` (Windows).
    pub(crate) npm_prefixes: Vec<PathBuf>,
    /// Global `node_modules` directories as `npm root -g` prints them.
    pub(crate) npm_roots: Vec<PathBuf>,
    pub(crate) nvm_dir: Option<PathBuf>,
    pub(crate) pnpm_home: Option<PathBuf>,
    pub(crate) xdg_cache_home: Option<PathBuf>,
    pub(crate) xdg_data_home: Option<PathBuf>,
    pub(crate) appdata: Option<PathBuf>,
    pub(crate) localappdata: Option<PathBuf>,
}

/// How long `npm` may take to answer before the search goes on without it.
const NPM_TIMEOUT: Duration = Duration::from_secs(3);

impl Env {
    /// This process's environment; with `ask_npm`, also `npm root -g` and `npm config get cache`
    /// (which know about `.npmrc`), each given [`NPM_TIMEOUT`] and ignored if they fail.
    pub(crate) fn from_process(ask_npm: bool) -> Env {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let mut prefixes: Vec<PathBuf> =
            ["npm_config_prefix", "NPM_CONFIG_PREFIX"].into_iter().filter_map(var).collect();
        if cfg!(windows) {
            prefixes.extend(var("ProgramFiles").map(|p| p.join("nodejs")));
        } else {
            prefixes.extend(["/usr", "/usr/local", "/opt/homebrew", "/opt/local"].map(PathBuf::from));
        }
        let mut env = Env {
            home: var("HOME").or_else(|| var("USERPROFILE")),
            memory_file_path: var("MEMORY_FILE_PATH"),
            npm_caches: ["npm_config_cache", "NPM_CONFIG_CACHE"].into_iter().filter_map(var).collect(),
            npm_prefixes: prefixes,
            npm_roots: Vec::new(),
            nvm_dir: var("NVM_DIR"),
            pnpm_home: var("PNPM_HOME"),
            xdg_cache_home: var("XDG_CACHE_HOME"),
            xdg_data_home: var("XDG_DATA_HOME"),
            appdata: var("APPDATA"),
            localappdata: var("LOCALAPPDATA"),
        };
        if ask_npm {
            let [root, cache] = npm_answers([&["root", "-g"], &["config", "get", "cache"]]);
            env.npm_roots.extend(root.map(PathBuf::from));
            env.npm_caches.extend(cache.map(PathBuf::from));
        }
        env
    }

    /// Directories to search: (source, directory holding `node_modules/@modelcontextprotocol`
    /// or that `node_modules` itself, depth of `*` levels below it to expand first).
    fn roots(&self) -> Vec<(Source, PathBuf)> {
        let home = |rel: &str| self.home.as_ref().map(|h| h.join(rel));
        let mut roots = Vec::new();
        // npx: <cache>/_npx/<hash>/node_modules.
        let caches = self
            .npm_caches
            .iter()
            .cloned()
            .chain(home(".npm"))
            .chain(self.localappdata.as_ref().map(|d| d.join("npm-cache")));
        for cache in caches {
            for hash in subdirs(&cache.join("_npx")) {
                roots.push((Source::NpxCache, hash.join("node_modules")));
            }
        }
        // pnpm dlx: <pnpm cache>/dlx/<hash>/<stamp>/node_modules (and <hash>/pkg -> the latest).
        let pnpm_caches = [
            self.xdg_cache_home.as_ref().map(|d| d.join("pnpm")),
            home(".cache/pnpm"),
            home("Library/Caches/pnpm"),
            self.localappdata.as_ref().map(|d| d.join("pnpm-cache")),
        ];
        for cache in pnpm_caches.into_iter().flatten() {
            for hash in subdirs(&cache.join("dlx")) {
                roots.push((Source::PnpmDlx, hash.join("node_modules")));
                for stamp in subdirs(&hash) {
                    roots.push((Source::PnpmDlx, stamp.join("node_modules")));
                }
            }
        }
        // Global: npm's root, npm prefixes (custom, ~/.npm-global, ~/.local, %APPDATA%\npm,
        // system ones, and those of node version managers).
        roots.extend(self.npm_roots.iter().map(|r| (Source::Global, r.clone())));
        let mut prefixes: Vec<PathBuf> = self.npm_prefixes.clone();
        prefixes.extend(
            [home(".npm-global"), home(".local"), self.appdata.as_ref().map(|d| d.join("npm"))].into_iter().flatten(),
        );
        let managers = [
            self.nvm_dir.as_ref().map(|d| d.join("versions/node")),
            home(".nvm/versions/node"),
            self.xdg_data_home.as_ref().map(|d| d.join("fnm/node-versions")),
            home(".local/share/fnm/node-versions"),
            home(".fnm/node-versions"),
            home("Library/Application Support/fnm/node-versions"),
            home(".asdf/installs/nodejs"),
            home(".volta/tools/image/node"),
        ];
        // volta keeps each global package under a prefix of its own.
        prefixes.extend(home(".volta/tools/image/packages/@modelcontextprotocol/server-memory"));
        for dir in managers.into_iter().flatten() {
            for version in subdirs(&dir) {
                prefixes.push(version.join("installation")); // fnm
                prefixes.push(version);
            }
        }
        for prefix in prefixes {
            roots.push((Source::Global, prefix.join("lib").join("node_modules")));
            roots.push((Source::Global, prefix.join("node_modules")));
        }
        // pnpm add -g: <pnpm home>/global/<n>/node_modules; yarn global add (classic).
        let pnpm_homes = [
            self.pnpm_home.clone(),
            self.xdg_data_home.as_ref().map(|d| d.join("pnpm")),
            home(".local/share/pnpm"),
            home("Library/pnpm"),
            self.localappdata.as_ref().map(|d| d.join("pnpm")),
        ];
        for dir in pnpm_homes.into_iter().flatten() {
            for n in subdirs(&dir.join("global")) {
                roots.push((Source::Global, n.join("node_modules")));
            }
        }
        roots.extend(
            [
                home(".config/yarn/global/node_modules"),
                self.localappdata.as_ref().map(|d| d.join("Yarn/Data/global/node_modules")),
            ]
            .into_iter()
            .flatten()
            .map(|r| (Source::Global, r)),
        );
        roots
    }
}

/// Subdirectories of `dir`, sorted (none if it cannot be read).
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Runs `npm` with each argument list at once; each answer's first line, or `None` if npm is
/// missing, fails or takes longer than [`NPM_TIMEOUT`] (it is then killed).
fn npm_answers<const N: usize>(commands: [&[&str]; N]) -> [Option<String>; N] {
    use std::process::{Command, Stdio};
    let program = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let mut children = commands.map(|args| {
        Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().ok()
    });
    let deadline = Instant::now() + NPM_TIMEOUT;
    let mut answers = [(); N].map(|_| None);
    loop {
        let mut running = false;
        for (child, answer) in children.iter_mut().zip(answers.iter_mut()) {
            let Some(c) = child else { continue };
            match c.try_wait() {
                Ok(Some(status)) => {
                    let mut out = String::new();
                    if status.success()
                        && let Some(mut stdout) = c.stdout.take()
                    {
                        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
                    }
                    *answer = out.lines().next().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned);
                    *child = None;
                }
                Ok(None) => running = true,
                Err(_) => *child = None,
            }
        }
        if !running {
            break;
        }
        if Instant::now() >= deadline {
            for c in children.iter_mut().flatten() {
                let _ = c.kill();
                let _ = c.wait();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    answers
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

/// `cairn mcp --import-reference`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ImportReference {
    /// On the first start with the default database (no --db / CAIRN_DB, no database file yet)
    /// and no relay
    Auto,
    /// On every start (keyed by content: an imported file is not imported again)
    #[value(alias = "1", alias = "true", alias = "yes")]
    On,
    /// Never
    #[value(alias = "0", alias = "false", alias = "no")]
    Off,
}

/// What `cairn mcp` does on start: the database, and the reference file to import into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Start {
    pub(crate) db: PathBuf,
    pub(crate) import: Option<PathBuf>,
}

/// Decides [`Start`] and logs (stderr) what was found and why it is or is not imported.
/// `beside` names the database kept beside an absolute MEMORY_FILE_PATH; `cwd` is where earlier
/// versions of Cairn resolved a relative one.
pub(crate) fn on_start(
    opts: &ReplicaOpts,
    mode: ImportReference,
    env: &Env,
    cwd: &Path,
    beside: impl Fn(&Path) -> PathBuf,
) -> Start {
    match &env.memory_file_path {
        // As before: the database beside the file, which is imported if it exists.
        Some(file) if is_absolute(file) => {
            let db = opts.db.clone().unwrap_or_else(|| beside(file));
            Start { db, import: Some(file.clone()).filter(|f| f.is_file()) }
        }
        // Relative: the reference joins it to its dist directory (in a package cache: no place
        // for a database), so the usual database, unless an earlier Cairn made one beside the
        // path resolved against the working directory.
        Some(rel) => {
            let old = cwd.join(rel);
            let db = opts
                .db
                .clone()
                .unwrap_or_else(|| Some(beside(&old)).filter(|d| d.exists()).unwrap_or_else(|| opts.db_path()));
            let found = locate(env);
            let import = match found.chosen() {
                Some(c) => {
                    log_choice(&found, c, &db);
                    Some(c.path.clone())
                }
                None => {
                    tracing::warn!(
                        "MEMORY_FILE_PATH {} is relative and no install of the reference server holds it (found {} installs)",
                        rel.display(),
                        found.installs.len()
                    );
                    Some(old).filter(|f| f.is_file())
                }
            };
            Start { db, import }
        }
        None => {
            let db = opts.db_path();
            let first_default = opts.db.is_none() && !db.exists();
            let wanted = match mode {
                ImportReference::Off => return Start { db, import: None },
                ImportReference::On => true,
                ImportReference::Auto if !first_default => return Start { db, import: None },
                ImportReference::Auto => opts.relay.is_none(),
            };
            let found = locate(env);
            let Some(c) = found.chosen() else { return Start { db, import: None } };
            if !wanted {
                tracing::warn!(
                    "found the reference server's memory {} ({} entities, {} relations); not imported because a relay is \
                     configured (it would be shared): run `cairn import --from-reference` or `cairn mcp --import-reference`",
                    c.path.display(),
                    c.entities,
                    c.relations
                );
                return Start { db, import: None };
            }
            log_choice(&found, c, &db);
            Start { db, import: Some(c.path.clone()) }
        }
    }
}

fn log_choice(found: &Located, c: &Candidate, db: &Path) {
    let others: Vec<String> =
        found.candidates.iter().filter(|o| o.path != c.path).map(|o| o.path.display().to_string()).collect();
    tracing::warn!(
        file = %c.path.display(),
        found_in = c.found_in.describe(),
        entities = c.entities,
        relations = c.relations,
        others = %others.join(", "),
        "importing the reference server's memory (the newest of {}) into {}; CAIRN_IMPORT_REFERENCE=off stops this",
        found.candidates.len(),
        db.display()
    );
}

/// `cairn import --from-reference`: lists the reference memory files, then imports one (`pick`:
/// a 1-based index in the list, or a path; by default the newest) with `cairn import`'s code.
pub(crate) async fn import_from_reference(
    opts: &ReplicaOpts,
    pick: Option<&str>,
    dry_run: bool,
    options: crate::commands::transfer::ImportOptions,
) -> anyhow::Result<()> {
    use crate::output;
    let found = tokio::task::spawn_blocking(|| locate(&Env::from_process(true))).await?;
    let chosen: Option<PathBuf> = match pick {
        None => found.chosen().map(|c| c.path.clone()),
        Some(p) => match p.parse::<usize>() {
            Ok(n) => match found.candidates.get(n.wrapping_sub(1)) {
                Some(c) => Some(c.path.clone()),
                None => anyhow::bail!("--pick {n}: the list has {} files", found.candidates.len()),
            },
            Err(_) => Some(PathBuf::from(p)),
        },
    };
    let db = opts.db_path();
    if opts.json && dry_run {
        #[derive(Serialize)]
        struct Plan<'a> {
            #[serde(flatten)]
            found: &'a Located,
            import: Option<&'a Path>,
            db: &'a Path,
        }
        output::json(&Plan { found: &found, import: chosen.as_deref(), db: &db });
        return Ok(());
    }
    // With --json the import's report is the output; the list goes to stderr.
    let say = |s: &str| if opts.json { eprintln!("{}", output::safe(s)) } else { output::text(s) };
    if let Some(p) = &found.memory_file_path {
        let how =
            if is_absolute(p) { "as is" } else { "joined to each install's dist directory, as the reference does" };
        say(&format!("MEMORY_FILE_PATH is set: {} ({how})", output::safe(&p.display().to_string())));
    }
    if found.candidates.is_empty() {
        let searched: Vec<String> = found.searched.iter().map(|p| p.display().to_string()).collect();
        say(&format!(
            "no reference memory file found ({} installs of @modelcontextprotocol/server-memory; searched {})",
            found.installs.len(),
            output::safe(&searched.join(", "))
        ));
    } else {
        say("reference memory files, newest first:");
        for (i, c) in found.candidates.iter().enumerate() {
            let mark = if Some(i) == found.chosen { " (newest)" } else { "" };
            say(&format!("  [{}] {}{mark}", i + 1, output::safe(&c.path.display().to_string())));
            say(&format!("      {}", c.summary()));
        }
    }
    let Some(file) = chosen else {
        anyhow::bail!("nothing to import; if you know where the file is, run `cairn import PATH`");
    };
    let file_text = output::safe(&file.display().to_string()).into_owned();
    let db_text = output::safe(&db.display().to_string()).into_owned();
    if dry_run {
        say(&format!("dry run: would import {file_text} into {db_text}"));
        return Ok(());
    }
    say(&format!("importing {file_text} into {db_text}"));
    crate::commands::transfer::import(opts, &file, options).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    const ALICE: &str = concat!(
        r#"{"type":"entity","name":"Alice","entityType":"person","observations":["likes tea"]}"#,
        "\n",
        r#"{"type":"entity","name":"ACME","entityType":"company","observations":[]}"#,
        "\n",
        r#"{"type":"relation","from":"Alice","to":"ACME","relationType":"works_at"}"#,
        "\n"
    );

    /// The reference's dist directory below a `node_modules`, created.
    fn install(node_modules: &Path) -> PathBuf {
        let dist = node_modules.join("@modelcontextprotocol/server-memory/dist");
        std::fs::create_dir_all(&dist).unwrap();
        std::fs::write(dist.join("index.js"), "#!/usr/bin/env node\n").unwrap();
        dist
    }

    /// A file with this content, modified at `secs` after the epoch.
    fn file(path: &Path, content: &str, secs: u64) -> PathBuf {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        std::fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
        std::fs::canonicalize(path).unwrap()
    }

    fn home_env(home: &Path) -> Env {
        Env { home: Some(home.to_owned()), ..Env::default() }
    }

    fn paths(found: &Located) -> Vec<PathBuf> {
        found.candidates.iter().map(|c| c.path.clone()).collect()
    }

    #[test]
    fn npx_cache_and_global_installs_are_found_newest_first() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let npx = file(&install(&h.join(".npm/_npx/0a1b2c/node_modules")).join("memory.jsonl"), ALICE, 1_000);
        let global = file(&install(&h.join(".npm-global/lib/node_modules")).join("memory.jsonl"), ALICE, 3_000);
        let nvm =
            file(&install(&h.join(".nvm/versions/node/v22.1.0/lib/node_modules")).join("memory.jsonl"), "", 2_000);
        // An install with no memory yet is an install, not a candidate.
        install(&h.join(".npm/_npx/ffff/node_modules"));
        let found = locate(&home_env(h));
        assert_eq!(found.installs.len(), 4);
        assert_eq!(paths(&found), [global.clone(), nvm, npx]);
        assert_eq!(found.chosen().unwrap().path, global);
        let c = &found.candidates[0];
        assert_eq!((c.found_in, c.lines, c.entities, c.relations), (Source::Global, 3, 2, 1));
        assert_eq!(c.size, ALICE.len() as u64);
        assert_eq!(c.modified_ms, Some(3_000_000));
        assert_eq!(found.candidates[2].found_in, Source::NpxCache);
        assert!(found.candidates[0].summary().contains("2 entities, 1 relations"));
    }

    #[test]
    fn npm_config_cache_custom_prefixes_and_npm_root_are_honoured() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let env = Env {
            home: Some(t.join("home")),
            npm_caches: vec![t.join("cache")],
            npm_prefixes: vec![t.join("prefix"), t.join("winprefix")],
            npm_roots: vec![t.join("root")],
            appdata: Some(t.join("AppData/Roaming")),
            ..Env::default()
        };
        let want = [
            file(&install(&t.join("cache/_npx/12ab/node_modules")).join("memory.jsonl"), ALICE, 10),
            file(&install(&t.join("root")).join("memory.jsonl"), ALICE, 9),
            file(&install(&t.join("prefix/lib/node_modules")).join("memory.jsonl"), ALICE, 8),
            file(&install(&t.join("winprefix/node_modules")).join("memory.jsonl"), ALICE, 7),
            file(&install(&t.join("AppData/Roaming/npm/node_modules")).join("memory.jsonl"), ALICE, 6),
        ];
        assert_eq!(paths(&locate(&env)), want);
        // Without the cache variable, ~/.npm is where npx's cache is (and nothing is there).
        let env = Env { npm_caches: vec![], ..env };
        assert!(!paths(&locate(&env)).contains(&want[0]));
    }

    #[test]
    fn a_legacy_memory_json_counts_only_where_the_reference_would_rename_it() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let only_old = install(&h.join(".npm/_npx/aaaa/node_modules"));
        let both = install(&h.join(".npm/_npx/bbbb/node_modules"));
        let old = file(&only_old.join("memory.json"), ALICE, 100);
        let new = file(&both.join("memory.jsonl"), ALICE, 200);
        let shadowed = file(&both.join("memory.json"), ALICE, 300);
        let found = locate(&home_env(h));
        assert_eq!(paths(&found), [shadowed, new.clone(), old]);
        let flags: Vec<(bool, bool)> = found.candidates.iter().map(|c| (c.legacy, c.shadowed)).collect();
        assert_eq!(flags, [(true, true), (false, false), (true, false)]);
        assert_eq!(found.chosen().unwrap().path, new, "the newest the reference reads, not the ignored memory.json");
        assert!(found.candidates[0].summary().contains("ignored by the reference"));
        assert!(found.candidates[2].summary().contains("renames it"));
    }

    #[test]
    fn memory_file_path_is_resolved_as_the_reference_resolves_it() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let older = install(&h.join(".npm/_npx/aaaa/node_modules"));
        let newer = install(&h.join(".npm-global/lib/node_modules"));
        file(&older.join("memory.jsonl"), ALICE, 500); // the default file: not what the reference reads now
        // Relative: joined to dist/, `..` included (path.join), in every install; the newest wins.
        let a = file(&older.join("../../notes/m.jsonl"), ALICE, 100);
        let b = file(&newer.join("../../notes/m.jsonl"), "", 200);
        assert_eq!(a, std::fs::canonicalize(older.parent().unwrap().parent().unwrap()).unwrap().join("notes/m.jsonl"));
        let env = Env { memory_file_path: Some("../../notes/m.jsonl".into()), ..home_env(h) };
        let found = locate(&env);
        assert_eq!(paths(&found), [b.clone(), a]);
        assert_eq!(found.chosen().unwrap().install.as_deref(), Some(std::fs::canonicalize(&newer).unwrap().as_path()));
        assert!(found.candidates.iter().all(|c| c.found_in == Source::MemoryFilePath));
        // Absolute: as is, and nothing else counts.
        let abs = file(&h.join("elsewhere/memory.jsonl"), ALICE, 50);
        let found = locate(&Env { memory_file_path: Some(abs.clone()), ..home_env(h) });
        assert_eq!(paths(&found), [abs]);
        // Relative, naming nothing that exists: no candidate (the default files do not count).
        let found = locate(&Env { memory_file_path: Some("missing.jsonl".into()), ..home_env(h) });
        assert!(found.candidates.is_empty() && found.chosen.is_none());
    }

    #[test]
    fn node_join_resolves_dots_like_path_join() {
        assert_eq!(node_join(Path::new("/a/b/dist"), Path::new("../x.jsonl")), Path::new("/a/b/x.jsonl"));
        assert_eq!(node_join(Path::new("/a/dist"), Path::new("./y/./z.jsonl")), Path::new("/a/dist/y/z.jsonl"));
        assert_eq!(node_join(Path::new("/a"), Path::new("../../../r")), Path::new("/r"));
    }

    #[cfg(unix)]
    #[test]
    fn pnpm_dlx_symlinks_are_followed_to_one_install() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let stamp = h.join(".cache/pnpm/dlx/hash1/19a2b-1234");
        let real =
            install(&stamp.join("node_modules/.pnpm/@modelcontextprotocol+server-memory@2026.8.31/node_modules"));
        std::fs::create_dir_all(stamp.join("node_modules/@modelcontextprotocol")).unwrap();
        std::os::unix::fs::symlink(
            real.parent().unwrap(),
            stamp.join("node_modules/@modelcontextprotocol/server-memory"),
        )
        .unwrap();
        std::os::unix::fs::symlink(&stamp, h.join(".cache/pnpm/dlx/hash1/pkg")).unwrap();
        let mem = file(&real.join("memory.jsonl"), ALICE, 10);
        let found = locate(&home_env(h));
        assert_eq!(found.installs.len(), 1, "{:?}", found.installs);
        assert_eq!(found.installs[0].source, Source::PnpmDlx);
        assert_eq!(paths(&found), [mem]);
    }

    fn opts(db: Option<PathBuf>) -> ReplicaOpts {
        ReplicaOpts {
            db,
            agent: None,
            graph: "default".into(),
            relay: None,
            token: None,
            ca_file: None,
            json: false,
            durability: crate::options::DurabilityArg::Full,
            sync_timeout: None,
            read_only: false,
        }
    }

    fn beside(f: &Path) -> PathBuf {
        f.with_extension("cairn.db")
    }

    #[test]
    fn mcp_start_imports_the_default_file_only_when_asked_or_new() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let mem = file(&install(&h.join(".npm/_npx/aaaa/node_modules")).join("memory.jsonl"), ALICE, 10);
        let env = home_env(h);
        let db = h.join("mine.db");
        let start = on_start(&opts(Some(db.clone())), ImportReference::On, &env, h, beside);
        assert_eq!(start, Start { db: db.clone(), import: Some(mem.clone()) });
        // Auto imports only into a default database that does not exist yet; --db is not that.
        let start = on_start(&opts(Some(db.clone())), ImportReference::Auto, &env, h, beside);
        assert_eq!(start.import, None);
        assert_eq!(on_start(&opts(None), ImportReference::Off, &env, h, beside).import, None);
        // An absolute MEMORY_FILE_PATH: the database beside it, whatever the mode.
        let abs = file(&h.join("m/memory.jsonl"), ALICE, 10);
        let env = Env { memory_file_path: Some(abs.clone()), ..home_env(h) };
        let start = on_start(&opts(None), ImportReference::Off, &env, h, beside);
        assert_eq!(start, Start { db: beside(&abs), import: Some(abs) });
        // A relative one: the reference's file, into the given database.
        let env = Env { memory_file_path: Some("memory.jsonl".into()), ..home_env(h) };
        let start = on_start(&opts(Some(db.clone())), ImportReference::Off, &env, h, beside);
        assert_eq!(start, Start { db, import: Some(mem) });
    }
}
