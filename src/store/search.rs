//! Search: the query planner over the two full-text indexes (words first, then trigrams).
//!
//! A query is split into terms; each stage decides, term by term, whether its index can look the
//! term up (and whether that lookup is exact) or only filter by it, then reads the rarest
//! terms' rows, ranked by BM25, and filters the candidates by the rest.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::index::graph_of;
use crate::error::Result;
use crate::model::Graph;

/// How a search stage looks terms up.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// The word index, word starts: `tea` in "green tea" and in "Teapot".
    WordStarts,
    /// The trigram index: anywhere, `lic` in "Alice".
    Substrings,
}

impl Stage {
    fn table(self) -> &'static str {
        match self {
            Stage::WordStarts => "words",
            Stage::Substrings => "search",
        }
    }

    /// The lookups that find `term` in this stage's index; none when the index cannot look it
    /// up (so it only filters). The trigram index needs three characters. The word index holds
    /// runs of letters and digits, and keeps no positions (so no phrases): a term's runs of two
    /// or more ASCII letters and digits are looked up one by one, each a whole word but the last,
    /// which may start one (`entity-42`: the word `entity` and a word starting `42`).
    fn lookups(self, term: &str) -> Vec<Lookup> {
        match self {
            Stage::Substrings if term.chars().count() >= 3 => vec![Lookup { quoted: quoted(term), prefix: false }],
            Stage::Substrings => Vec::new(),
            // Other letters are left to the filter: the tokenizer's idea of them may differ.
            Stage::WordStarts if term.chars().any(|c| c.is_alphanumeric() && !c.is_ascii()) => Vec::new(),
            Stage::WordStarts => {
                let runs: Vec<&str> =
                    term.split(|c: char| !c.is_ascii_alphanumeric()).filter(|r| !r.is_empty()).collect();
                let open_end = term.ends_with(|c: char| c.is_ascii_alphanumeric());
                runs.iter()
                    .enumerate()
                    .filter(|(_, run)| run.len() >= 2)
                    .map(|(i, run)| Lookup { quoted: quoted(run), prefix: open_end && i + 1 == runs.len() })
                    .collect()
            }
        }
    }

    /// Whether the lookups of `term` find exactly what the term matches, so that no filter
    /// is needed after them.
    fn looks_up_whole(self, term: &str, lookups: &[Lookup]) -> bool {
        match self {
            Stage::Substrings => !lookups.is_empty(),
            Stage::WordStarts => lookups.len() == 1 && term.chars().all(|c| c.is_ascii_alphanumeric()),
        }
    }

    /// Whether `text` (lowercased) holds `term` (lowercased) the way this stage matches.
    fn matches(self, text: &str, term: &str) -> bool {
        match self {
            Stage::Substrings => text.contains(term),
            // As the word index splits words: at the start of the text or after a character
            // that is not a letter or digit.
            Stage::WordStarts => text
                .match_indices(term)
                .any(|(i, _)| text[..i].chars().next_back().is_none_or(|c| !c.is_alphanumeric())),
        }
    }
}

/// One look-up in a full-text index: a quoted string, as a whole token or as a prefix.
struct Lookup {
    quoted: String,
    prefix: bool,
}

impl Lookup {
    fn pattern(&self) -> String {
        if self.prefix { format!("{}*", self.quoted) } else { self.quoted.clone() }
    }
}

