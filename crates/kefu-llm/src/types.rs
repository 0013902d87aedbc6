//! Requests and stream events, independent of any provider's wire format.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// Tool calls an assistant message made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `Role::Tool`: which call this is the result of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// A function the model may call, described by a JSON schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text exactly as the model produced it.
    pub arguments: String,
}

/// Whether the model must call one of `tools`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (remote providers); local models answer in text.
    #[default]
    Auto,
    /// Answer with exactly one tool call whose arguments follow that tool's schema.
    Required,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// Filled in per link by the chain; providers send it as the `model` field.
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolChoice,
    /// Constrain the answer to JSON that matches this JSON schema (grammar-constrained on local models,
    /// `response_format: json_schema` on OpenAI-compatible services).
    pub json_schema: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Other(String),
}

impl FinishReason {
    pub fn parse(s: &str) -> Self {
        match s {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// A link of the chain started answering; `model` is `provider/model`.
    Started {
        model: String,
    },
    /// Generated text.
    Delta(String),
    /// A complete tool call (argument fragments already joined).
    ToolCall(ToolCall),
    Usage(Usage),
    Finished(FinishReason),
    /// The stream broke after text was sent and the chain is starting over: discard the partial text.
    Restart {
        reason: String,
    },
}

/// Per-tenant generation settings that travel with the resolved chain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationParams {
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub system_prompt: Option<String>,
}
