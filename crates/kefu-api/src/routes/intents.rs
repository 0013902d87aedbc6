//! The tenant's intent classifiers: train a new version from labelled examples, list versions, put one in use,
//! delete old ones, and try messages against the one in use. Supervisors and admins.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use kefu_engine::intents::TrainError;
use kefu_nlu::intent::ModelInfo;
use kefu_store::IntentModelRecord;
use kefu_types::{
    IntentModelView, IntentModels, IntentPredictRequest, IntentPredictionView, IntentPredictions,
    IntentScore, SetIntentModel, TrainIntentModelRequest,
};

use crate::auth::{authorize, Action, Auth};
use crate::error::ApiError;
use crate::extract::{check_text, ApiJson};
use crate::AppState;

/// A training file's text at most (BANKING77's training CSV is 0.8 MB).
pub(crate) const MAX_TRAINING_CHARS: usize = 8_000_000;
/// Messages one prediction request may try.
const MAX_PREDICT_TEXTS: usize = 20;

fn view(m: &IntentModelRecord, current: Option<i32>) -> IntentModelView {
    // The stored info is what training wrote; an unreadable one shows as an empty model rather than failing the list.
    let info: Option<ModelInfo> = serde_json::from_value(m.info.clone()).ok();
    IntentModelView {
        version: m.version,
        active: current == Some(m.version),
        labels: info.as_ref().map(|i| i.labels.clone()).unwrap_or_default(),
        out_of_scope_label: info.as_ref().and_then(|i| i.out_of_scope_label.clone()),
        encoders: info
            .as_ref()
            .map(|i| i.encoders.iter().map(|e| e.id.clone()).collect())
            .unwrap_or_default(),
        first_stage_encoders: info
            .as_ref()
            .map(|i| i.config.first_stage_encoders.clone())
            .unwrap_or_default(),
        examples: info.as_ref().map_or(0, |i| i.examples),
        threshold: info.as_ref().map_or(0.0, |i| i.threshold),
        calibration_accuracy: info.as_ref().and_then(|i| i.calibration_accuracy),
        calibration_oos_recall: info.as_ref().and_then(|i| i.calibration_oos_recall),
        bytes: m.bytes,
        created_by: m.created_by,
        created_at: m.created_at,
    }
}

async fn current(s: &AppState, tenant: uuid::Uuid) -> Result<Option<i32>, ApiError> {
    Ok(s.store
        .get_tenant(tenant)
        .await?
        .ok_or(ApiError::TenantNotFound)?
        .intent_model)
}

/// A version this tenant does not have is `404 not_found` naming the intent model.
fn no_such_model(e: kefu_store::StoreError) -> ApiError {
    match e {
        kefu_store::StoreError::NotFound => ApiError::NotFound("intent model"),
        e => e.into(),
    }
}

fn parse_version(v: &str) -> Result<i32, ApiError> {
    v.trim_start_matches('v')
        .parse::<i32>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or(ApiError::NotFound("intent model"))
}

/// The examples of a request: the JSON list or the file text, checked like `kefu nlu train` checks a file.
fn examples(req: &TrainIntentModelRequest) -> Result<Vec<kefu_nlu::Example>, ApiError> {
    let bad = |m: String| ApiError::InvalidTrainingData(m);
    match (&req.data, req.examples.is_empty()) {
        (Some(_), false) => Err(bad("give `examples` or `data`, not both".into())),
        (None, true) => Err(bad("no examples: give `examples` or `data`".into())),
        (None, false) => {
            let examples: Vec<kefu_nlu::Example> = req
                .examples
                .iter()
                .map(|e| kefu_nlu::Example::new(e.text.as_str(), e.intent.as_str()))
                .collect();
            kefu_nlu::intent::validate_examples(&examples).map_err(|e| bad(e.to_string()))?;
            Ok(examples)
        }
        (Some(data), true) => {
            check_text("data", data, MAX_TRAINING_CHARS)?;
            let format = match req.format.as_deref() {
                Some(f @ ("csv" | "json" | "jsonl")) => f,
                Some(other) => {
                    return Err(ApiError::InvalidRequest(format!(
                        "`format` {other:?}: expected csv, json or jsonl"
                    )))
                }
                None => match data.trim_start().chars().next() {
                    Some('[') => "json",
                    Some('{') => "jsonl",
                    _ => "csv",
                },
            };
            kefu_nlu::intent::parse_examples(&format!("data.{format}"), data.as_bytes())
                .map_err(|e| bad(e.to_string()))
        }
    }
}

/// The tenant's intent classifiers, newest first, and the one in use.
#[utoipa::path(get, path = "/v1/admin/intent-models", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = IntentModels), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn list_intent_models(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<IntentModels>, ApiError> {
    authorize(&p, Action::ManageIntents)?;
    let current = current(&s, p.tenant()).await?;
    let models = s.store.list_intent_models(p.tenant()).await?;
    Ok(Json(IntentModels {
        current,
        models: models.iter().map(|m| view(m, current)).collect(),
    }))
}

