//! One-line texts about reads and changes, shared by the command line's output and the tool
//! replies (`cairn mcp`, the Python package), so each says the same thing in the same words.
//!
//! Every text from data goes through [`safe`]: a graph may hold any character but NUL, and no
//! control character from it may reach a terminal or forge a line.

use std::borrow::Cow;
use std::fmt::Write;

use cairn::{EntityChange, Freshness, Millis, ReadOnlyCause, Unseen, What};

/// `s` safe to print on a terminal: every control character (C0, newline and tab included, DEL,
/// and C1, where the 8-bit forms of ESC and CSI live) is written as an escape (`\n`, `\r`, `\t`,
/// `\u{1b}`), so that data can neither drive the terminal (move the cursor, recolour, retitle,
/// rewrite what was printed) nor forge lines of output. JSON needs none of this: serde escapes.
pub fn safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `2026-11-30 14:02:11 UTC` from milliseconds since the epoch (no time-zone database needed).
pub fn time(ms: Millis) -> String {
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
pub fn freshness(f: &Freshness) -> String {
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

/// With several relays or peers, how the replica stands with each: `in step with A; BEHIND B
/// (since T); CANNOT REACH C (since T, last synced T)`. `None` with one or none, whose state
/// [`freshness`] already says whole.
pub fn peers(peers: &[cairn::PeerFreshness]) -> Option<String> {
    if peers.len() < 2 {
        return None;
    }
    let each: Vec<String> = peers
        .iter()
        .map(|p| {
            let name = safe(&p.peer);
            match p.freshness {
                Freshness::Local => name.into_owned(),
                Freshness::Synced { as_of } => format!("in step with {name} (as of {})", time(as_of)),
                Freshness::Behind { since } => format!("BEHIND {name} (since {})", time(since)),
                Freshness::Offline { since, last_sync } => format!(
                    "CANNOT REACH {name} (since {}, last synced {})",
                    time(since),
                    last_sync.map(time).unwrap_or_else(|| "never".into())
                ),
            }
        })
        .collect();
    Some(each.join("; "))
}

/// One line about changes by others, or `None` when there are none.
pub fn unseen(u: &Unseen) -> Option<String> {
    if u.is_empty() {
        return None;
    }
    let more = if u.more_entities > 0 { format!(" and {} more", u.more_entities) } else { String::new() };
    let list = |items: &[String]| items.iter().map(|s| safe(s)).collect::<Vec<_>>().join(", ");
    Some(format!("{} change(s) by {} since your last read, on: {}{more}", u.count, list(&u.agents), list(&u.entities)))
}

/// One line saying a replica is read-only, why, and what that means for "unseen".
pub fn read_only(cause: ReadOnlyCause) -> String {
    format!("READ-ONLY: {cause}; this read did not mark anything as seen")
}

/// A fact named, safe to print.
pub fn fact(f: &cairn::FactRef) -> String {
    match f {
        cairn::FactRef::Observation { entity, text } => format!("{:?} on {}", text, safe(entity)),
        cairn::FactRef::Relation { relation: r } => relation(r),
    }
}

/// `from --type--> to`, safe to print.
pub fn relation(r: &cairn::Relation) -> String {
    format!("{} --{}--> {}", safe(&r.from), safe(&r.relation_type), safe(&r.to))
}

/// A validity as a suffix: ` (valid from … to …)`, or nothing when it is unbounded.
pub fn valid(v: &cairn::Validity) -> String {
    match (v.valid_from, v.valid_to) {
        (None, None) => String::new(),
        (Some(f), None) => format!(" (valid from {})", time(f)),
        (None, Some(t)) => format!(" (valid until {})", time(t)),
        (Some(f), Some(t)) => format!(" (valid from {} until {})", time(f), time(t)),
    }
}

/// One change as a line of text.
pub fn change(c: &EntityChange) -> String {
    // Quoted texts are written with Rust's debug escapes, which escape control characters too.
    let entity = safe(&c.entity);
    let what = match &c.what {
        What::EntitySet { entity_type } => format!("set {entity} to type {entity_type:?}"),
        What::EntityDeleted => format!("deleted entity {entity}"),
        What::ObservationSet { text, validity, replaces: Some(old) } => {
            format!("superseded {old:?} on {entity} by {text:?}{}", valid(validity))
        }
        What::ObservationSet { text, validity, replaces: None } => match validity.valid_to {
            Some(to) => format!("ended observation {text:?} on {entity} at {}", time(to)),
            None => format!("observed {text:?} on {entity}{}", valid(validity)),
        },
        What::ObservationDeleted { text } => format!("deleted observation {text:?} from {entity}"),
        What::RelationSet { relation: r, validity, replaces: Some(old) } => {
            format!("superseded {} by {}{}", relation(old), relation(r), valid(validity))
        }
        What::RelationSet { relation: r, validity, replaces: None } => match validity.valid_to {
            Some(to) => format!("ended {} at {}", relation(r), time(to)),
            None => format!("related {}{}", relation(r), valid(validity)),
        },
        What::RelationDeleted { relation: r } => format!("unrelated {}", relation(r)),
    };
    format!("{}  {:<20}  {what}", time(c.at), safe(&c.agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(safe("plain text, ünïcode, \\ and \""), Cow::Borrowed(_)));
        assert_eq!(safe("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(safe("\u{1b}[31mred\u{7}"), "\\u{1b}[31mred\\u{7}");
        assert_eq!(safe("del\u{7f} csi\u{9b} nel\u{85}"), "del\\u{7f} csi\\u{9b} nel\\u{85}");
        assert!(!safe("\u{0}\u{1f}\u{80}\u{9f}").chars().any(char::is_control));
    }

    #[test]
    fn times_are_civil_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_796_048_804_865), "2026-11-30 14:26:44 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