/// `term` as one FTS5 string, so no character in it is read as query syntax.
fn quoted(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// A term found in this many search rows or more is "common": ranking by it would mean scoring
/// every one of its rows, so it only filters, and ranking comes from the rarer terms. (Scoring
/// costs about a microsecond a row; a common term's BM25 weight is small anyway.)
const COMMON: i64 = 500;

/// How many rows of a common term a stage reads, newest first, looking for matches.
const SCAN: i64 = 5_000;

/// Entities whose name, type or observations contain every whitespace-separated term of
/// `query` (case-insensitive), best BM25 match first; plus the relations touching them. Any
/// characters are allowed in the query: terms are quoted, never parsed as FTS syntax.
///
/// Two stages. First the word index: entities where every term starts a word (`tea` finds
/// "green tea" and "Teapot"). Only if that finds nothing, the trigram index: entities where every
/// term appears anywhere (`lic` finds "Alice"), which is the reference memory server's substring
/// match. The word index answers from a few short posting lists; the trigram index must
/// intersect long ones, which at 100k entities costs several milliseconds.
///
/// In each stage, ranking uses the terms found in fewer than [`COMMON`] rows (BM25); the other
/// terms (common ones, and those the index cannot look up) filter the candidates, matched the
/// stage's way. When every term is common, the results are the most recently written matches
/// among the newest [`SCAN`] rows of the first common term (in the word stage, its rows as a
/// whole word, then as a prefix). So a query's cost is bounded by its rarest term, not by how
/// often a word like "note" appears in a large graph.
pub(crate) fn search(tx: &super::Txn<'_>, graph: &str, query: &str, limit: usize) -> Result<Graph> {
    let db = tx.db();
    let terms: Vec<&str> = query.split_whitespace().collect();
    let mut names: Vec<String> = Vec::new();
    if terms.is_empty() && !query.is_empty() {
        // Whitespace only: the text itself, anywhere, as the reference server matches it.
        names = search_stage(db, graph, Stage::Substrings, &[query], limit)?;
    } else if terms.is_empty() {
        // An empty query matches everything, as the reference server's does.
        let mut stmt = db.prepare_cached("SELECT name FROM entities WHERE graph = ?1 ORDER BY name LIMIT ?2")?;
        let rows = stmt.query_map(params![graph, limit as i64], |r| r.get(0))?;
        names = rows.collect::<rusqlite::Result<_>>()?;
    } else {
        for stage in [Stage::WordStarts, Stage::Substrings] {
            names = search_stage(db, graph, stage, &terms, limit)?;
            if !names.is_empty() {
                break;
            }
        }
    }
    graph_of(db, graph, &names)
}

/// One stage of [`search`]: the names of at most `limit` matching entities, best first.
fn search_stage(db: &Connection, graph: &str, stage: Stage, terms: &[&str], limit: usize) -> Result<Vec<String>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let table = stage.table();
    // How common a term is, counted over every graph in the file: reading each row's graph would
    // cost more than the count itself, and an estimate is all the choice below needs. A rare
    // term's rows are kept, so that the look-up (a trigram phrase: milliseconds at 100k
    // entities) is not made again to find their entities.
    let mut probe = db.prepare_cached(&format!("SELECT rowid FROM {table} WHERE {table} MATCH ?1 LIMIT ?2"))?;
    let mut rare: Vec<(String, Vec<i64>)> = Vec::new();
    let mut common = None;
    let mut filters = Vec::new();
    for t in terms {
        let lookups = stage.lookups(t);
        let whole = stage.looks_up_whole(t, &lookups);
        if !whole {
            filters.push(t.to_lowercase());
        }
        for lookup in lookups {
            let mut rows = |p: &str| -> Result<Vec<i64>> {
                Ok(probe.query_map(params![p, COMMON], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
            };
            // A word common by itself is common as a prefix too, and counting it streams where
            // counting the prefix first merges every word it starts.
            let found = match rows(&lookup.quoted)? {
                found if (found.len() as i64) < COMMON && lookup.prefix => rows(&lookup.pattern())?,
                found => found,
            };
            match found.len() as i64 {
                // A term this stage finds nowhere (in any graph): no entity has them all.
                0 => return Ok(Vec::new()),
                n if n < COMMON => rare.push((lookup.pattern(), found)),
                _ => {
                    common.get_or_insert(lookup);
                    if whole {
                        filters.push(t.to_lowercase());
                    }
                }
            }
        }
    }
    let mut keep = Vec::new();
    let mut seen = BTreeSet::new();
    // Takes a candidate if it holds every filter term; true once `limit` are taken.
    let mut take = |name: String| -> Result<bool> {
        if seen.insert(name.clone()) && (filters.is_empty() || entity_matches_all(db, graph, stage, &name, &filters)?) {
            keep.push(name);
        }
        Ok(keep.len() >= limit)
    };
    if !rare.is_empty() {
        for name in ranked_candidates(db, graph, table, &rare)? {
            if take(name)? {
                break;
            }
        }
        return Ok(keep);
    }
    // Every term common (or not indexable): the newest rows of one, filtered by all.
    let (select, patterns) = match (common, stage) {
        // A common word's own rows first: a prefix query over a common word merges the posting
        // lists of every word it starts before the first row comes out (12 ms for "note" at 100k
        // entities), where the word alone streams.
        (Some(lookup), _) => {
            let mut patterns = vec![lookup.quoted.clone()];
            if lookup.prefix {
                patterns.push(lookup.pattern());
            }
            (format!("SELECT entity FROM {table} WHERE {table} MATCH ?1"), patterns)
        }
        // No term the trigram index can look up (all under three characters): scan, folding
        // case as the filter does (SQLite's LIKE folds ASCII only: "é" would miss "Émile").
        (None, Stage::Substrings) => (
            "SELECT entity FROM search WHERE cairn_contains_folded(text, ?1)".to_owned(),
            vec![terms[0].to_lowercase()],
        ),
        // The word index cannot look any term up; the trigram stage will.
        (None, _) => return Ok(Vec::new()),
    };
    let mut stmt = db.prepare_cached(&format!("{select} AND graph = ?2 ORDER BY rowid DESC LIMIT ?3"))?;
    'scan: for pattern in patterns {
        let mut rows = stmt.query(params![pattern, graph, SCAN])?;
        while let Some(row) = rows.next()? {
            if take(row.get(0)?)? {
                break 'scan;
            }
        }
    }
    Ok(keep)
}

/// Registers `cairn_contains_folded(text, term)`: whether `text`, lowercased as Rust (and
/// JavaScript) lowercase it, contains `term`, given lowercased. What [`Stage::matches`] does for
/// substrings, available to a scan inside SQLite.
pub(super) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS;
    conn.create_scalar_function("cairn_contains_folded", 2, flags, |ctx| {
        let text = ctx.get_raw(0).as_str_or_null()?.unwrap_or_default();
        let term = ctx.get_raw(1).as_str_or_null()?.unwrap_or_default();
        Ok(contains_folded(text, term))
    })
}

