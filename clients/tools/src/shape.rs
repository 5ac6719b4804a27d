//! The reference memory server's JSON shapes (`@modelcontextprotocol/server-memory`), shared by
//! `cairn graph --json`, `cairn export`/`import` and the MCP tools, and the `memory.jsonl` format.

use serde::{Deserialize, Serialize};

/// An entity as the reference server writes it: `{"name","entityType","observations"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefEntity {
    pub name: String,
    #[serde(rename = "entityType")]
    pub entity_type: String,
    pub observations: Vec<String>,
}

impl RefEntity {
    /// The entity as a replica stores it: an observation given twice is stored once.
    pub fn stored(mut self) -> Self {
        let mut seen = std::collections::HashSet::new();
        self.observations.retain(|o| seen.insert(o.clone()));
        self
    }
}

/// A relation as the reference server writes it: `{"from","to","relationType"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRelation {
    pub from: String,
    pub to: String,
    #[serde(rename = "relationType")]
    pub relation_type: String,
}

/// A graph as the reference server's `read_graph` returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefGraph {
    pub entities: Vec<RefEntity>,
    pub relations: Vec<RefRelation>,
}

impl From<&cairn::Graph> for RefGraph {
    fn from(g: &cairn::Graph) -> Self {
        RefGraph {
            entities: g
                .entities
                .iter()
                .map(|e| RefEntity {
                    name: e.name.clone(),
                    entity_type: e.entity_type.clone(),
                    observations: e.observations.iter().map(|o| o.text.clone()).collect(),
                })
                .collect(),
            relations: g
                .relations
                .iter()
                .map(|r| RefRelation {
                    from: r.relation.from.clone(),
                    to: r.relation.to.clone(),
                    relation_type: r.relation.relation_type.clone(),
                })
                .collect(),
        }
    }
}

impl RefRelation {
    pub fn to_cairn(&self) -> cairn::Relation {
        cairn::Relation { from: self.from.clone(), relation_type: self.relation_type.clone(), to: self.to.clone() }
    }
}

/// One line of a reference `memory.jsonl` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum JsonlLine {
    Entity(RefEntity),
    Relation(RefRelation),
}

/// Parses one line of a `memory.jsonl` file; a clear reason when it is not one.
pub fn parse_line(line: &str) -> Result<JsonlLine, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON ({e})"))?;
    match value.get("type").and_then(|t| t.as_str()) {
        Some("entity" | "relation") => {}
        Some(other) => return Err(format!("unknown line type {other:?} (expected \"entity\" or \"relation\")")),
        None => return Err("no \"type\" field".into()),
    }
    serde_json::from_value(value).map_err(|e| format!("not a valid entity or relation line ({e})"))
}

/// The ops a `memory.jsonl` line stands for.
pub fn line_ops(line: &JsonlLine) -> Vec<cairn::Op> {
    match line {
        JsonlLine::Entity(e) => {
            let mut ops = vec![cairn::Op::CreateEntity {
                name: e.name.clone(),
                entity_type: e.entity_type.clone(),
                observations: Vec::new(),
            }];
            // Observations as separate operations: for an entity that already exists (a resumed
            // or repeated import), they are still added.
            ops.extend(e.observations.iter().map(|t| cairn::Op::AddObservation {
                entity: e.name.clone(),
                text: t.clone(),
                validity: cairn::Validity::default(),
            }));
            ops
        }
        JsonlLine::Relation(r) => {
            vec![cairn::Op::CreateRelation { relation: r.to_cairn(), validity: cairn::Validity::default() }]
        }
    }
}

/// The whole graph as `memory.jsonl` lines: entities first, then relations.
pub fn to_jsonl(g: &RefGraph) -> String {
    let mut out = String::new();
    for e in &g.entities {
        out.push_str(&serde_json::to_string(&JsonlLine::Entity(e.clone())).unwrap_or_default());
        out.push('\n');
    }
    for r in &g.relations {
        out.push_str(&serde_json::to_string(&JsonlLine::Relation(r.clone())).unwrap_or_default());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_in_the_reference_format() {
        let line = r#"{"type":"entity","name":"Alice","entityType":"person","observations":["Likes tea"]}"#;
        let parsed = parse_line(line).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), line);
        let rel = r#"{"type":"relation","from":"Alice","to":"ACME","relationType":"works_at"}"#;
        assert_eq!(serde_json::to_string(&parse_line(rel).unwrap()).unwrap(), rel);
        assert!(parse_line(r#"{"type":"entity","name":"Al"#).unwrap_err().contains("not valid JSON"));
        assert!(parse_line(r#"{"type":"thing"}"#).unwrap_err().contains("unknown line type"));
        assert!(parse_line(r#"{"type":"entity","name":3}"#).unwrap_err().contains("not a valid"));
    }
}
