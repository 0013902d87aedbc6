//! The kefu binary's library half: settings, telemetry, the model registry, first-start bootstrap and the
//! [`Application`] composition root. `main.rs` only parses the command line.

/// The allocator of every program built on this crate (the `kefu` binary, `kefu-bench`, the tests): mimalloc rather
/// than glibc's, which handed the encoders' per-query buffers back to the kernel and faulted them in again each time
/// (bench/RESULTS.md, session 22). Here, in the composition root, so that the benchmarks time the product's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
