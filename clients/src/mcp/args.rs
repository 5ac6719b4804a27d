//! The arguments of each tool, as the reference server's schemas name them, plus Cairn's `expect`.

use rmcp::model::JsonObject;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::reply::ToolError;
use crate::shape::{RefEntity, RefRelation};

pub(super) fn arguments<T: DeserializeOwned>(tool: &str, args: JsonObject) -> Result<T, ToolError> {
    serde_json::from_value(Value::Object(args)).map_err(|e| {
        ToolError(format!("MCP error -32602: Input validation error: Invalid arguments for tool {tool}: {e}"))
    })
}

#[derive(Deserialize)]
pub(super) struct CreateEntities {
    pub(super) entities: Vec<RefEntity>,
    pub(super) expect: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Relations {
    pub(super) relations: Vec<RefRelation>,
    pub(super) expect: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AddItem {
    pub(super) entity_name: String,
    pub(super) contents: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct AddObservations {
    pub(super) observations: Vec<AddItem>,
    pub(super) expect: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteEntities {
    pub(super) entity_names: Vec<String>,
    pub(super) expect: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteItem {
    pub(super) entity_name: String,
    pub(super) observations: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct DeleteObservations {
    pub(super) deletions: Vec<DeleteItem>,
    pub(super) expect: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Query {
    pub(super) query: String,
}

#[derive(Deserialize)]
pub(super) struct Names {
    pub(super) names: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct Since {
    pub(super) since: String,
    pub(super) limit: Option<usize>,
}

#[derive(Deserialize)]
pub(super) struct Name {
    pub(super) name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Added {
    pub(super) entity_name: String,
    pub(super) added_observations: Vec<String>,
}
