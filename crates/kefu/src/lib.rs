//! The kefu binary's library half: settings, telemetry, the model registry, first-start bootstrap and the
//! [`Application`] composition root. `main.rs` only parses the command line.

pub mod app;
pub mod bootstrap;
pub mod eval;
pub mod eval_conversations;
pub mod kb;
pub mod local;
pub mod models;
pub mod nlu;
pub mod progress;
pub mod settings;
pub mod telemetry;
pub mod tools_http;

pub use app::Application;
pub use settings::{Overrides, Settings};
