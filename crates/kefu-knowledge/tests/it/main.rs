//! The knowledge service end to end on real storage (SQLite files, PostgreSQL) and the real local embedder.

mod pdf;

use std::sync::Arc;

use kefu_embed_local::LocalEmbedder;
use kefu_knowledge::service::{ImportFile, ImportTarget, SearchRequest};
use kefu_knowledge::{Knowledge, KnowledgeOptions};
use kefu_llm::Embedder;
use kefu_store::{KbJobStatus, NewTenant, Store};
use uuid::Uuid;

async fn sqlite() -> (Arc<dyn Store>, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let store = kefu_store_sql::SqliteStore::open(&dir.path().join("kefu.db"), 4)
        .await
        .unwrap();
    (Arc::new(store), dir)
}

/// A throwaway directory removed on drop (no tempfile crate needed for this).
mod tempdir {
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!("kefu-kb-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn tenant(store: &Arc<dyn Store>) -> Uuid {
    store
        .create_tenant(NewTenant {
            slug: format!("t-{}", Uuid::new_v4().simple()),
            name: "Shop".into(),
            customer_secret: "s".into(),
        })
        .await
        .unwrap()
        .id
}

async fn e5() -> Arc<dyn Embedder> {
    let path = kefu_testkit::models::test_model("e5-small").await[0].clone();
    Arc::new(
        tokio::task::spawn_blocking(move || LocalEmbedder::load(path, "e5-small"))
            .await
            .unwrap()
            .unwrap(),
    )
}

async fn live(
    store: Arc<dyn Store>,
    embedder: Option<Arc<dyn Embedder>>,
    opts: KnowledgeOptions,
) -> Arc<Knowledge> {
    let k = Arc::new(Knowledge::new(store, embedder, opts).unwrap());
    k.start(tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    k
}

fn file(source: &str, text: &str) -> ImportFile {
    ImportFile {
        source: source.into(),
        bytes: text.as_bytes().to_vec(),
        format: None,
    }
}

fn target(tenant: Uuid) -> ImportTarget {
    ImportTarget {
        tenant,
        collection: "help".into(),
        tags: vec![],
    }
}

/// The hits of a plain search (any error fails the test).
async fn hits(kb: &Knowledge, tenant: Uuid, q: &str) -> Vec<kefu_knowledge::service::SearchHit> {
    kb.search(tenant, &req(q)).await.unwrap().hits
}

fn req(q: &str) -> SearchRequest {
    SearchRequest {
        query: q.into(),
        ..Default::default()
    }
}

const RETURNS_ZH: &str = "# 退货政策\n\n收到商品后7天内，商品未使用且包装完好，可以在订单详情页申请无理由退货。\n\n## 退款时间\n\n仓库收到退货后，退款将在3到5个工作日内原路退回到您的支付账户。\n\n## 运费\n\n质量问题退货的运费由我们承担；无理由退货的运费由买家承担。\n";
const SHIPPING_EN: &str = "# Shipping\n\nOrders placed before 4 pm ship the same day from our Shanghai warehouse.\n\n## Delivery times\n\nStandard delivery takes 2 to 4 business days; express delivery arrives the next day in major cities.\n\n## International\n\nWe ship to Hong Kong, Singapore and the United States. Customs duties are paid by the recipient.\n";
const FAQ_CSV: &str = "question,answer,alternatives,tags\n如何修改收货地址？,订单发货前可以在“我的订单”里修改收货地址，发货后请联系客服。,地址填错了怎么办|能改地址吗,订单\nHow do I reset my password?,Tap “Forgot password” on the login page and follow the link we email you.,I forgot my password|can't log in,account\n";
const HELP_HTML: &str = "<html><head><title>会员积分</title><script>stealCookies()</script></head><body><h1>会员积分</h1><p>每消费1元累积1积分，100积分可抵扣1元。</p><script>alert('x')</script></body></html>";

#[tokio::test]
async fn a_folder_of_chinese_and_english_files_is_searchable_with_citations() {
    let (store, _dir) = sqlite().await;
    let t = tenant(&store).await;
    let kb = live(store.clone(), Some(e5().await), KnowledgeOptions::default()).await;
    for (name, text) in [
        ("returns.md", RETURNS_ZH),
        ("shipping.md", SHIPPING_EN),
        ("faq.csv", FAQ_CSV),
        ("points.html", HELP_HTML),
    ] {
        let r = kb.import(&target(t), file(name, text)).await;
        assert_eq!(r.status, "imported", "{name}: {r:?}");
    }
    let pdf = pdf::simple_pdf(&[
        "Warranty",
        "All electronics carry a two year warranty from the date of delivery.",
    ]);
    let r = kb
        .import(
            &target(t),
            ImportFile {
                source: "warranty.pdf".into(),
                bytes: pdf,
                format: None,
            },
        )
        .await;
    assert_eq!(r.status, "imported", "{r:?}");

    // Chinese question, paraphrased: the refund-time section, cited by heading path and lines.
    let res = kb.search(t, &req("退款多久能到账？")).await.unwrap();
    assert_eq!(res.mode, "hybrid");
    let top = &res.hits[0];
    assert!(top.text.contains("3到5个工作日"), "{:?}", res.hits);
    assert_eq!(
        top.headings,
        vec!["退货政策".to_string(), "退款时间".to_string()]
    );
    assert_eq!(top.citation.label, "退货政策 › 退款时间 (line 7)");
    assert_eq!(top.citation.source, "returns.md");
    assert!(top.scores.dense.is_some() && top.scores.fused > 0.0);

    // English, paraphrased, no shared keywords with "Delivery times" beyond "delivery".
    let res = kb
        .search(t, &req("how long until my parcel arrives"))
        .await
        .unwrap();
    assert!(
        res.hits[0].text.contains("2 to 4 business days"),
        "{:?}",
        res.hits
    );

    // An FAQ entry is found by one of its alternative questions and carries the curated answer.
    let res = kb.search(t, &req("地址填错了怎么办")).await.unwrap();
    let faq = res.hits[0].faq.as_ref().expect("an FAQ hit");
    assert_eq!(faq.question, "如何修改收货地址？");
    assert!(faq.answer.starts_with("订单发货前"));
    assert_eq!(res.hits[0].citation.label, "faq (row 1)");
    let res = kb.search(t, &req("I forgot my password")).await.unwrap();
    assert_eq!(
        res.hits[0].faq.as_ref().unwrap().question,
        "How do I reset my password?"
    );

    // PDF text layer, cited by page.
    let res = kb.search(t, &req("warranty on electronics")).await.unwrap();
    assert!(res.hits[0].text.contains("two year warranty"));
    assert_eq!(res.hits[0].citation.location.page_start, Some(1));

    // HTML: visible text only.
    let res = kb.search(t, &req("积分怎么抵扣")).await.unwrap();
    assert!(res.hits[0].text.contains("100积分可抵扣1元"));
    let res = kb.search(t, &req("stealCookies alert")).await.unwrap();
    assert!(res
        .hits
        .iter()
        .all(|h| !h.text.contains("stealCookies") && !h.text.contains("alert")));
    assert!(
        res.hits.iter().all(|h| h.scores.bm25.is_none()),
        "no keyword matches: {:?}",
        res.hits
    );

    // Scoped by language and collection.
    let res = kb
        .search(
            t,
            &SearchRequest {
                lang: Some("en".into()),
                ..req("退货")
            },
        )
        .await
        .unwrap();
    assert!(res.hits.iter().all(|h| h.lang == "en"));
    let res = kb
        .search(
            t,
            &SearchRequest {
                collections: vec!["other".into()],
                ..req("退货")
            },
        )
        .await
        .unwrap();
    assert!(res.hits.is_empty());
    // And by tenant.
    let other = tenant(&store).await;
    assert!(hits(&kb, other, "退货").await.is_empty());
}

#[tokio::test]
async fn reimport_replaces_exactly_its_chunks_reusing_unchanged_vectors_and_delete_removes_them() {
    let (store, _dir) = sqlite().await;
    let t = tenant(&store).await;
    let kb = live(store.clone(), Some(e5().await), KnowledgeOptions::default()).await;
    let first = kb.import(&target(t), file("returns.md", RETURNS_ZH)).await;
    assert_eq!(
        (first.status.as_str(), first.chunks, first.reused_vectors),
        ("imported", 3, 0)
    );
    let same = kb.import(&target(t), file("returns.md", RETURNS_ZH)).await;
    assert_eq!(same.status, "unchanged");

    let changed = RETURNS_ZH.replace("质量问题退货的运费由我们承担", "所有退货运费均由我们承担");
    let second = kb.import(&target(t), file("returns.md", &changed)).await;
    assert_eq!(
        (second.status.as_str(), second.chunks, second.reused_vectors),
        ("imported", 3, 2)
    );
    assert_eq!(second.document_id, first.document_id);
    let res = kb.search(t, &req("运费谁承担")).await.unwrap();
    assert!(res.hits[0].text.contains("所有退货运费均由我们承担"));
    assert!(
        res.hits.iter().all(|h| !h.text.contains("质量问题退货")),
        "the old chunk is gone"
    );
    assert_eq!(kb.stats().chunks, 3);

    assert!(kb
        .delete_document(t, first.document_id.unwrap())
        .await
        .unwrap());
    assert!(hits(&kb, t, "运费谁承担").await.is_empty());
    assert_eq!(kb.stats().chunks, 0);
    assert_eq!(kb.stats().vectors, 0);
}

#[tokio::test]
async fn bad_files_are_reported_one_by_one_and_nothing_of_them_is_searchable() {
    let (store, _dir) = sqlite().await;
    let t = tenant(&store).await;
    let opts = KnowledgeOptions {
        max_file_bytes: 64 * 1024,
        ..KnowledgeOptions::default()
    };
    let kb = live(store.clone(), None, opts).await;
    let files = vec![
        file("good.md", "# 保修\n\n电子产品保修两年。"),
        file("empty.txt", "   \n"),
        ImportFile {
            source: "binary.txt".into(),
            bytes: vec![0, 159, 146, 150, 1, 2, 3],
            format: None,
        },
        ImportFile {
            source: "broken.pdf".into(),
            bytes: b"%PDF-1.7\n garbage with no objects".to_vec(),
            format: None,
        },
        ImportFile {
            source: "locked.pdf".into(),
            bytes: b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer << /Encrypt 2 0 R >>\n%%EOF".to_vec(),
            format: None,
        },
        file(
            "faq.csv",
            "question,answer\n保修多久？,两年。\n,没有问题的答案\n",
        ),
        file("huge.txt", &"保修".repeat(40 * 1024)),
        file("notes.docx", "whatever"),
        file(
            "page.html",
            "<p>退货地址：上海市浦东新区</p><script>document.write('退货秘密')</script>",
        ),
    ];
    let job = kb.start_job(target(t), files).await.unwrap();
    let job = loop {
        let j = store.kb_get_job(t, job.id).await.unwrap().unwrap();
        if j.status != KbJobStatus::Running {
            break j;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!((job.status, job.done, job.total), (KbJobStatus::Done, 9, 9));
    let codes: Vec<(String, String)> = job
        .report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_owned(),
                r["error"]["code"]
                    .as_str()
                    .unwrap_or(r["status"].as_str().unwrap())
                    .to_owned(),
            )
        })
        .collect();
    let expect = [
        ("good.md", "imported"),
        ("empty.txt", "empty_file"),
        ("binary.txt", "not_text"),
        ("broken.pdf", "corrupt_file"),
        ("locked.pdf", "encrypted_pdf"),
        ("faq.csv", "invalid_faq"),
        ("huge.txt", "file_too_large"),
        ("notes.docx", "unsupported_type"),
        ("page.html", "imported"),
    ];
    assert_eq!(codes, expect.map(|(a, b)| (a.to_string(), b.to_string())));
    let faq_error = job.report[5]["error"]["message"].as_str().unwrap();
    assert!(
        faq_error.contains("row 2: the question is empty"),
        "{faq_error}"
    );

    let docs = kb.list_documents(t, None, 100, 0).await.unwrap();
    let mut names: Vec<&str> = docs.iter().map(|d| d.source.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["good.md", "page.html"]);
    assert!(hits(&kb, t, "保修多久")
        .await
        .iter()
        .all(|h| h.citation.source == "good.md"));
    assert!(hits(&kb, t, "退货秘密")
        .await
        .iter()
        .all(|h| !h.text.contains("秘密")));
    // Without an embedder, search is keyword-only and says so.
    let res = kb.search(t, &req("保修")).await.unwrap();
    assert_eq!(res.mode, "bm25");
    assert_eq!(res.hits[0].citation.source, "good.md");
    assert!(matches!(
        kb.search(t, &req("  ")).await,
        Err(kefu_knowledge::KnowledgeError::Invalid(_))
    ));
}

/// Two nodes on one PostgreSQL database: each keeps its own index current from the change log.
#[tokio::test]
async fn a_second_node_follows_the_change_log() {
    let url = kefu_testkit::pg::fresh_database().await;
    let a: Arc<dyn Store> = Arc::new(kefu_store_sql::PgStore::connect(&url, 4).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(kefu_store_sql::PgStore::connect(&url, 4).await.unwrap());
    let t = tenant(&a).await;
    let opts = KnowledgeOptions {
        poll_interval_ms: 3_600_000,
        ..KnowledgeOptions::default()
    };
    let node_a = live(a, None, opts.clone()).await;
    node_a
        .import(&target(t), file("shipping.md", SHIPPING_EN))
        .await;
    // Node B starts later: it builds from the database.
    let node_b = live(b, None, opts).await;
    assert!(hits(&node_b, t, "customs duties").await[0]
        .text
        .contains("Customs duties"));
    // A change made on A reaches B when B applies the log.
    let d = node_a
        .import(&target(t), file("returns.md", RETURNS_ZH))
        .await;
    assert!(hits(&node_b, t, "退款").await.is_empty());
    assert!(node_b.catch_up().await.unwrap() >= 1);
    assert!(!hits(&node_b, t, "退款").await.is_empty());
    node_a
        .delete_document(t, d.document_id.unwrap())
        .await
        .unwrap();
    // Until B applies the delete, the deleted chunks are still in its index but never shown (hydration fails).
    assert!(hits(&node_b, t, "退款").await.is_empty());
    node_b.catch_up().await.unwrap();
    assert_eq!(node_b.stats().chunks, node_a.stats().chunks);
    assert_eq!(node_b.stats().cursor, node_a.stats().cursor);
}

#[tokio::test]
async fn below_the_relevance_threshold_the_keyword_matches_are_returned_and_flagged() {
    let (store, _dir) = sqlite().await;
    let t = tenant(&store).await;
    let mut opts = KnowledgeOptions::default();
    opts.search.min_dense = Some(0.99);
    let kb = live(store.clone(), Some(e5().await), opts).await;
    kb.import(&target(t), file("shipping.md", SHIPPING_EN))
        .await;
    let res = kb.search(t, &req("Singapore")).await.unwrap();
    assert!(res.keyword_fallback);
    assert!(res.hits[0].text.contains("Singapore"));
    assert!(hits(&kb, t, "zebra crossing").await.is_empty());
}

/// Queries without Chinese use their own floor: the same English question keeps its passages under a low Latin
/// floor while a Chinese question still meets the strict general one.
#[tokio::test]
async fn queries_without_chinese_use_the_latin_floor() {
    let (store, _dir) = sqlite().await;
    let t = tenant(&store).await;
    let mut opts = KnowledgeOptions::default();
    opts.search.min_dense = Some(0.99);
    opts.search.min_dense_latin = Some(0.5);
    let kb = live(store.clone(), Some(e5().await), opts).await;
    kb.import(&target(t), file("shipping.md", SHIPPING_EN))
        .await;
    let res = kb
        .search(t, &req("Do you ship to Singapore?"))
        .await
        .unwrap();
    assert!(!res.keyword_fallback, "{res:?}");
    assert!(res.hits[0].text.contains("Singapore"));
    let res = kb.search(t, &req("可以寄到新加坡吗")).await.unwrap();
    assert!(res.keyword_fallback || res.hits.is_empty(), "{res:?}");
}

/// `kefu kb reindex`: chunks imported without an embedder get vectors, and the search becomes hybrid.
#[tokio::test]
async fn reembedding_fills_in_missing_vectors_once() {
    let (store, _dir) = sqlite().await;
    let t = tenant(&store).await;
    let keywords_only = Knowledge::new(store.clone(), None, KnowledgeOptions::default()).unwrap();
    let r = keywords_only
        .import(&target(t), file("shipping.md", SHIPPING_EN))
        .await;
    assert_eq!(r.status, "imported");
    let kb = live(store.clone(), Some(e5().await), KnowledgeOptions::default()).await;
    assert_eq!(
        (kb.stats().chunks, kb.stats().vectors),
        (r.chunks as u64, 0)
    );
    let mut progress = Vec::new();
    let n = kb
        .reembed(|done, total| progress.push((done, total)))
        .await
        .unwrap();
    assert_eq!(n, r.chunks);
    assert_eq!(progress, vec![(1, 1)]);
    assert_eq!(kb.stats().vectors, r.chunks as u64);
    let res = kb
        .search(t, &req("how long until my parcel arrives"))
        .await
        .unwrap();
    assert_eq!(res.mode, "hybrid");
    assert!(res.hits[0].text.contains("2 to 4 business days"));
    assert!(res.hits[0].scores.dense.is_some());
    assert_eq!(
        kb.reembed(|_, _| {}).await.unwrap(),
        0,
        "nothing is stale any more"
    );
}

/// A reranker reorders the fused candidates and its score is reported.
#[tokio::test]
async fn a_reranker_reorders_the_hits() {
    struct Prefer(&'static str);
    #[async_trait::async_trait]
    impl kefu_knowledge::service::Reranker for Prefer {
        fn name(&self) -> &str {
            "prefer"
        }
        async fn score(
            &self,
            _query: &str,
            hits: &[kefu_knowledge::service::SearchHit],
        ) -> Result<Vec<f32>, kefu_knowledge::KnowledgeError> {
            Ok(hits
                .iter()
                .map(|h| if h.text.contains(self.0) { 1.0 } else { 0.0 })
                .collect())
        }
    }
    let (store, _dir) = sqlite().await;
    let t = tenant(&store).await;
    let plain = live(store.clone(), None, KnowledgeOptions::default()).await;
    plain
        .import(&target(t), file("shipping.md", SHIPPING_EN))
        .await;
    // Two chunks match "ship": the reranker asks for the one BM25 ranked second.
    let query = SearchRequest {
        k: Some(1),
        ..req("ship")
    };
    let before = plain.search(t, &query).await.unwrap();
    let prefer = if before.hits[0].text.contains("Customs") {
        "same day"
    } else {
        "Customs"
    };
    assert_eq!(before.hits[0].scores.rerank, None);
    let reranked = Arc::new(
        Knowledge::new(store.clone(), None, KnowledgeOptions::default())
            .unwrap()
            .with_reranker(Arc::new(Prefer(prefer))),
    );
    reranked
        .start(tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    let after = reranked.search(t, &query).await.unwrap();
    assert_eq!(after.hits.len(), 1);
    assert!(after.hits[0].text.contains(prefer), "{:?}", after.hits);
    assert_eq!(after.hits[0].scores.rerank, Some(1.0));
}
