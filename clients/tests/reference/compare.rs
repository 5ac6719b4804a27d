//! One call's two answers: what Cairn must answer (from the reference's answer and the documented
//! rules), and every way Cairn's answer is not that.

use serde_json::{Value, json};

use super::generator::Call;
use super::model::{self, Added, Entity, Graph, Relation, SearchMode, short, short_text};

/// A server's answer to a `tools/call`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// A JSON-RPC error: `code: message`.
    Rpc(String),
    /// No answer: the transport failed or the call timed out.
    Broken(String),
    /// A `CallToolResult`: `isError`, the text of each content block, the structured content.
    Tool { is_error: Option<bool>, blocks: Vec<String>, structured: Option<Value> },
}

impl Reply {
    /// One line for a report.
    pub(crate) fn render(&self) -> String {
        match self {
            Reply::Rpc(e) => format!("JSON-RPC error {}", short_text(e, 300)),
            Reply::Broken(e) => format!("no answer: {e}"),
            Reply::Tool { is_error, blocks, .. } => {
                let first = blocks.first().map(String::as_str).unwrap_or("");
                let body = match serde_json::from_str::<Value>(first) {
                    Ok(v) if v.is_array() || v.is_object() => short(&v, 300),
                    _ => short_text(first, 300),
                };
                let extra =
                    if blocks.len() > 1 { format!(" (+{} more block(s))", blocks.len() - 1) } else { String::new() };
                match is_error {
                    Some(true) => format!("isError: {body}{extra}"),
                    Some(false) => format!("ok (isError: false): {body}{extra}"),
                    None => format!("ok: {body}{extra}"),
                }
            }
        }
    }
}

/// One way Cairn's answer differs from what it must be.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    /// The kind of difference (fixed words, so findings group by it).
    pub(crate) what: &'static str,
    /// What the reference answered or held, normalised as documented.
    pub(crate) reference: String,
    /// What Cairn answered or held.
    pub(crate) cairn: String,
}

fn finding(what: &'static str, reference: String, cairn: String) -> Finding {
    Finding { what, reference, cairn }
}

/// What Cairn must answer.
#[derive(Debug, Clone)]
pub(crate) enum Expect {
    /// Exactly this (JSON-RPC errors, broken transports).
    Same(Reply),
    /// An `isError` result with this one text block.
    Error(String),
    /// A success message of a delete tool.
    Message(String),
    /// A success with this payload (the text's JSON, normalised); the note says how it was
    /// derived, when not simply from the reference's answer.
    Json(Value, &'static str),
}

/// The key a tool's structured content wraps its payload in: `Some(None)` for the reads (the
/// payload is the structured content), `None` for tools without a JSON payload.
fn json_key(tool: &str) -> Option<Option<&'static str>> {
    match tool {
        "create_entities" => Some(Some("entities")),
        "create_relations" => Some(Some("relations")),
        "add_observations" => Some(Some("results")),
        "read_graph" | "search_nodes" | "open_nodes" => Some(None),
        _ => None,
    }
}

fn wrap(tool: &str, payload: &Value) -> Value {
    match json_key(tool) {
        Some(Some(k)) => json!({ k: payload }),
        _ => payload.clone(),
    }
}

fn is_read(tool: &str) -> bool {
    matches!(tool, "read_graph" | "search_nodes" | "open_nodes")
}

/// A payload in the reference's shape, or why not.
fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("not the reference's shape ({e}): {}", short(v, 200)))
}

/// The text's JSON, checked against the reference's format (pretty, key order) and against the
/// structured content.
fn json_body(tool: &str, blocks: &[String], structured: &Option<Value>) -> Result<Value, (&'static str, String)> {
    let text = blocks.first().map(String::as_str).unwrap_or("");
    let v: Value =
        serde_json::from_str(text).map_err(|e| ("text is not JSON", format!("{e}: {}", short_text(text, 200))))?;
    if model::pretty(&v) != text {
        return Err(("text is not formatted as JSON.stringify(value, null, 2)", short_text(text, 300)));
    }
    let want = wrap(tool, &v);
    if structured.as_ref() != Some(&want) {
        let got = structured.as_ref().map(|s| short(s, 200)).unwrap_or_else(|| "absent".into());
        return Err(("structuredContent is not the text's value", format!("{got}, text {}", short(&v, 200))));
    }
    Ok(v)
}

