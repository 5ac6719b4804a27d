//! The tools `cairn mcp` offers: the reference memory server's nine, with its names, titles,
//! descriptions and schemas verbatim (`reference_tools.json`, taken from
//! `@modelcontextprotocol/server-memory` 2026.8.31), each write tool extended with an optional
//! `expect`; then Cairn's own.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

/// The reference server's tools, in its order.
const REFERENCE: &str = include_str!("reference_tools.json");

/// The write tools, which take `expect`.
pub(crate) const WRITE_TOOLS: [&str; 6] = [
    "create_entities",
    "create_relations",
    "add_observations",
    "delete_entities",
    "delete_observations",
    "delete_relations",
];

fn object(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

fn annotations(v: &Value) -> ToolAnnotations {
    let flag = |k: &str| v.get(k).and_then(Value::as_bool);
    let mut a = ToolAnnotations::new();
    a.read_only_hint = flag("readOnlyHint");
    a.destructive_hint = flag("destructiveHint");
    a.idempotent_hint = flag("idempotentHint");
    a.open_world_hint = flag("openWorldHint");
    a
}

const EXPECT_DESCRIPTION: &str = "Optional (Cairn): a version from an earlier read. The write is applied only if no change \
after that version touched the entities it names; otherwise it fails with the list of those changes and writes nothing.";

/// The input schema of a tool, if there is such a tool.
pub(crate) fn input_schema(tool: &str) -> Option<Value> {
    static ALL: std::sync::LazyLock<Vec<Tool>> = std::sync::LazyLock::new(all);
    ALL.iter().find(|t| t.name == tool).map(|t| Value::Object((*t.input_schema).clone()))
}

/// Every tool, reference tools first in the reference's order.
pub(crate) fn all() -> Vec<Tool> {
    let reference: Vec<Value> = serde_json::from_str(REFERENCE).unwrap_or_default();
    let mut tools = Vec::new();
    for t in reference {
        let name = t["name"].as_str().unwrap_or_default().to_owned();
        let mut input = t["inputSchema"].clone();
        if WRITE_TOOLS.contains(&name.as_str()) {
            input["properties"]["expect"] = json!({ "type": "string", "description": EXPECT_DESCRIPTION });
        }
        let mut tool = Tool::new(name.clone(), t["description"].as_str().unwrap_or_default().to_owned(), object(input))
            .with_title(t["title"].as_str().unwrap_or_default())
            .annotate(annotations(&t["annotations"]));
        if let Some(out) = t.get("outputSchema") {
            let mut out = out.clone();
            if name == "create_entities" {
                // The reference's next release adds it; Cairn fills it now (reply::created_entities).
                out["properties"]["skipped"] = json!({ "type": "array", "items": { "type": "string" } });
            }
            tool = tool.with_raw_output_schema(object(out));
        }
        tools.push(tool);
    }
    let read_only = ToolAnnotations::new().read_only(true).destructive(false).idempotent(true).open_world(false);
    let schema = |properties: Value, required: &[&str]| {
        object(json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": properties,
            "required": required,
        }))
    };
    tools.push(
        Tool::new(
            "memory_status",
            "How fresh this agent's view of shared memory is: the current version, whether it is synced with the relay, \
behind it, offline or local, and what other agents changed since this agent last read (who, and on which entities).",
            schema(json!({}), &[]),
        )
        .with_title("Memory Status")
        .annotate(read_only.clone()),
    );
    tools.push(
        Tool::new(
            "memory_changes_since",
            "List entity-level changes (who, when, what) made after a version returned by an earlier read or status.",
            schema(
                json!({
                    "since": { "type": "string", "description": "A version, like v42.1f2e3d4c" },
                    "limit": { "type": "integer", "description": "At most this many changes (default 200)" }
                }),
                &["since"],
            ),
        )
        .with_title("Memory Changes Since")
        .annotate(read_only.clone()),
    );
    tools.push(
        Tool::new(
            "memory_history",
            "Everything that ever happened to an entity, oldest first, including deleted observations and relations.",
            schema(json!({ "name": { "type": "string", "description": "The entity's name" } }), &["name"]),
        )
        .with_title("Memory History")
        .annotate(read_only),
    );
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_tools_come_first_with_their_schemas() {
        let tools = all();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(
            names,
            [
                "create_entities",
                "create_relations",
                "add_observations",
                "delete_entities",
                "delete_observations",
                "delete_relations",
                "read_graph",
                "search_nodes",
                "open_nodes",
                "memory_status",
                "memory_changes_since",
                "memory_history"
            ]
        );
        let search = &tools[7];
        assert_eq!(search.input_schema["required"], json!(["query"]));
        assert!(search.output_schema.is_some());
        assert!(tools[0].input_schema["properties"]["expect"].is_object());
        assert!(tools[6].input_schema["properties"]["expect"].is_null(), "reads take no expect");
    }
}
