//! Tenants' intent classifiers: trained from labelled examples, stored as numbered versions in the database (so
//! every node serves the same one), put in use, and loaded back. The same path serves the admin API, `kefu nlu
//! train` and the demo's first start.

use std::sync::Arc;

use kefu_nlu::intent::ModelInfo;
use kefu_nlu::{Example, IntentModel, SentenceEncoder, TrainConfig};
use kefu_store::{IntentModelRecord, Store, StoreError};
use uuid::Uuid;

/// Most examples one training run takes (BANKING77 and CLINC150 have 10–15 thousand).
pub const MAX_EXAMPLES: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The examples or settings are unusable (named row, one class, …): nothing was stored.
    #[error("{0}")]
    Data(String),
    /// A sentence encoder could not be loaded or failed.
    #[error("{0}")]
    Encoders(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one training run asks for.
pub struct TrainRequest {
    pub examples: Vec<Example>,
    /// The encoders whose sentence vectors join the n-grams, already loaded (empty: n-grams only).
    pub encoders: Vec<Arc<dyn SentenceEncoder>>,
    pub config: TrainConfig,
    pub created_by: Option<Uuid>,
    /// Put the new version in use at once.
    pub activate: bool,
}

/// Trains on a blocking thread (seconds for n-grams; embedding every example first with encoders) and stores the
/// result as the tenant's next version. Bad data changes nothing.
pub async fn train_and_store(
    store: &dyn Store,
    tenant: Uuid,
    req: TrainRequest,
) -> Result<(IntentModelRecord, ModelInfo), TrainError> {
    if req.examples.len() > MAX_EXAMPLES {
        return Err(TrainError::Data(format!(
            "{} examples; at most {MAX_EXAMPLES} are taken in one training run",
            req.examples.len()
        )));
    }
    let TrainRequest {
        examples,
        encoders,
        config,
        created_by,
        activate,
    } = req;
    let model = tokio::task::spawn_blocking(move || {
        IntentModel::train(&examples, None, &encoders, &config)
    })
    .await
    .map_err(|e| TrainError::Data(format!("training stopped: {e}")))?
    .map_err(|e| match e {
        kefu_nlu::NluError::Encoder(m) => TrainError::Encoders(m),
        e => TrainError::Data(e.to_string()),
    })?;
    let info = serde_json::to_value(&model.info).expect("model info serialises");
    let record = store
        .add_intent_model(tenant, info, &model.to_bytes(), created_by, activate)
        .await?;
    Ok((record, model.info))
}

/// A stored version's model (`None` when the tenant has no such version).
pub async fn load(
    store: &dyn Store,
    tenant: Uuid,
    version: i32,
) -> Result<Option<IntentModel>, TrainError> {
    let Some((_, bytes)) = store.get_intent_model(tenant, version).await? else {
        return Ok(None);
    };
    IntentModel::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| TrainError::Data(e.to_string()))
}