/// Whether `text`, lowercased, contains `term` (lowercased already). ASCII text, most of it,
/// is compared in place: lowercasing it cannot produce a character outside ASCII, so a term
/// holding one is not in it.
fn contains_folded(text: &str, term: &str) -> bool {
    if !text.is_ascii() {
        return Stage::Substrings.matches(&fold(text), term);
    }
    if !term.is_ascii() {
        return false;
    }
    term.is_empty() || text.as_bytes().windows(term.len()).any(|w| w.eq_ignore_ascii_case(term.as_bytes()))
}

/// `text` lowercased, without allocating when it has no uppercase letter (most observations
/// have a few; a scan calls this on every row).
fn fold(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(|c| c.is_uppercase()) { text.to_lowercase().into() } else { text.into() }
}

/// Entities holding every one of the (rare) FTS5 patterns, given with their rows, best summed
/// BM25 first.
///
/// Scoring a row costs several times finding it (BM25 reads the row's sizes and the phrase's
/// hits: ~5 µs a row at 100k entities, against ~2 µs to read its entity). With several
/// patterns, the entities holding them all are found first, unscored, and only their rows are
/// scored: most multi-word queries share few entities or none (then nothing is scored at all),
/// and the p99 of a two-word search at 100k entities was these scores (BENCHMARKS.md).
fn ranked_candidates(
    db: &Connection,
    graph: &str,
    table: &str,
    patterns: &[(String, Vec<i64>)],
) -> Result<Vec<String>> {
    // With several patterns, each is scored on its rows of the entities holding them all
    // (`?2`, `?4`, ...: JSON lists of row ids).
    let holding = match patterns.len() {
        0 | 1 => None,
        _ => match rows_of_entities_holding_all(db, graph, table, patterns)? {
            Some(rows) => Some(rows.iter().map(|r| serde_json::to_string(r).unwrap_or_default()).collect::<Vec<_>>()),
            None => return Ok(Vec::new()),
        },
    };
    let mut parts = Vec::new();
    for i in 0..patterns.len() {
        let among = match holding {
            Some(_) => format!(" AND rowid IN (SELECT value FROM json_each(?{}))", 2 * i + 3),
            None => String::new(),
        };
        parts.push(format!(
            "SELECT entity, {i} AS term, rank AS score FROM {table} WHERE {table} MATCH ?{} AND graph = ?1{among}",
            2 * i + 2
        ));
    }
    let sql = format!(
        "SELECT entity FROM (SELECT entity, term, min(score) AS best FROM ({}) GROUP BY entity, term)
         GROUP BY entity HAVING count(*) = {} ORDER BY sum(best), entity",
        parts.join(" UNION ALL "),
        patterns.len()
    );
    let mut stmt = db.prepare_cached(&sql)?;
    let mut args: Vec<&str> = vec![graph];
    for (i, (pattern, _)) in patterns.iter().enumerate() {
        args.push(pattern);
        if let Some(rows) = &holding {
            args.push(&rows[i]);
        }
    }
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// For each pattern, its rows (given) that belong to entities of `graph` holding every pattern,
/// each in some row; `None` if no entity does. Reads each row's entity, never the look-ups again.
fn rows_of_entities_holding_all(
    db: &Connection,
    graph: &str,
    table: &str,
    patterns: &[(String, Vec<i64>)],
) -> Result<Option<Vec<Vec<i64>>>> {
    // Read from the index's content table (FTS5's `_content`: `id` the row id, `c0` the graph,
    // `c1` the entity) rather than through the index, whose look-up by row id costs ~2.5 µs a
    // row against ~0.4 µs (500 rows at 100k entities: 1.3 ms against 0.2 ms).
    let mut stmt = db.prepare_cached(&format!(
        "SELECT id, c1 FROM {table}_content WHERE id IN (SELECT value FROM json_each(?1)) AND c0 = ?2"
    ))?;
    // The pattern with the fewest rows first: the candidates only shrink.
    let mut order: Vec<usize> = (0..patterns.len()).collect();
    order.sort_by_key(|&i| patterns[i].1.len());
    let mut holding: Option<BTreeSet<String>> = None;
    let mut rows: Vec<Vec<(i64, String)>> = vec![Vec::new(); patterns.len()];
    for i in order {
        // Serialising integers cannot fail.
        let ids = serde_json::to_string(&patterns[i].1).unwrap_or_default();
        let mut found = BTreeSet::new();
        for row in stmt.query_map(params![ids, graph], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
            let (rowid, entity) = row?;
            if holding.as_ref().is_none_or(|h| h.contains(&entity)) {
                found.insert(entity.clone());
                rows[i].push((rowid, entity));
            }
        }
        if found.is_empty() {
            return Ok(None);
        }
        holding = Some(found);
    }
    // Every entity kept holds each pattern; a row kept early may belong to one dropped later.
    let holding = holding.unwrap_or_default();
    Ok(Some(
        rows.into_iter()
            .map(|r| r.into_iter().filter(|(_, e)| holding.contains(e)).map(|(rowid, _)| rowid).collect())
            .collect(),
    ))
}

/// Whether every (lowercased) term is in the entity's name, type or an observation, matched the
/// way `stage` matches.
fn entity_matches_all(db: &Connection, graph: &str, stage: Stage, name: &str, terms: &[String]) -> Result<bool> {
    let mut texts = vec![name.to_lowercase()];
    if let Some(t) = db
        .prepare_cached("SELECT type FROM entities WHERE graph = ?1 AND name = ?2")?
        .query_row(params![graph, name], |r| r.get::<_, String>(0))
        .optional()?
    {
        texts.push(t.to_lowercase());
    }
    let mut stmt = db.prepare_cached("SELECT text FROM observations WHERE graph = ?1 AND entity = ?2")?;
    for t in stmt.query_map(params![graph, name], |r| r.get::<_, String>(0))? {
        texts.push(t?.to_lowercase());
    }
    Ok(terms.iter().all(|term| texts.iter().any(|t| stage.matches(t, term))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a stage does with one term: the FTS5 patterns it looks up, and whether it must
    /// still filter the candidates by the term.
    fn plan(stage: Stage, term: &str) -> (Vec<String>, bool) {
        let lookups = stage.lookups(term);
        let whole = stage.looks_up_whole(term, &lookups);
        (lookups.iter().map(Lookup::pattern).collect(), !whole)
    }

    #[test]
    fn how_each_stage_looks_a_term_up() {
        use Stage::{Substrings, WordStarts};
        #[rustfmt::skip]
        let cases: &[(Stage, &str, &[&str], bool)] = &[
            // stage      term         looked up as                   then filtered
            (WordStarts, "tea",        &["\"tea\"*"],                 false),
            (WordStarts, "Tea",        &["\"Tea\"*"],                 false),
            (WordStarts, "entity-42",  &["\"entity\"", "\"42\"*"],   true),
            (WordStarts, "tea.",       &["\"tea\""],                  true),
            (WordStarts, "@alice",     &["\"alice\"*"],               true),
            (WordStarts, "a",          &[],                           true),
            (WordStarts, "x-y",        &[],                           true),
            (WordStarts, "Émile",      &[],                           true),
            (WordStarts, "say\"hi",    &["\"say\"", "\"hi\"*"],       true),
            (Substrings, "lic",        &["\"lic\""],                  false),
            (Substrings, "li",         &[],                           true),
            (Substrings, "a\"b",       &["\"a\"\"b\""],               false),
            (Substrings, "Москва",     &["\"Москва\""],               false),
        ];
        for (stage, term, patterns, filtered) in cases {
            let expected: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            assert_eq!(plan(*stage, term), (expected, *filtered), "{stage:?} {term:?}");
        }
    }

    #[test]
    fn how_each_stage_matches_a_lowercased_text() {
        use Stage::{Substrings, WordStarts};
        #[rustfmt::skip]
        let cases: &[(Stage, &str, &str, bool)] = &[
            // stage      text                term     matches
            (WordStarts, "green tea",         "tea",   true),
            (WordStarts, "teapot",            "tea",   true),
            (WordStarts, "instead",           "tea",   false),
            (WordStarts, "@alice said",       "alice", true),
            (WordStarts, "well-known",        "known", true),
            (WordStarts, "émile",             "mile",  false),
            (Substrings, "instead",           "tea",   true),
            (Substrings, "alice",             "lic",   true),
            (Substrings, "bob",               "lic",   false),
        ];
        for (stage, text, term, matches) in cases {
            assert_eq!(stage.matches(text, term), *matches, "{stage:?} {text:?} {term:?}");
        }
    }

    #[test]
    fn the_scan_folds_case_in_every_script() {
        let conn = Connection::open_in_memory().unwrap();
        register_functions(&conn).unwrap();
        #[rustfmt::skip]
        let cases = [
            ("Émile",  "é",  true),
            ("émile",  "É",  false), // terms arrive lowercased
            ("Москва", "мо", true),
            ("Ω",      "ω",  true),
            ("ΣΟΦΙΑ",  "σ",  true),
            ("100%",   "%",  true),
            ("a_b",    "_",  true),
            ("Alice",  "bo", false),
            ("ALICE",  "li", true),
            ("ALICE",  "lî", false),
            ("\u{212a}elvin", "k", true), // the Kelvin sign lowercases to an ASCII k
            ("",       "",   true),
        ];
        for (text, term, found) in cases {
            let got: bool =
                conn.query_row("SELECT cairn_contains_folded(?1, ?2)", params![text, term], |r| r.get(0)).unwrap();
            assert_eq!(got, found, "{text:?} {term:?}");
        }
    }
}
