//! Test kit: a scripted OpenAI-compatible fake model server on a real port, and throwaway PostgreSQL databases.
//!
//! Used only as a dev-dependency. Nothing here is mocked in-process: the fake server speaks real HTTP and SSE,
//! and the databases are real.

pub mod fake_llm;
pub mod pg;

pub use fake_llm::{FakeLlm, Reply};
