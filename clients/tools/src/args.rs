//! The arguments of each tool, as the reference server's schemas name them, plus Cairn's `expect`,
//! checked against the tool's input schema and refused in the reference server's words.

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use cairn::{Millis, ReadOptions, Validity};

use crate::error::ToolError;
use crate::schema;
use crate::shape::{RefEntity, RefRelation};
use crate::when;

/// A tool's arguments as JSON: an object.
pub use rmcp::model::JsonObject;

/// The arguments of `tool`, or the reference server's refusal: its SDK validates them with zod 4
/// and lists every problem with its path, `Invalid input: expected array, received object at
/// entities`, one per line.
pub(crate) fn arguments<T: DeserializeOwned>(tool: &str, args: JsonObject) -> Result<T, ToolError> {
    let args = Value::Object(args);
    let refuse = |detail: String| {
        ToolError::invalid(format!(
            "MCP error -32602: Input validation error: Invalid arguments for tool {tool}: {detail}"
        ))
    };
    if let Some(schema) = schema::input_schema(tool) {
        let mut problems = Vec::new();
        check(&schema, Some(&args), &mut String::new(), &mut problems);
        if !problems.is_empty() {
            return Err(refuse(problems.join("\n")));
        }
    }
    serde_json::from_value(args).map_err(|e| refuse(e.to_string()))
}

/// Checks `value` against the part of JSON Schema the tools use (`type`, `properties`,
/// `required`, `items`), as zod checks the schema it was made from: required properties in the
/// schema's order, then array items in order. A property not in `required` may be absent or null.
fn check(schema: &Value, value: Option<&Value>, path: &mut String, problems: &mut Vec<String>) {
    // Cairn's own options use `anyOf` (a time is a string or a number; an observation a string
    // or an object): the value must fit one of them.
    if let Some(choices) = schema.get("anyOf").and_then(Value::as_array) {
        let fits_one = choices.iter().any(|choice| {
            let mut found = Vec::new();
            check(choice, value, &mut path.clone(), &mut found);
            found.is_empty()
        });
        if !fits_one {
            let names: Vec<&str> = choices.iter().filter_map(|c| c.get("type").and_then(Value::as_str)).collect();
            let at = if path.is_empty() { String::new() } else { format!(" at {path}") };
            problems.push(format!("Invalid input: expected {}, received {}{at}", names.join(" or "), received(value)));
        }
        return;
    }
    let expected = schema.get("type").and_then(Value::as_str).unwrap_or_default();
    let fits = match (expected, value) {
        ("object", Some(Value::Object(_))) | ("array", Some(Value::Array(_))) | ("string", Some(Value::String(_))) => {
            true
        }
        ("integer", Some(Value::Number(n))) => n.is_i64() || n.is_u64(),
        ("boolean", Some(Value::Bool(_))) => true,
        ("number", Some(Value::Number(_))) => true,
        ("", _) => true,
        _ => false,
    };
    if !fits {
        let at = if path.is_empty() { String::new() } else { format!(" at {path}") };
        problems.push(format!("Invalid input: expected {expected}, received {}{at}", received(value)));
        return;
    }
    match value {
        Some(Value::Object(fields)) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let optional = properties.keys().map(String::as_str).filter(|k| !required.contains(k));
            for key in required.iter().copied().chain(optional) {
                let Some(property) = properties.get(key) else { continue };
                let field = fields.get(key);
                if !required.contains(&key) && field.is_none_or(Value::is_null) {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                check(property, field, path, problems);
                path.truncate(len);
            }
        }
        Some(Value::Array(items)) => {
            let Some(item_schema) = schema.get("items") else { return };
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check(item_schema, Some(item), path, problems);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// A JSON value's type as zod names what it received.
fn received(value: Option<&Value>) -> &'static str {
    match value {
        None => "undefined",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) => "object",
    }
}

/// `expect`: absent, null and the empty string all mean no condition (models fill every
/// optional field, often with "").
fn optional_version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.trim().is_empty()))
}

