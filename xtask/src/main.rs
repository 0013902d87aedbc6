//! `cargo xtask <task>`: everything that is not a plain cargo command.
//!
//! - `ci`         — the full gate CI runs: fmt, clippy (-D warnings), architecture invariants, OpenAPI drift, the web
//!   apps (build drift, type check), all tests, the evals, and the browser end-to-end test.
//! - `web`        — rebuild the widget and console into `web/dist/` (embedded by the binary).
//! - `invariants` — crate dependency rules from ARCHITECTURE.md, checked with `cargo tree`.
//! - `openapi`    — regenerate `docs/openapi.json` from the code.
//! - `bench-api`  — the send-message load benchmark and the idle WebSocket memory benchmark (see bench/).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// (crate, crates it must not depend on, even transitively). Keep in sync with ARCHITECTURE.md.
const INVARIANTS: &[(&str, &[&str])] = &[
    ("kefu-types", &["axum", "sqlx", "tokio"]),
    ("kefu-store", &["axum", "sqlx", "reqwest"]),
    ("kefu-store-sql", &["axum", "reqwest"]),
    ("kefu-llm", &["axum", "sqlx", "reqwest"]),
    ("kefu-llm-openai", &["axum", "sqlx"]),
    ("kefu-models", &["axum", "sqlx"]),
    (
        "kefu-llm-local",
        &["axum", "sqlx", "reqwest", "candle-core"],
    ),
    (
        "kefu-embed-local",
        &["axum", "sqlx", "reqwest", "llama-cpp-2"],
    ),
    (
        "kefu-knowledge",
        &["axum", "sqlx", "reqwest", "candle-core", "llama-cpp-2"],
    ),
    (
        "kefu-nlu",
        &["axum", "sqlx", "reqwest", "candle-core", "llama-cpp-2"],
    ),
    (
        "kefu-engine",
        &["axum", "sqlx", "reqwest", "candle-core", "llama-cpp-2"],
    ),
    (
        "kefu-api",
        &["sqlx", "reqwest", "candle-core", "llama-cpp-2"],
    ),
    (
        "kefu-shop",
        &["sqlx", "reqwest", "candle-core", "llama-cpp-2"],
    ),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(name: &str, mut cmd: Command) -> anyhow::Result<()> {
    eprintln!("==> {name}");
    let status = cmd.status().with_context(|| format!("running {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

fn invariants() -> anyhow::Result<()> {
    eprintln!("==> architecture invariants");
    let mut broken = Vec::new();
    for (krate, forbidden) in INVARIANTS {
        for dep in *forbidden {
            let out = cargo()
                .args(["tree", "-p", krate, "-e", "normal", "-i", dep])
                .output()?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            // A package that is in the workspace graph only through dev-dependencies prints nothing.
            if out.status.success() && !out.stdout.is_empty() {
                broken.push(format!(
                    "{krate} depends on {dep}:\n{}",
                    String::from_utf8_lossy(&out.stdout)
                ));
            } else if !out.status.success() && !stderr.contains("did not match any packages") {
                bail!("cargo tree -p {krate} -i {dep} failed unexpectedly: {stderr}");
            }
        }
    }
    if !broken.is_empty() {
        bail!("architecture invariants broken:\n{}", broken.join("\n"));
    }
    eprintln!(
        "    {} rules hold",
        INVARIANTS.iter().map(|(_, f)| f.len()).sum::<usize>()
    );
    Ok(())
}

fn generated_openapi() -> anyhow::Result<String> {
    let out = cargo()
        .args(["run", "--quiet", "-p", "kefu", "--", "openapi"])
        .output()?;
    if !out.status.success() {
        bail!(
            "kefu openapi failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn openapi(check: bool) -> anyhow::Result<()> {
    eprintln!(
        "==> openapi {}",
        if check { "drift check" } else { "regenerate" }
    );
    let path = root().join("docs/openapi.json");
    let doc = generated_openapi()?;
    if check {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != doc {
            bail!("docs/openapi.json is out of date: run `cargo xtask openapi` and commit it");
        }
    } else {
        std::fs::create_dir_all(path.parent().expect("docs"))?;
        std::fs::write(&path, doc)?;
    }
    Ok(())
}

fn npm(args: &[&str]) -> Command {
    let mut c = Command::new("npm");
    c.args(args).current_dir(root().join("web"));
    c
}

/// Installs the web apps' pinned tools (package-lock.json), type-checks, and rebuilds `web/dist/`. With `check`,
/// fails when the committed build differs from what the sources produce.
fn web(check: bool) -> anyhow::Result<()> {
    run("npm ci (web)", npm(&["ci", "--no-audit", "--no-fund"]))?;
    run("tsc --noEmit (web)", npm(&["run", "typecheck"]))?;
    let dist = root().join("web/dist");
    let read = || -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let mut files = Vec::new();
        for e in std::fs::read_dir(&dist)? {
            let e = e?;
            files.push((
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path())?,
            ));
        }
        files.sort();
        Ok(files)
    };
    let before = read().unwrap_or_default();
    run("esbuild (web)", npm(&["run", "build"]))?;
    if check && read()? != before {
        bail!("web/dist is out of date: run `cargo xtask web` and commit it");
    }
    Ok(())
}

fn ci() -> anyhow::Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run("cargo fmt --check", fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run("cargo clippy -D warnings", clippy)?;
    invariants()?;
    openapi(true)?;
    web(true)?;
    let mut test = cargo();
    test.args(["test", "--workspace", "--no-fail-fast"]);
    run("cargo test --workspace", test)?;
    retrieval_eval_slice()?;
    conversation_eval()?;
    let mut e2e = cargo();
    e2e.args(["test", "-p", "kefu", "--test", "e2e", "--", "--ignored"]);
    run("browser end-to-end (Playwright + Chromium)", e2e)?;
    eprintln!("==> all checks passed");
    Ok(())
}

/// `cargo run -p kefu -- ARGS`, reusing the models the tests pulled (see .ci/run).
fn kefu(args: &[&str]) -> Command {
    let mut c = cargo();
    c.args(["run", "--quiet", "-p", "kefu", "--"]).args(args);
    if let Some(dir) = std::env::var_os("KEFU_TEST_MODELS_DIR") {
        c.env("KEFU__MODELS__DIR", dir);
    }
    c
}

/// Retrieval quality on a small slice (the Chinese shop FAQ and 200 StackFAQ test queries) with the real local
/// embedder: fails when the default hybrid ranking falls below BM25 or dense alone. The full suites are
/// `kefu eval retrieval --dataset stackfaq|bq|shop-zh` (bench/RESULTS.md).
fn retrieval_eval_slice() -> anyhow::Result<()> {
    for (dataset, extra) in [
        ("shop-zh", &["--split", "all"][..]),
        ("stackfaq", &["--split", "test", "--limit", "200"][..]),
    ] {
        let mut c = kefu(&["eval", "retrieval", "--check", "--dataset", dataset]);
        c.args(extra);
        c.env("KEFU__LOG__FILTER", "warn");
        run(
            &format!("kefu eval retrieval --dataset {dataset} (slice)"),
            c,
        )?;
    }
    Ok(())
}

/// The scripted conversations (eval/conversations/demo.yaml) against the whole product with the deterministic
/// extractive model and the real embedder: fails when fewer than 90 % of turns take the expected path, a hand-off
/// is wrong, or a flow that should complete does not (bench/RESULTS.md has the full numbers).
fn conversation_eval() -> anyhow::Result<()> {
    let c = kefu(&["eval", "conversations", "--check"]);
    run("kefu eval conversations (extractive model)", c)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("invariants") => invariants(),
        Some("openapi") => openapi(args.get(1).is_some_and(|a| a == "--check")),
        Some("web") => web(false),
        Some("bench-api") => {
            let mut build = cargo();
            build.args(["build", "--release", "-p", "kefu", "-p", "kefu-bench"]);
            run("build (release)", build)?;
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root().join("target"));
            let bin = target.join("release");
            // 10,000 sockets on each side need more than the usual 1024 open files.
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg("ulimit -n 65535 2>/dev/null || ulimit -n 16384; exec \"$0\" \"$@\"")
                .arg(bin.join("kefu-bench"))
                .args(&args[1..])
                .env("KEFU_BIN", bin.join("kefu"));
            run("bench-api", c)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | invariants | openapi [--check] | bench-api [ARGS]>"
            );
            std::process::exit(2)
        }
    }
}
