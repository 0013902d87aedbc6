//! End-to-end tests through the real application: HTTP on a real port, real SQLite / PostgreSQL, the scripted
//! OpenAI-compatible fake model over real HTTP.

mod bad_input;
mod cli;
mod conversations;
mod desk;
mod engine;
mod helpers;
mod intents;
mod knowledge;
mod local;
mod resilience;
mod security;
mod shop;
mod streaming;
mod tickets;