/// What Cairn must answer to `call`, given the reference's answer and the reference's canonical
/// graph just before the call. Also returns the relations the reference created that Cairn
/// must refuse (a missing endpoint). `Err` when the reference did not behave the way this test
/// assumes (a bug in the test, or a new reference version).
pub(crate) fn expect(
    call: &Call,
    graph: &Graph,
    phantom: &[Relation],
    reference: &Reply,
) -> Result<(Expect, Vec<Relation>), String> {
    let (is_error, blocks, structured) = match reference {
        Reply::Rpc(_) | Reply::Broken(_) => return Ok((Expect::Same(reference.clone()), vec![])),
        Reply::Tool { is_error, blocks, structured } => (is_error, blocks, structured),
    };
    if blocks.len() != 1 {
        return Err(format!("the reference answered {} content blocks", blocks.len()));
    }
    if *is_error == Some(true) {
        if structured.is_some() {
            return Err("the reference's error has structured content".into());
        }
        return Ok((Expect::Error(blocks[0].clone()), vec![]));
    }
    let tool = call.tool.as_str();
    if json_key(tool).is_none() {
        let want = json!({"success": true, "message": blocks[0]});
        if structured.as_ref() != Some(&want) {
            return Err(format!("the reference's {tool} has structured content {structured:?}"));
        }
        return Ok((Expect::Message(blocks[0].clone()), vec![]));
    }
    let v = json_body(tool, blocks, structured)
        .map_err(|(what, detail)| format!("the reference's answer: {what}: {detail}"))?;
    let expected = match tool {
        "create_entities" => json!(model::merge_entities(typed::<Vec<Entity>>(&v)?)),
        "create_relations" => {
            let created = typed::<Vec<Relation>>(&v)?;
            let asked: Vec<Relation> = typed(&call.args["relations"])?;
            if let Some(missing) = model::missing_endpoint(graph, &asked) {
                return Ok((Expect::Error(format!("Entity with name {missing} not found")), created));
            }
            json!(model::merge_relations(created))
        }
        "add_observations" => {
            let mut added = typed::<Vec<Added>>(&v)?;
            for a in &mut added {
                a.added_observations = model::merged(Entity {
                    name: String::new(),
                    entity_type: String::new(),
                    observations: std::mem::take(&mut a.added_observations),
                })
                .observations;
            }
            json!(added)
        }
        "read_graph" | "open_nodes" => json!(model::canonical(typed(&v)?, phantom)),
        "search_nodes" => {
            let query = call.args["query"].as_str().ok_or("a search without a string query succeeded")?;
            let got = model::canonical(typed(&v)?, phantom);
            let mut got_names: Vec<&str> = got.entities.iter().map(|e| e.name.as_str()).collect();
            got_names.sort();
            let mine = model::reference_search(graph, query);
            if mine != got_names {
                return Err(format!(
                    "the reference's search for {query:?} found {got_names:?}, this test's copy of its rule {mine:?}"
                ));
            }
            let (found, mode) = model::search(graph, query);
            let note = match mode {
                SearchMode::NoTerms => "a query of whitespace only: the reference's substring match",
                SearchMode::WordStarts => "documented word-start match over the reference's graph",
                SearchMode::Fallback => "no word-start match: documented substring fallback",
            };
            return Ok((Expect::Json(json!(found), note), vec![]));
        }
        _ => unreachable!(),
    };
    Ok((Expect::Json(expected, ""), vec![]))
}

/// The names `create_entities` skipped: those asked for but not among the entities created, or
/// asked for again in the same call.
fn skipped_names(call: &Call, created: &Value) -> Vec<String> {
    let mut left: Vec<&str> = created.as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
    let mut skipped = Vec::new();
    for e in call.args["entities"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default();
        match left.iter().position(|n| *n == name) {
            Some(i) => {
                left.remove(i);
            }
            None => skipped.push(name.to_owned()),
        }
    }
    skipped
}

