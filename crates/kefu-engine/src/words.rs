//! A tenant's own sensitive words: the list set through the admin API (stored as a [`ModerationConfig`] in the
//! tenant's record), checked here once for the API and for the understanding set-up that compiles it together with
//! the server's list.

use std::collections::BTreeMap;

use kefu_nlu::moderation::{parse_word_list, Action, Moderator, Verdict, WordEntry};
use kefu_types::{ModerationCheck, ModerationConfig, ModerationHit};

/// The category of entries that name none.
pub const DEFAULT_CATEGORY: &str = "custom";

/// The entries of a tenant's list as written (parsed, not compiled), or why they cannot be read.
pub fn parse_entries(cfg: &ModerationConfig) -> Result<Vec<WordEntry>, String> {
    let action = match cfg.default_action.as_deref() {
        None => Action::Flag,
        Some(a) => Action::parse(a)
            .ok_or_else(|| format!("`default_action` must be block, mask or flag, not {a:?}"))?,
    };
    parse_word_list(&cfg.words, DEFAULT_CATEGORY, action).map_err(|e| e.to_string())
}

/// The entries of a tenant's list, or why it cannot be used (naming the line): parsed and compiled, the check a
/// list passes before it is stored.
pub fn tenant_entries(cfg: &ModerationConfig) -> Result<Vec<WordEntry>, String> {
    let entries = parse_entries(cfg)?;
    // Compiling is the rest of the check (a word of symbols only has nothing to match).
    Moderator::new(entries.clone()).map_err(|e| e.to_string())?;
    Ok(entries)
}

/// The tenant's stored list (a JSON value), or `None` when it is absent or unreadable (logged). Parsed only: it
/// was compiled once on the way in, and the caller compiles it with the server's list anyway.
pub fn stored_entries(value: Option<&serde_json::Value>) -> Option<Vec<WordEntry>> {
    let cfg: ModerationConfig = serde_json::from_value(value?.clone())
        .map_err(|e| tracing::warn!(error = %e, "ignoring the tenant's unreadable word list"))
        .ok()?;
    parse_entries(&cfg)
        .map_err(|e| tracing::warn!(error = %e, "ignoring the tenant's word list"))
        .ok()
}

/// Entries per category.
pub fn categories(entries: &[WordEntry]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in entries {
        *out.entry(e.category.clone()).or_default() += 1;
    }
    out
}

/// The server's entries followed by the tenant's, compiled into one matcher (a word in both keeps its stronger
/// action).
pub fn combined(server: Option<&Moderator>, tenant: Vec<WordEntry>) -> Result<Moderator, String> {
    let mut all = server.map(|m| m.entries().to_vec()).unwrap_or_default();
    all.extend(tenant);
    Moderator::new(all).map_err(|e| e.to_string())
}

pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Flag => "flag",
        Action::Mask => "mask",
        Action::Block => "block",
    }
}

/// A verdict as the API shows it.
pub fn check_view(text: &str, v: Verdict) -> ModerationCheck {
    ModerationCheck {
        action: v.action.map(|a| action_name(a).to_owned()),
        hits: v
            .hits
            .into_iter()
            .map(|h| ModerationHit {
                matched: text.get(h.start..h.end).unwrap_or_default().to_owned(),
                word: h.word,
                category: h.category,
                action: action_name(h.action).to_owned(),
            })
            .collect(),
        text: v.text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(words: &str, action: Option<&str>) -> ModerationConfig {
        ModerationConfig {
            words: words.into(),
            default_action: action.map(str::to_owned),
        }
    }

    #[test]
    fn a_tenant_list_takes_its_default_action_and_category() {
        let e = tenant_entries(&cfg("# ours\n退款骗子\nscam,fraud,block\n", Some("mask"))).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].category.as_str(), e[0].action),
            ("custom", Action::Mask)
        );
        assert_eq!(
            (e[1].category.as_str(), e[1].action),
            ("fraud", Action::Block)
        );
        assert_eq!(
            categories(&e),
            BTreeMap::from([("custom".into(), 1), ("fraud".into(), 1)])
        );
    }

    #[test]
    fn bad_lists_name_the_problem() {
        let e = tenant_entries(&cfg("ok\n***\n", None)).unwrap_err();
        assert!(e.contains("***"), "{e}");
        let e = tenant_entries(&cfg("word,cat,delete\n", None)).unwrap_err();
        assert!(e.contains("delete"), "{e}");
        let e = tenant_entries(&cfg("word\n", Some("ban"))).unwrap_err();
        assert!(e.contains("default_action"), "{e}");
        assert_eq!(stored_entries(Some(&serde_json::json!({"words": 3}))), None);
    }

    #[test]
    fn the_tenant_list_adds_to_the_server_list() {
        let server =
            Moderator::new(tenant_entries(&cfg("傻逼,profanity,mask\n", None)).unwrap()).unwrap();
        let m = combined(
            Some(&server),
            tenant_entries(&cfg("竞品A,competitor,block\n", None)).unwrap(),
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        let text = "你们比竞品Ａ还差，傻 逼";
        let v = check_view(text, m.check(text));
        assert_eq!(v.action.as_deref(), Some("block"));
        let words: Vec<_> = v
            .hits
            .iter()
            .map(|h| (h.word.as_str(), h.matched.as_str()))
            .collect();
        assert_eq!(words, vec![("竞品A", "竞品Ａ"), ("傻逼", "傻 逼")]);
    }
}
