//! The conversation engine.
//!
//! Today's pipeline is the foundation's first answer path: accept a customer message exactly once, then answer it
//! with the tenant's model chain using the recent history, streaming tokens to subscribers and recording the reply
//! with its token counts and latency. Later stages (guard, understand, decide, check) slot in around [`turn`].
//!
//! Pure decisions (which history fits the budget, what prompt to send, what to say when every model fails) live in
//! [`prompt`] and are tested without IO; [`Engine`] is the thin async driver.

mod engine;
pub mod hub;
pub mod prompt;
mod subscribe;
mod turn;

pub use engine::{Accepted, Engine, EngineError, EngineSettings};
pub use hub::{EventHub, LiveEvent};
pub use subscribe::Outgoing;