/// The reference's next release's words for skipped entities (`skippedEntitiesNotice`).
fn skipped_notice(skipped: &[String]) -> Option<String> {
    let one = skipped.len() == 1;
    (!skipped.is_empty()).then(|| {
        format!(
            "Skipped {} {}: {}. {} observations were not added; use add_observations for existing entities.",
            skipped.len(),
            if one { "entity that already exists" } else { "entities that already exist" },
            skipped.join(", "),
            if one { "Its" } else { "Their" }
        )
    })
}

/// Every way Cairn's answer differs from `expect`.
pub(crate) fn check(call: &Call, expect: &Expect, cairn: &Reply) -> Vec<Finding> {
    let tool = call.tool.as_str();
    let mut out = Vec::new();
    let (is_error, mut blocks, structured) = match (expect, cairn) {
        (Expect::Same(want), got) => {
            if want != got {
                out.push(finding("JSON-RPC error vs result", want.render(), got.render()));
            }
            return out;
        }
        (_, Reply::Rpc(_) | Reply::Broken(_)) => {
            out.push(finding("result vs JSON-RPC error or no answer", render_expect(expect), cairn.render()));
            return out;
        }
        (_, Reply::Tool { is_error, blocks, structured }) => (*is_error, blocks.clone(), structured.clone()),
    };
    let mut structured = structured;
    // Documented: create_entities says what it skipped (the reference's next release does), in
    // `skipped` and, when there is any, a second text block.
    if let (Expect::Json(want, _), "create_entities", Some(Value::Object(fields))) = (expect, tool, structured.as_mut())
    {
        let skipped = skipped_names(call, want);
        let notice = skipped_notice(&skipped);
        if fields.remove("skipped") != Some(json!(skipped)) {
            out.push(finding("skipped", short(&json!(skipped), 200), "another list, or none".into()));
        }
        if let Some(notice) = notice {
            if blocks.get(1) == Some(&notice) {
                blocks.remove(1);
            } else {
                out.push(finding("the skipped notice", notice, short(&json!(blocks), 300)));
            }
        }
    }
    // Documented: a read may add a second block, starting `[cairn]`.
    if is_read(tool) && blocks.len() > 1 {
        let first = blocks.remove(0);
        blocks.retain(|b| !b.starts_with("[cairn]"));
        blocks.insert(0, first);
    }
    if blocks.len() != 1 {
        out.push(finding(
            "number of content blocks",
            "1".into(),
            format!("{}: {}", blocks.len(), short(&json!(blocks), 300)),
        ));
    }
    let got = Reply::Tool { is_error, blocks: blocks.clone(), structured: structured.clone() };
    match expect {
        Expect::Same(_) => unreachable!(),
        Expect::Error(text) => {
            if is_error != Some(true) {
                out.push(finding("cairn succeeds where it must fail", render_expect(expect), got.render()));
            } else if blocks.first() != Some(text) {
                out.push(finding(
                    "error text",
                    short_text(text, 400),
                    short_text(blocks.first().map(String::as_str).unwrap_or(""), 400),
                ));
            }
            if let (Some(true), Some(s)) = (is_error, &structured) {
                out.push(finding("error with structuredContent", "absent".into(), short(s, 200)));
            }
        }
        Expect::Message(text) => {
            if is_error == Some(true) {
                out.push(finding("cairn fails where it must succeed", render_expect(expect), got.render()));
                return out;
            }
            if is_error.is_some() {
                out.push(finding("isError on success", "absent".into(), format!("{is_error:?}")));
            }
            if blocks.first() != Some(text) {
                out.push(finding("message text", short_text(text, 200), got.render()));
            }
            let want = json!({"success": true, "message": text});
            if structured.as_ref() != Some(&want) {
                out.push(finding("structuredContent", short(&want, 200), format!("{structured:?}")));
            }
        }
        Expect::Json(want, note) => {
            if is_error == Some(true) {
                out.push(finding("cairn fails where it must succeed", render_expect(expect), got.render()));
                return out;
            }
            if is_error.is_some() {
                out.push(finding("isError on success", "absent".into(), format!("{is_error:?}")));
            }
            let v = match json_body(tool, &blocks, &structured) {
                Ok(v) => v,
                Err((what, detail)) => {
                    out.push(finding(what, "the reference's format".into(), detail));
                    match blocks.first().and_then(|t| serde_json::from_str(t).ok()) {
                        Some(v) => v,
                        None => return out,
                    }
                }
            };
            let normalised = match tool {
                "create_entities" => typed::<Vec<Entity>>(&v).map(|e| json!(e)),
                "create_relations" => typed::<Vec<Relation>>(&v).map(|r| json!(r)),
                "add_observations" => typed::<Vec<Added>>(&v).map(|a| json!(a)),
                // Best match first is not specified enough to check: compare as a set.
                "search_nodes" => typed::<Graph>(&v).map(|mut g| {
                    model::sort_entities(&mut g.entities);
                    json!(g)
                }),
                _ => typed::<Graph>(&v).map(|g| json!(g)),
            };
            match normalised {
                Err(e) => out.push(finding("result shape", "the reference's shape".into(), e)),
                Ok(got) if &got != want => {
                    let (r, c) = describe(want, &got);
                    let r = if note.is_empty() { r } else { format!("({note}) {r}") };
                    out.push(finding("result", r, c));
                }
                Ok(_) => {}
            }
        }
    }
    out
}

