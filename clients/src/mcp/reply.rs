//! What a tool call answers over MCP: a [`cairn_tools::Reply`] as a tool result, and failures as
//! `isError` results. The shapes and words themselves live in `cairn-tools`, which the Python
//! package shares.

use rmcp::model::{CallToolResult, ContentBlock};

use cairn::Error;
use cairn_tools::Reply;

/// A tool's failure, shown to the model as an `isError` result (never a protocol error).
pub(super) struct ToolError(pub(super) String);

impl From<cairn_tools::ToolError> for ToolError {
    fn from(e: cairn_tools::ToolError) -> Self {
        ToolError(e.message)
    }
}

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        cairn_tools::ToolError::from(e).into()
    }
}

/// A reply as a tool result: its texts as text blocks, in order, and its structured content.
pub(super) fn result(reply: Reply) -> CallToolResult {
    let mut r = CallToolResult::success(reply.texts.into_iter().map(ContentBlock::text).collect());
    r.structured_content = Some(reply.structured);
    // The reference server leaves `isError` out on success.
    r.is_error = None;
    r
}
