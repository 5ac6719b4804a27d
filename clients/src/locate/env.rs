//! Everything the search for the reference's memory depends on, read from this process (and
//! optionally from `npm`), so that tests can pass a temporary home instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Source;

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
    pub(super) fn roots(&self) -> Vec<(Source, PathBuf)> {
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