fn render_expect(e: &Expect) -> String {
    match e {
        Expect::Same(r) => r.render(),
        Expect::Error(t) => format!("isError: {}", short_text(t, 300)),
        Expect::Message(t) => format!("ok: {}", short_text(t, 300)),
        Expect::Json(v, _) => format!("ok: {}", short(v, 300)),
    }
}

/// The parts of two payloads that differ; for graphs, entity by entity.
fn describe(want: &Value, got: &Value) -> (String, String) {
    let (Ok(w), Ok(g)) = (serde_json::from_value::<Graph>(want.clone()), serde_json::from_value::<Graph>(got.clone()))
    else {
        return (short(want, 400), short(got, 400));
    };
    graph_diff(&w, &g)
}

/// What differs between two graphs: entities by name, relations, and order.
pub(crate) fn graph_diff(want: &Graph, got: &Graph) -> (String, String) {
    let (mut r, mut c) = (Vec::new(), Vec::new());
    let names = |g: &Graph| g.entities.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    let mut all = names(want);
    all.extend(names(got));
    all.sort();
    all.dedup();
    for n in &all {
        let a: Vec<&Entity> = want.entities.iter().filter(|e| &e.name == n).collect();
        let b: Vec<&Entity> = got.entities.iter().filter(|e| &e.name == n).collect();
        if a != b {
            let side = |x: &[&Entity]| {
                if x.is_empty() { format!("no {}", short(&json!(n), 60)) } else { short(&json!(x), 160) }
            };
            r.push(side(&a));
            c.push(side(&b));
        }
    }
    let only =
        |x: &Graph, y: &Graph| x.relations.iter().filter(|r| !y.relations.contains(r)).cloned().collect::<Vec<_>>();
    let (ra, rb) = (only(want, got), only(got, want));
    if !ra.is_empty() || !rb.is_empty() {
        r.push(format!("relations {}", short(&json!(ra), 200)));
        c.push(format!("relations {}", short(&json!(rb), 200)));
    }
    if r.is_empty() {
        if names(want) != names(got) {
            r.push(format!("entity order {}", short(&json!(names(want)), 200)));
            c.push(format!("entity order {}", short(&json!(names(got)), 200)));
        } else {
            r.push(format!("relation order {}", short(&json!(want.relations), 200)));
            c.push(format!("relation order {}", short(&json!(got.relations), 200)));
        }
    }
    (r.join("; "), c.join("; "))
}
