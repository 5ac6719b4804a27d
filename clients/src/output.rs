//! Everything the command line prints goes through here: human text by default, JSON with
//! `--json`. (The MCP server never prints: its stdout is its protocol channel.)
#![allow(clippy::print_stdout)] // this module is the command line's one writer to stdout

use std::fmt::Write;

use cairn::{EntityChange, Freshness, Graph, Millis, Unseen, Version, What};

/// Prints a value as pretty JSON.
pub(crate) fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

/// Prints text as it is.
pub(crate) fn text(s: &str) {
    println!("{s}");
}

/// A warning on stderr.
pub(crate) fn warn(s: &str) {
    eprintln!("warning: {s}");
}

/// `2026-11-30 14:02:11 UTC` from milliseconds since the epoch (no time-zone database needed).
pub(crate) fn time(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// One line saying how fresh a read is.
pub(crate) fn freshness(f: &Freshness) -> String {
    match f {
        Freshness::Local => "local (no relay)".into(),
        Freshness::Synced { as_of } => format!("synced as of {}", time(*as_of)),
        Freshness::Behind { since } => format!("BEHIND: the relay has changes not here yet (since {})", time(*since)),
        Freshness::Offline { since, last_sync } => format!(
            "OFFLINE since {} (last synced {})",
            time(*since),
            last_sync.map(time).unwrap_or_else(|| "never".into())
        ),
    }
}

/// One line about changes by others, or `None` when there are none.
pub(crate) fn unseen(u: &Unseen) -> Option<String> {
    if u.is_empty() {
        return None;
    }
    let more = if u.more_entities > 0 { format!(" and {} more", u.more_entities) } else { String::new() };
    Some(format!(
        "{} change(s) by {} since your last read, on: {}{more}",
        u.count,
        u.agents.join(", "),
        u.entities.join(", ")
    ))
}

/// The footer every read prints: version, freshness, unseen.
pub(crate) fn footer(version: &Version, f: &Freshness, u: &Unseen) -> String {
    let mut s = format!("-- version {version}, {}", freshness(f));
    if let Some(line) = unseen(u) {
        let _ = write!(s, "\n-- NEW: {line}");
    }
    s
}

/// A graph as indented text.
pub(crate) fn graph(g: &Graph) -> String {
    let mut s = String::new();
    for e in &g.entities {
        let ty = if e.entity_type.is_empty() { "(no type)".to_string() } else { e.entity_type.clone() };
        let _ = writeln!(s, "{} [{ty}]", e.name);
        for c in &e.conflicts {
            let _ = writeln!(s, "  ! type conflict: also set to {:?} by {}", c.entity_type, c.by);
        }
        for o in &e.observations {
            let _ = writeln!(s, "  - {}", o.text);
        }
    }
    if !g.relations.is_empty() {
        let _ = writeln!(s, "relations:");
        for r in &g.relations {
            let _ = writeln!(s, "  {} --{}--> {}", r.relation.from, r.relation.relation_type, r.relation.to);
        }
    }
    if g.entities.is_empty() && g.relations.is_empty() {
        s.push_str("(nothing)\n");
    }
    s.trim_end().to_owned()
}

/// A graph in Graphviz dot.
pub(crate) fn dot(g: &Graph) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut s = String::from("digraph cairn {\n  node [shape=box];\n");
    for e in &g.entities {
        let _ = writeln!(s, "  {} [label={}];", q(&e.name), q(&format!("{}\n{}", e.name, e.entity_type)));
    }
    for r in &g.relations {
        let _ =
            writeln!(s, "  {} -> {} [label={}];", q(&r.relation.from), q(&r.relation.to), q(&r.relation.relation_type));
    }
    s.push('}');
    s
}

/// One change as a line of text.
pub(crate) fn change(c: &EntityChange) -> String {
    let what = match &c.what {
        What::EntitySet { entity_type } => format!("set {} to type {entity_type:?}", c.entity),
        What::EntityDeleted => format!("deleted entity {}", c.entity),
        What::ObservationSet { text, validity } => match validity.valid_to {
            Some(to) => format!("ended observation {text:?} on {} at {}", c.entity, time(to)),
            None => format!("observed {text:?} on {}", c.entity),
        },
        What::ObservationDeleted { text } => format!("deleted observation {text:?} from {}", c.entity),
        What::RelationSet { relation, .. } => {
            format!("related {} --{}--> {}", relation.from, relation.relation_type, relation.to)
        }
        What::RelationDeleted { relation } => {
            format!("unrelated {} --{}--> {}", relation.from, relation.relation_type, relation.to)
        }
    };
    format!("{}  {:<20}  {what}", time(c.at), c.agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_civil_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_796_048_804_865), "2026-11-30 14:26:44 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
