//! The reference memory server's tools (`@modelcontextprotocol/server-memory`) over a Cairn
//! replica, as JSON in and JSON out: their schemas, their argument checks and refusals in the
//! reference's words, and their answers in the reference's shapes plus Cairn's additions.
//!
//! `cairn mcp` serves them over MCP; the Python package (`clients/python`) offers them as
//! methods. Both go through [`call`], so the two cannot drift apart.

mod args;
mod call;
mod error;
pub mod reply;
pub mod schema;
pub mod shape;
pub mod text;
pub mod when;

pub use args::JsonObject;
pub use call::{call, touched_entities};
pub use error::{ErrorKind, ToolError};
pub use reply::{Reply, Seen};