#[derive(Deserialize)]
pub(crate) struct CreateEntities {
    pub(crate) entities: Vec<RefEntity>,
    #[serde(default, deserialize_with = "optional_version")]
    pub(crate) expect: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Relations {
    pub(crate) relations: Vec<RefRelation>,
    #[serde(default, deserialize_with = "optional_version")]
    pub(crate) expect: Option<String>,
}

/// A world time (Cairn): ISO 8601 text or milliseconds since the epoch; absent, null and ""
/// mean none.
fn optional_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => when::parse(&s).map(Some).map_err(serde::de::Error::custom),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a time in whole milliseconds"))),
        Some(other) => Err(serde::de::Error::custom(format!("{other} is not a time"))),
    }
}

/// When a fact holds in the world (Cairn's `validFrom` / `validTo`).
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ValidityArgs {
    #[serde(default, deserialize_with = "optional_time")]
    pub(crate) valid_from: Option<Millis>,
    #[serde(default, deserialize_with = "optional_time")]
    pub(crate) valid_to: Option<Millis>,
}

impl ValidityArgs {
    pub(crate) fn validity(self) -> Validity {
        Validity { valid_from: self.valid_from, valid_to: self.valid_to }
    }
}

/// A `create_relations` item: the reference's relation, and optionally when it holds.
#[derive(Deserialize)]
pub(crate) struct RelationItem {
    #[serde(flatten)]
    pub(crate) relation: RefRelation,
    #[serde(flatten)]
    pub(crate) validity: ValidityArgs,
}

#[derive(Deserialize)]
pub(crate) struct CreateRelations {
    pub(crate) relations: Vec<RelationItem>,
    #[serde(default, deserialize_with = "optional_version")]
    pub(crate) expect: Option<String>,
}

/// One of `add_observations`' contents: the reference's string, or (Cairn) an object with
/// when it holds.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Timed {
        content: String,
        #[serde(flatten)]
        validity: ValidityArgs,
    },
}

impl Content {
    pub(crate) fn text(&self) -> &str {
        match self {
            Content::Text(t) | Content::Timed { content: t, .. } => t,
        }
    }

