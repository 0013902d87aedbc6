//! Understanding without a language model. So far: PII detection and reversible masking ([`pii`]), measured by
//! `kefu eval pii`. Language, intent, emotion, moderation and injection checks join it (issue 5).

pub mod eval;
pub mod pii;

pub use pii::{Masked, PiiDetector, PiiKind, PiiSpan, Vault};
