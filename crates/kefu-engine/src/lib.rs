//! The conversation engine.
//!
//! Every customer message is stored exactly once, then its turn runs: guard and understand (PII masking,
//! moderation, injection score, intent, emotion — `kefu-nlu`), retrieve (`kefu-knowledge`), decide
//! ([`decide`]: human-held → blocked → injection → hand-off → FAQ verbatim → … → grounded answer), generate with the
//! tenant's model chain (masked history, numbered passages, tone), check ([`check`]: placeholders restored, output
//! moderation on the stream, grounding) and record (the reply with its [`kefu_types::TurnTrace`]).
//!
//! Pure decisions live in [`decide`], [`check`] and [`prompt`] and are tested without IO; [`Engine`] and `turn.rs`
//! are the thin async driver.

mod business;
pub mod cache;
pub mod check;
pub mod decide;
pub mod desk;
mod engine;
pub mod flows;
pub mod hub;
pub mod intents;
pub mod prompt;
mod subscribe;
pub mod tools;
mod turn;
pub mod words;

pub use decide::{decide, Decision, Facts, Path, Policy, Tier, Tone};
pub use engine::{Accepted, Engine, EngineError, EngineParts, EngineSettings, UnderstanderSource};
pub use hub::{EventHub, LiveEvent, Signal};
pub use subscribe::Outgoing;
pub use tools::ToolSet;
