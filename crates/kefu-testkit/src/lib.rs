//! Test kit: a scripted OpenAI-compatible fake model server and a fake PyPI simple index, both on real ports, and
//! throwaway PostgreSQL databases.
//!
//! Used only as a dev-dependency. Nothing here is mocked in-process: the fake server speaks real HTTP and SSE,
//! and the databases are real.

pub mod fake_llm;
pub mod fake_pypi;
pub mod models;
pub mod pg;

pub use fake_llm::{fake_embedding, FakeLlm, Reply, FAKE_EMBEDDING_DIM};
pub use fake_pypi::FakePypi;
