//! Reproducible measurements behind `kefu eval intent|emotion|pii|moderation`.

pub mod emotion;
pub mod intent;
pub mod moderation;
pub mod pii;

pub use pii::{evaluate, Counts, PiiReport};
