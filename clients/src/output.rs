//! Everything the command line prints goes through here: human text by default, JSON with
//! `--json`. (The MCP server never prints: its stdout is its protocol channel.)
//!
//! Human text never carries a control character from data: whatever a graph holds (observations
//! may hold any character but NUL, and data from older versions or other implementations
//! anything) is written through [`safe`], and [`text`], [`warn`] and [`error`] pass every line
//! through it too.
#![allow(clippy::print_stdout)] // this module is the command line's one writer to stdout

use std::borrow::Cow;
use std::fmt::Write;

use cairn::{Freshness, Graph, ReadOnlyCause, Unseen, Version};

// The one-line texts live with the tool replies, which say the same things.
pub(crate) use cairn_tools::text::{change, fact, freshness, read_only, relation, safe, time, unseen, valid};

/// Prints a value as pretty JSON.
pub(crate) fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => out(&s),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

/// Writes a line to stdout. A reader that went away (`cairn graph | head`) ends the program
/// quietly, as it does for other Unix tools, instead of a panic from `println!`; everything was
/// written to the replica before anything is printed.
fn out(s: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{s}").and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints text, line by line through [`safe`] (data in it should have been made safe already,
/// newlines included; this is the backstop).
pub(crate) fn text(s: &str) {
    let lines: Vec<Cow<'_, str>> = s.split('\n').map(safe).collect();
    out(&lines.join("\n"));
}

/// A warning on stderr, as one line.
pub(crate) fn warn(s: &str) {
    eprintln!("warning: {}", safe(s));
}

/// An error on stderr, as one line.
pub(crate) fn error(s: &str) {
    eprintln!("error: {}", safe(s));
}

/// The footer every read prints: version, freshness, unseen, and whether the replica is read-only.
pub(crate) fn footer(version: &Version, f: &Freshness, u: &Unseen, ro: Option<ReadOnlyCause>) -> String {
    let mut s = format!("-- version {version}, {}", freshness(f));
    if let Some(line) = unseen(u) {
        let _ = write!(s, "\n-- NEW: {line}");
    }
    if let Some(cause) = ro {
        let _ = write!(s, "\n-- {}", read_only(cause));
    }
    s
}

/// A graph as indented text.
pub(crate) fn graph(g: &Graph) -> String {
    let mut s = String::new();
    for e in &g.entities {
        let ty = if e.entity_type.is_empty() { "(no type)".into() } else { safe(&e.entity_type) };
        let _ = writeln!(s, "{} [{ty}]", safe(&e.name));
        for c in &e.conflicts {
            let _ = writeln!(s, "  ! type conflict: also set to {:?} by {}", c.entity_type, safe(&c.by));
        }
        for o in &e.observations {
            let _ = writeln!(s, "  - {}{}", safe(&o.text), valid(&o.validity));
        }
    }
    if !g.relations.is_empty() {
        let _ = writeln!(s, "relations:");
        for r in &g.relations {
            let _ = writeln!(s, "  {}{}", relation(&r.relation), valid(&r.validity));
        }
    }
    if g.entities.is_empty() && g.relations.is_empty() {
        s.push_str("(nothing)\n");
    }
    for c in &g.conflicts {
        let by: Vec<String> =
            c.replacements.iter().map(|r| format!("{} (by {})", fact(&r.fact), safe(&r.by))).collect();
        let _ = writeln!(s, "! conflict: {} was superseded by {}", fact(&c.replaced), by.join(" and "));
    }
    if !g.left_out.is_empty() {
        let l = &g.left_out;
        let _ = writeln!(
            s,
            "(left out: {} superseded, {} expired, {} not yet valid; --all shows them)",
            l.superseded, l.expired, l.not_yet_valid
        );
    }
    s.trim_end().to_owned()
}

/// A graph in Graphviz dot.
pub(crate) fn dot(g: &Graph) -> String {
    let esc = |s: &str| safe(s).replace('\\', "\\\\").replace('"', "\\\"");
    let q = |s: &str| format!("\"{}\"", esc(s));
    let mut s = String::from("digraph cairn {\n  node [shape=box];\n");
    for e in &g.entities {
        // `\n` in a label is Graphviz's line break.
        let _ = writeln!(s, "  {} [label=\"{}\\n{}\"];", q(&e.name), esc(&e.name), esc(&e.entity_type));
    }
    for r in &g.relations {
        let _ =
            writeln!(s, "  {} -> {} [label={}];", q(&r.relation.from), q(&r.relation.to), q(&r.relation.relation_type));
    }
    s.push('}');
    s
}
