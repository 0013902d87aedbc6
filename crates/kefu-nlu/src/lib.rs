//! Understanding without a language model, in milliseconds on one core: language detection ([`lang`]), intent
//! classification ([`intent`]), emotion ([`emotion`]), PII detection and reversible masking ([`pii`]), moderation
//! ([`moderation`]) and prompt-injection scoring ([`injection`]); [`Understander::understand`] runs them all on one
//! message and returns a typed [`Understanding`]. Measured by `kefu eval intent|emotion|pii|moderation`.

pub mod emotion;
pub mod eval;
pub mod injection;
pub mod intent;
pub mod lang;
mod matcher;
pub mod moderation;
pub mod pii;
pub mod text;
pub mod understand;

pub use intent::{
    Example, FirstStageInfo, IntentClassifier, IntentModel, IntentPrediction, SentenceEncoder,
    TrainConfig,
};
pub use pii::{Masked, PiiDetector, PiiKind, PiiSpan, Vault};
pub use understand::{Understander, Understanding};

#[derive(Debug, thiserror::Error)]
pub enum NluError {
    #[error("invalid training data: {0}")]
    BadTrainingFile(String),
    #[error("invalid model: {0}")]
    BadModel(String),
    #[error("sentence encoder failed: {0}")]
    Encoder(String),
    #[error("invalid word list: {0}")]
    BadWordList(String),
    #[error("the message is empty")]
    EmptyMessage,
    #[error("the message is {bytes} bytes; the limit is {limit}")]
    MessageTooLong { bytes: usize, limit: usize },
}