    pub(crate) fn validity(&self) -> Validity {
        match self {
            Content::Text(_) => Validity::default(),
            Content::Timed { validity, .. } => validity.validity(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AddItem {
    pub(crate) entity_name: String,
    pub(crate) contents: Vec<Content>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SupersedeItem {
    pub(crate) entity_name: String,
    pub(crate) replaces: String,
    pub(crate) content: String,
    #[serde(default, deserialize_with = "optional_time")]
    pub(crate) valid_from: Option<Millis>,
}

#[derive(Deserialize)]
pub(crate) struct SupersedeObservations {
    pub(crate) observations: Vec<SupersedeItem>,
    #[serde(default, deserialize_with = "optional_version")]
    pub(crate) expect: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SupersedeRelationItem {
    #[serde(flatten)]
    pub(crate) relation: RefRelation,
    pub(crate) replaces: RefRelation,
    #[serde(default, deserialize_with = "optional_time")]
    pub(crate) valid_from: Option<Millis>,
}

#[derive(Deserialize)]
pub(crate) struct SupersedeRelations {
    pub(crate) relations: Vec<SupersedeRelationItem>,
    #[serde(default, deserialize_with = "optional_version")]
    pub(crate) expect: Option<String>,
}

/// The read options (Cairn) of `read_graph`, `search_nodes` and `open_nodes`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadArgs {
    #[serde(default, deserialize_with = "optional_time")]
    pub(crate) as_of: Option<Millis>,
    #[serde(default, deserialize_with = "optional_version")]
    pub(crate) at_version: Option<String>,
    #[serde(default)]
    pub(crate) include_superseded: Option<bool>,
}

impl ReadArgs {
    pub(crate) fn options(&self) -> Result<ReadOptions, ToolError> {
        let at_version = self
            .at_version
            .as_deref()
            .map(|v| v.parse().map_err(|e: cairn::ParseIdError| ToolError::invalid(format!("invalid atVersion: {e}"))))
            .transpose()?;
        Ok(ReadOptions { as_of: self.as_of, at_version, include_superseded: self.include_superseded.unwrap_or(false) })
    }
}

#[derive(Deserialize)]
pub(crate) struct AddObservations {
    pub(crate) observations: Vec<AddItem>,
    #[serde(default, deserialize_with = "optional_version")]
    pub(crate) expect: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteEntities {
    pub(crate) entity_names: Vec<String>,
    #[serde(default, deserialize_with = "optional_version")]
    pub(crate) expect: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteItem {
    pub(crate) entity_name: String,
    pub(crate) observations: Vec<String>,
}

#[derive(Deserialize)]
pub(crate) struct DeleteObservations {
    pub(crate) deletions: Vec<DeleteItem>,
    #[serde(default, deserialize_with = "optional_version")]
    pub(crate) expect: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Query {
    pub(crate) query: String,
    #[serde(flatten)]
    pub(crate) read: ReadArgs,
}

#[derive(Deserialize)]
pub(crate) struct Names {
    pub(crate) names: Vec<String>,
    #[serde(flatten)]
    pub(crate) read: ReadArgs,
}

#[derive(Deserialize)]
pub(crate) struct Since {
    pub(crate) since: String,
    pub(crate) limit: Option<usize>,
}

#[derive(Deserialize)]
pub(crate) struct Name {
    pub(crate) name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Added {
    pub(crate) entity_name: String,
    pub(crate) added_observations: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(tool: &str, args: Value) -> String {
        let Value::Object(args) = args else { unreachable!("test arguments are objects") };
        match arguments::<Value>(tool, args) {
            Err(e) => e.message,
            Ok(_) => panic!("{tool} accepted its arguments"),
        }
    }

    #[test]
    fn problems_are_worded_and_placed_as_the_reference_words_them() {
        // Texts from @modelcontextprotocol/server-memory 2026.8.31 (MCP SDK 1.32.2, zod 4.6.7).
        let prefix = "MCP error -32602: Input validation error: Invalid arguments for tool";
        #[rustfmt::skip]
        let cases = [
            ("create_entities", json!({"entities": {}}),
             "create_entities: Invalid input: expected array, received object at entities"),
            ("create_entities", json!({}),
             "create_entities: Invalid input: expected array, received undefined at entities"),
            ("create_entities", json!({"entities": [{"name": "X"}]}),
             "create_entities: Invalid input: expected string, received undefined at entities[0].entityType\n\
              Invalid input: expected array, received undefined at entities[0].observations"),
            ("create_entities", json!({"entities": [{"name": 5, "entityType": "t", "observations": []}]}),
             "create_entities: Invalid input: expected string, received number at entities[0].name"),
            ("search_nodes", json!({"query": 5}),
             "search_nodes: Invalid input: expected string, received number at query"),
            ("open_nodes", json!({"names": "A"}),
             "open_nodes: Invalid input: expected array, received string at names"),
            ("delete_observations", json!({"deletions": [{"entityName": "A", "observations": [1]}]}),
             "delete_observations: Invalid input: expected string, received number at deletions[0].observations[0]"),
            ("create_entities", json!({"entities": [], "expect": 7}),
             "create_entities: Invalid input: expected string, received number at expect"),
        ];
        for (tool, args, detail) in cases {
            assert_eq!(refusal(tool, args), format!("{prefix} {detail}"));
        }
    }

    #[test]
    fn an_empty_or_null_expect_is_no_condition() {
        for expect in [json!(""), json!(null), json!("  ")] {
            let Value::Object(args) = json!({"entities": [], "expect": expect}) else { unreachable!() };
            let a: CreateEntities = arguments("create_entities", args).unwrap_or_else(|e| panic!("{}", e.message));
            assert_eq!(a.expect, None);
        }
        let Value::Object(args) = json!({"entities": []}) else { unreachable!() };
        assert_eq!(arguments::<CreateEntities>("create_entities", args).ok().and_then(|a| a.expect), None);
    }
}
