//! What `cairn mcp` imports from the reference on start, and `cairn import --from-reference`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Candidate, Env, Located, is_absolute, locate};
use crate::options::ReplicaOpts;

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
