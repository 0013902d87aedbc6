//! Browser end-to-end: the demo (shop, knowledge base, the extractive stand-in model) served by the real
//! application, and `web/e2e/desk.mjs` driving Debian's Chromium through playwright-core as a customer in the
//! widget and an agent in the console. Needs `chromium` and `web/node_modules`, so it is ignored by a plain
//! `cargo test`; `cargo xtask ci` installs both and runs it (`cargo test -p kefu --test e2e -- --ignored`).
//! Screenshots land in `target/e2e-screenshots/`.

use std::path::PathBuf;

use kefu::eval_conversations::{extractive_llm, DemoApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and web/node_modules: run by `cargo xtask ci`"]
async fn a_customer_and_an_agent_in_the_browser() {
    let work = std::env::temp_dir().join(format!("kefu-e2e-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).unwrap();
    let llm = extractive_llm().await.unwrap();
    let demo = DemoApp::start(
        &work,
        &llm,
        "embedder = \"\"\nauto_pull = false\n",
        "demo",
        30,
    )
    .await
    .unwrap();
    let creds = std::fs::read_to_string(work.join("bootstrap.env")).unwrap();
    let get = |k: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{k} in bootstrap.env"))
            .to_owned()
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let shots = target.join("e2e-screenshots");
    let mut node = std::process::Command::new("node");
    node.arg("e2e/desk.mjs")
        .current_dir(root.join("web"))
        .env("KEFU_E2E_BASE", &demo.base)
        .env("KEFU_E2E_TENANT", "demo")
        .env("KEFU_E2E_AGENT_EMAIL", get("KEFU_DEMO_AGENT_EMAIL"))
        .env("KEFU_E2E_AGENT_PASSWORD", get("KEFU_DEMO_AGENT_PASSWORD"))
        .env("KEFU_E2E_ADMIN_EMAIL", get("KEFU_ADMIN_EMAIL"))
        .env("KEFU_E2E_ADMIN_PASSWORD", get("KEFU_ADMIN_PASSWORD"))
        .env("KEFU_E2E_SCREENSHOTS", &shots);
    // The server keeps running on the runtime's workers while the browser test blocks this one.
    let status = tokio::task::spawn_blocking(move || node.status())
        .await
        .unwrap()
        .expect("running node");
    demo.stop().await;
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        status.success(),
        "the browser test failed; screenshots in {}",
        shots.display()
    );
}
