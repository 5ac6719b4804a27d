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
pub const WRITE_TOOLS: [&str; 8] = [
    "create_entities",
    "create_relations",
    "add_observations",
    "delete_entities",
    "delete_observations",
    "delete_relations",
    "supersede_observations",
    "supersede_relations",
];

/// The reference's read tools, which take Cairn's read options.
pub const READ_TOOLS: [&str; 3] = ["read_graph", "search_nodes", "open_nodes"];

const TIME_DESCRIPTION: &str = "ISO 8601 (2024-03-01, 2024-03-01T09:30:00Z) or milliseconds since the Unix epoch";

/// A world time's schema: ISO 8601 text or milliseconds.
fn time(description: &str) -> Value {
    json!({
        "anyOf": [{ "type": "string" }, { "type": "integer" }],
        "description": format!("{description}: {TIME_DESCRIPTION}")
    })
}

/// Cairn's read options, added to the reference's read tools.
fn read_options() -> Value {
    json!({
        "asOf": time("Optional (Cairn): return the facts that were true at this world time (default: now)"),
        "atVersion": {
            "type": "string",
            "description": "Optional (Cairn): read the graph as this memory held it at a version an earlier call returned \
    (memory_status, memory_history), like v42.1f2e3d4c"
        },
        "includeSuperseded": {
            "type": "boolean",
            "description": "Optional (Cairn): also return superseded, expired and not yet valid facts (default: only facts true at the time read)"
        }
    })
}

/// What Cairn adds to the reference's graph output: when facts hold, what a read left out, and
/// supersede conflicts. Every addition is optional and present only when it has something to say.
fn extend_graph_output(out: &mut Value) {
    let validity = json!({
        "type": "array",
        "description": "Cairn: the observations that have a validity or replaced another, with when they hold",
        "items": { "type": "object" }
    });
    out["properties"]["entities"]["items"]["properties"]["observationValidity"] = validity;
    let relation = &mut out["properties"]["relations"]["items"]["properties"];
    relation["validFrom"] = json!({ "type": "string" });
    relation["validTo"] = json!({ "type": "string" });
    relation["replaces"] = json!({ "type": "object" });
    out["properties"]["leftOut"] = json!({
        "type": "object",
        "description": "Cairn: how many facts the read left out because they were not true at its time"
    });
    out["properties"]["conflicts"] = json!({
        "type": "array",
        "description": "Cairn: facts superseded concurrently by several facts that hold at once",
        "items": { "type": "object" }
    });
}

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
pub fn input_schema(tool: &str) -> Option<Value> {
    static ALL: std::sync::LazyLock<Vec<Tool>> = std::sync::LazyLock::new(all);
    ALL.iter().find(|t| t.name == tool).map(|t| Value::Object((*t.input_schema).clone()))
}

/// Every tool, reference tools first in the reference's order.
pub fn all() -> Vec<Tool> {
    let reference: Vec<Value> = serde_json::from_str(REFERENCE).unwrap_or_default();
    let mut tools = Vec::new();
    for t in reference {
        let name = t["name"].as_str().unwrap_or_default().to_owned();
        let mut input = t["inputSchema"].clone();
        if WRITE_TOOLS.contains(&name.as_str()) {
            input["properties"]["expect"] = json!({ "type": "string", "description": EXPECT_DESCRIPTION });
        }
        if READ_TOOLS.contains(&name.as_str())
            && let (Some(properties), Value::Object(options)) = (input["properties"].as_object_mut(), read_options())
        {
            properties.extend(options);
        }
        if name == "add_observations" {
            input["properties"]["observations"]["items"]["properties"]["contents"]["items"] = json!({
                "anyOf": [
                    { "type": "string" },
                    {
                        "type": "object",
                        "properties": {
                            "content": { "type": "string", "description": "The observation" },
                            "validFrom": time("Optional (Cairn): when it became true"),
                            "validTo": time("Optional (Cairn): when it stopped being true"),
                        },
                        "required": ["content"]
                    }
                ]
            });
        }
        if name == "create_relations" {
            let item = &mut input["properties"]["relations"]["items"]["properties"];
            item["validFrom"] = time("Optional (Cairn): when it became true");
            item["validTo"] = time("Optional (Cairn): when it stopped being true");
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
            if READ_TOOLS.contains(&name.as_str()) {
                extend_graph_output(&mut out);
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
    let write = ToolAnnotations::new().read_only(false).destructive(false).idempotent(false).open_world(false);
    let expect = json!({ "type": "string", "description": EXPECT_DESCRIPTION });
    let relation = |what: &str| {
        json!({
            "type": "object",
            "properties": {
                "from": { "type": "string", "description": format!("The name of the entity where the {what} relation starts") },
                "relationType": { "type": "string", "description": format!("The type of the {what} relation") },
                "to": { "type": "string", "description": format!("The name of the entity where the {what} relation ends") }
            },
            "required": ["from", "relationType", "to"]
        })
    };
    tools.push(
        Tool::new(
            "supersede_observations",
            "Replace observations that stopped being true, keeping them as history: each old observation ends at validFrom \
(default now) and the new one holds from then, linked to it. Only the observation named is retired. Reads return current \
facts by default; asOf and includeSuperseded show the past.",
            schema(
                json!({
                    "observations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "entityName": { "type": "string", "description": "The entity the observations belong to" },
                                "replaces": { "type": "string", "description": "The observation that stopped being true, exactly as stored" },
                                "content": { "type": "string", "description": "The observation that replaces it" },
                                "validFrom": time("Optional: when the change happened in the world (default: now)"),
                            },
                            "required": ["entityName", "replaces", "content"]
                        }
                    },
                    "expect": expect.clone(),
                }),
                &["observations"],
            ),
        )
        .with_title("Supersede Observations")
        .annotate(write.clone()),
    );
    let mut item = relation("new");
    item["properties"]["replaces"] = relation("old");
    item["properties"]["validFrom"] = time("Optional: when the change happened in the world (default: now)");
    item["required"] = json!(["from", "relationType", "to", "replaces"]);
    tools.push(
        Tool::new(
            "supersede_relations",
            "Replace relations that stopped being true, keeping them as history: each old relation (replaces) ends at \
validFrom (default now) and the new one holds from then, linked to it. Only the relation named is retired.",
            schema(json!({ "relations": { "type": "array", "items": item }, "expect": expect }), &["relations"]),
        )
        .with_title("Supersede Relations")
        .annotate(write),
    );
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
                "supersede_observations",
                "supersede_relations",
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
        assert!(tools[6].input_schema["properties"]["asOf"].is_object(), "reads take asOf");
        assert!(tools[9].input_schema["properties"]["expect"].is_object(), "supersede takes expect");
    }
}