/// Train an intent classifier from labelled examples and store it as the tenant's next version (in use at once
/// unless `activate` is false; other nodes switch within seconds). Training takes seconds for n-grams and about
/// 30 ms per example more with a sentence encoder, and answers when it is done. Bad data (an unknown column, one
/// intent only, duplicate or conflicting rows) is `422 invalid_training_data` naming the row, and nothing is
/// stored.
#[utoipa::path(post, path = "/v1/admin/intent-models", tag = "admin", security(("bearer" = [])),
    request_body = TrainIntentModelRequest,
    responses((status = 201, body = IntentModelView), (status = 403, body = kefu_types::ErrorBody),
              (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn train_intent_model(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<TrainIntentModelRequest>,
) -> Result<(StatusCode, Json<IntentModelView>), ApiError> {
    authorize(&p, Action::ManageIntents)?;
    let examples = examples(&req)?;
    let config = match &req.config {
        Some(c) => kefu_nlu::TrainConfig::with_overrides(c)
            .map_err(|e| ApiError::InvalidTrainingData(e.to_string()))?,
        None => kefu_nlu::TrainConfig::default(),
    };
    let (record, _) = s
        .engine
        .train_intent_model(
            p.tenant(),
            examples,
            req.encoders.as_deref(),
            config,
            p.staff_id(),
            req.activate.unwrap_or(true),
        )
        .await
        .map_err(|e| match e {
            TrainError::Data(m) => ApiError::InvalidTrainingData(m),
            TrainError::Encoders(m) => ApiError::EncoderUnavailable(m),
            TrainError::Store(e) => e.into(),
        })?;
    let current = current(&s, p.tenant()).await?;
    tracing::info!(version = record.version, "intent model trained");
    Ok((StatusCode::CREATED, Json(view(&record, current))))
}

/// One stored version.
#[utoipa::path(get, path = "/v1/admin/intent-models/{version}", tag = "admin", security(("bearer" = [])),
    params(("version" = i32, Path, description = "Version number")),
    responses((status = 200, body = IntentModelView), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn get_intent_model(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(version): Path<String>,
) -> Result<Json<IntentModelView>, ApiError> {
    authorize(&p, Action::ManageIntents)?;
    let version = parse_version(&version)?;
    let models = s.store.list_intent_models(p.tenant()).await?;
    let m = models
        .iter()
        .find(|m| m.version == version)
        .ok_or(ApiError::NotFound("intent model"))?;
    Ok(Json(view(m, current(&s, p.tenant()).await?)))
}

/// Put a version in use (`null`: answer without intents). Every node switches within seconds (this one at once).
#[utoipa::path(put, path = "/v1/admin/intent-models/current", tag = "admin", security(("bearer" = [])),
    request_body = SetIntentModel,
    responses((status = 200, body = IntentModels), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn set_intent_model(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<SetIntentModel>,
) -> Result<Json<IntentModels>, ApiError> {
    authorize(&p, Action::ManageIntents)?;
    s.store
        .set_intent_model(p.tenant(), req.version)
        .await
        .map_err(no_such_model)?;
    s.engine.understanding_changed(p.tenant());
    list_intent_models(State(s), Auth(p)).await
}

/// Delete a version that is not in use (`409` while it is).
#[utoipa::path(delete, path = "/v1/admin/intent-models/{version}", tag = "admin", security(("bearer" = [])),
    params(("version" = i32, Path, description = "Version number")),
    responses((status = 204), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 409, body = kefu_types::ErrorBody)))]
pub(crate) async fn delete_intent_model(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(version): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&p, Action::ManageIntents)?;
    let version = parse_version(&version)?;
    s.store
        .delete_intent_model(p.tenant(), version)
        .await
        .map_err(no_such_model)?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the classifier in use makes of up to 20 messages (PII masked first, as in a conversation).
#[utoipa::path(post, path = "/v1/admin/intent-models/predict", tag = "admin", security(("bearer" = [])),
    request_body = IntentPredictRequest,
    responses((status = 200, body = IntentPredictions), (status = 403, body = kefu_types::ErrorBody),
              (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn predict_intents(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<IntentPredictRequest>,
) -> Result<Json<IntentPredictions>, ApiError> {
    authorize(&p, Action::ManageIntents)?;
    if req.texts.is_empty() || req.texts.len() > MAX_PREDICT_TEXTS {
        return Err(ApiError::InvalidRequest(format!(
            "`texts` must hold 1 to {MAX_PREDICT_TEXTS} messages"
        )));
    }
    for t in &req.texts {
        check_text("texts", t, s.settings.max_message_chars)?;
        if t.trim().is_empty() {
            return Err(ApiError::EmptyMessage);
        }
    }
    let version = current(&s, p.tenant()).await?;
    let u = s.engine.understander(p.tenant()).await;
    // Sentence encoders take tens of milliseconds a message: off the async workers.
    let predictions = tokio::task::spawn_blocking(move || {
        req.texts
            .into_iter()
            .map(|text| {
                let r = u.understand(&text).map_err(|e| e.to_string())?;
                Ok(r.intent.map(|i| IntentPredictionView {
                    text,
                    intent: i.intent,
                    confidence: i.confidence,
                    out_of_scope: i.out_of_scope,
                    support: i.support,
                    top: i
                        .top
                        .into_iter()
                        .map(|(intent, probability)| IntentScore {
                            intent,
                            probability,
                        })
                        .collect(),
                }))
            })
            .collect::<Result<Vec<_>, String>>()
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(ApiError::InvalidRequest)?;
    Ok(Json(IntentPredictions {
        version: predictions
            .iter()
            .all(Option::is_some)
            .then_some(version)
            .flatten(),
        predictions: predictions.into_iter().flatten().collect(),
    }))
}
