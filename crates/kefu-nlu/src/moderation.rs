//! Sensitive-word moderation with Aho-Corasick over normalised text, for whole messages and for token streams.
//!
//! Both the list and the text are folded the same way: full-width to half-width, case, traditional to simplified
//! Chinese; then everything that is not a letter or digit is skipped, so `傻 * 逼`, `Ｆ.Ｕ.Ｃ.Ｋ` and `傻逼` are the same
//! word. Words in Latin script must start and end at word edges ("ass" does not fire inside "class"). Each word has
//! a category and an action (block, mask or flag); a message takes the strongest action among its hits.
//!
//! [`ModerationStream`] holds back only the tail that could still become a word (the last `longest word`
//! letters, and an unfinished Latin word), so a word split across two streamed chunks is caught before any of it is
//! released.

use serde::{Deserialize, Serialize};

use crate::matcher::{is_kept, is_latin_letter, key, WordMatcher};
use crate::text::fold_char;
use crate::NluError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Record the hit; the text passes unchanged.
    Flag,
    /// Replace the word with `*`.
    Mask,
    /// The message (or the rest of the stream) is not delivered.
    Block,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flag" => Some(Action::Flag),
            "mask" => Some(Action::Mask),
            "block" => Some(Action::Block),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WordEntry {
    pub word: String,
    pub category: String,
    pub action: Action,
}

/// Parses a word list: one entry per line, `word`, or `word<TAB or comma>category`, or
/// `word<TAB or comma>category<TAB or comma>action`. Blank lines and lines starting with `#` are skipped; missing
/// fields take `default_category` and `default_action`.
pub fn parse_word_list(
    text: &str,
    default_category: &str,
    default_action: Action,
) -> Result<Vec<WordEntry>, NluError> {
    let mut out = Vec::new();
    for (n, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sep = if line.contains('\t') { '\t' } else { ',' };
        let mut parts = line.split(sep).map(str::trim);
        let word = parts.next().unwrap_or_default();
        let category = parts
            .next()
            .filter(|c| !c.is_empty())
            .unwrap_or(default_category);
        let action = match parts.next().filter(|a| !a.is_empty()) {
            None => default_action,
            Some(a) => Action::parse(a).ok_or_else(|| {
                NluError::BadWordList(format!(
                    "line {}: unknown action {a:?} (use block, mask or flag)",
                    n + 1
                ))
            })?,
        };
        if parts.next().is_some() {
            return Err(NluError::BadWordList(format!(
                "line {}: expected at most word, category, action",
                n + 1
            )));
        }
        out.push(WordEntry {
            word: word.to_owned(),
            category: category.to_owned(),
            action,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// Byte range in the checked text.
    pub start: usize,
    pub end: usize,
    /// The listed word that matched (as listed).
    pub word: String,
    pub category: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub hits: Vec<Hit>,
    /// The strongest action among the hits.
    pub action: Option<Action>,
    /// The text with masked and blocked words replaced by `*` (one per character).
    pub text: String,
}

impl Verdict {
    pub fn blocked(&self) -> bool {
        self.action == Some(Action::Block)
    }
}

/// A compiled word list.
pub struct Moderator {
    matcher: WordMatcher,
    entries: Vec<WordEntry>,
}

impl std::fmt::Debug for Moderator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moderator")
            .field("words", &self.entries.len())
            .finish()
    }
}

impl Moderator {
    /// Compiles the list. Entries whose words fold to nothing (only symbols) are errors; a word listed twice keeps
    /// its strongest action.
    pub fn new(entries: Vec<WordEntry>) -> Result<Moderator, NluError> {
        let mut by_key: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut kept_entries: Vec<WordEntry> = Vec::new();
        let mut patterns: Vec<String> = Vec::new();
        for e in entries {
            let key = key(&e.word);
            if key.is_empty() {
                return Err(NluError::BadWordList(format!(
                    "{:?} has no letters or digits to match",
                    e.word
                )));
            }
            match by_key.get(&key) {
                Some(&i) if kept_entries[i].action >= e.action => {}
                Some(&i) => kept_entries[i] = e,
                None => {
                    by_key.insert(key.clone(), patterns.len());
                    patterns.push(key);
                    kept_entries.push(e);
                }
            }
        }
        let matcher =
            WordMatcher::new(&patterns).map_err(|e| NluError::BadWordList(e.to_string()))?;
        Ok(Moderator {
            matcher,
            entries: kept_entries,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The compiled entries (one per distinct word, with its strongest action).
    pub fn entries(&self) -> &[WordEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Hits in `text`, with byte ranges in `text`. `end_is_open`: the text may continue (a stream), so a Latin
    /// word touching the end is not yet known to end there and is not reported.
    fn hits(&self, text: &str, end_is_open: bool) -> Vec<Hit> {
        self.matcher
            .find(text, end_is_open)
            .into_iter()
            .map(|m| {
                let e = &self.entries[m.pattern];
                Hit {
                    start: m.start,
                    end: m.end,
                    word: e.word.clone(),
                    category: e.category.clone(),
                    action: e.action,
                }
            })
            .collect()
    }

    /// Checks a whole message.
    pub fn check(&self, text: &str) -> Verdict {
        let hits = self.hits(text, false);
        verdict(text, hits)
    }

    /// A checker for a streamed reply.
    pub fn stream(&self) -> ModerationStream<'_> {
        ModerationStream {
            moderator: self,
            pending: String::new(),
            blocked: false,
        }
    }
}

fn verdict(text: &str, hits: Vec<Hit>) -> Verdict {
    let action = hits.iter().map(|h| h.action).max();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for h in hits.iter().filter(|h| h.action >= Action::Mask) {
        out.push_str(&text[at..h.start]);
        for c in text[h.start..h.end].chars() {
            out.push(if is_kept(c) { '*' } else { c });
        }
        at = h.end;
    }
    out.push_str(&text[at..]);
    Verdict {
        hits,
        action,
        text: out,
    }
}

/// Checks a reply as it streams: [`push`](Self::push) each chunk, [`finish`](Self::finish) at the end. Released
/// text never contains the start of a word that later text could complete.
pub struct ModerationStream<'a> {
    moderator: &'a Moderator,
    pending: String,
    blocked: bool,
}

impl ModerationStream<'_> {
    /// Adds a chunk; returns what can be shown now (masked), with the hits in it. After a block, nothing more is
    /// released.
    pub fn push(&mut self, chunk: &str) -> Verdict {
        self.pending.push_str(chunk);
        self.release(false)
    }

    /// The end of the stream: everything held back, checked.
    pub fn finish(&mut self) -> Verdict {
        self.release(true)
    }

    pub fn blocked(&self) -> bool {
        self.blocked
    }

    fn release(&mut self, all: bool) -> Verdict {
        if self.blocked {
            self.pending.clear();
            return verdict("", Vec::new());
        }
        let hits = self.moderator.hits(&self.pending, !all);
        let mut cut = if all {
            self.pending.len()
        } else {
            self.hold_from()
        };
        // A complete hit crossing the cut is released whole (it is masked or blocked already), and a block acts as
        // soon as its word is complete.
        for h in &hits {
            if (h.start < cut || h.action == Action::Block) && h.end > cut {
                cut = h.end;
            }
        }
        let (released, hits): (Vec<Hit>, Vec<Hit>) = hits.into_iter().partition(|h| h.end <= cut);
        drop(hits);
        let rest = self.pending.split_off(cut);
        let text = std::mem::replace(&mut self.pending, rest);
        let v = verdict(&text, released);
        if v.blocked() {
            self.blocked = true;
            self.pending.clear();
        }
        v
    }

    /// Byte offset from which `pending` must be held: the last `longest` kept chars (with the symbols around
    /// them), and any Latin word still running at the end.
    fn hold_from(&self) -> usize {
        // A word still incomplete has at most `longest − 1` chars here; a Latin word waiting for its edge can be
        // complete, `longest` chars.
        let need = self.moderator.matcher.longest;
        let mut kept_seen = 0;
        let mut hold = self.pending.len();
        let mut in_tail_word = true;
        for (i, c) in self.pending.char_indices().rev() {
            let f = fold_char(c);
            let latin = is_latin_letter(f);
            if in_tail_word && latin {
                hold = i;
                if is_kept(f) {
                    kept_seen += 1;
                }
                continue;
            }
            in_tail_word = false;
            if kept_seen >= need {
                break;
            }
            if is_kept(f) {
                kept_seen += 1;
            }
            hold = i;
        }
        hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moderator() -> Moderator {
        let list = "# demo list\n傻逼\tprofanity\tmask\nfuck\tprofanity\tmask\nass,profanity,mask\n炸弹\tviolence\tblock\n竞品X\tcompetitor\tflag\n";
        Moderator::new(parse_word_list(list, "default", Action::Flag).unwrap()).unwrap()
    }

    #[test]
    fn normalised_variants_are_caught_and_masked_in_place() {
        let m = moderator();
        for text in [
            "你是傻逼",
            "你是傻 * 逼",
            "你是傻．逼",
            "what the FUCK",
            "what the Ｆ.Ｕ.Ｃ.Ｋ",
            "f u c k this",
        ] {
            let v = m.check(text);
            assert_eq!(v.action, Some(Action::Mask), "{text}");
            assert!(
                !v.text.contains('傻') && !v.text.to_lowercase().contains("fuck"),
                "{text} → {}",
                v.text
            );
            assert_eq!(v.text.chars().count(), text.chars().count());
        }
        // Traditional characters fold to simplified.
        assert_eq!(m.check("放個炸彈").action, Some(Action::Block));
        assert!(m.check("放個炸彈").blocked());
        // Flags pass the text unchanged.
        let v = m.check("竞品x更便宜");
        assert_eq!(v.action, Some(Action::Flag));
        assert_eq!(v.text, "竞品x更便宜");
    }

    #[test]
    fn latin_words_need_word_edges() {
        let m = moderator();
        assert!(m
            .check("this class is great, assess the bass")
            .hits
            .is_empty());
        assert_eq!(m.check("you ass!").hits.len(), 1);
    }

    #[test]
    fn a_word_split_across_stream_chunks_is_caught_before_release() {
        let m = moderator();
        for chunks in [
            &["你真是个傻", "逼啊", "，再见"][..],
            &["what the f", "u", "ck is this"],
            &["放个炸", "弹"],
            &["all ", "good ", "here"],
        ] {
            let mut s = m.stream();
            let mut shown = String::new();
            let mut actions = Vec::new();
            for c in chunks {
                let v = s.push(c);
                shown.push_str(&v.text);
                actions.extend(v.hits.iter().map(|h| h.action));
                // Nothing released so far may contain a listed word's first part followed by nothing.
                assert!(
                    !shown.ends_with('傻') && !shown.ends_with("f") && !shown.ends_with('炸'),
                    "{chunks:?}: {shown}"
                );
            }
            let v = s.finish();
            shown.push_str(&v.text);
            actions.extend(v.hits.iter().map(|h| h.action));
            let whole: String = chunks.concat();
            let once = m.check(&whole);
            if once.blocked() {
                assert!(s.blocked() && !shown.contains('炸'), "{shown}");
            } else {
                assert_eq!(shown, once.text, "{chunks:?}");
                assert_eq!(
                    actions,
                    once.hits.iter().map(|h| h.action).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn bad_lists_are_errors() {
        assert!(parse_word_list("word\tcat\tnuke\n", "d", Action::Flag)
            .unwrap_err()
            .to_string()
            .contains("unknown action"));
        assert!(Moderator::new(parse_word_list("***\n", "d", Action::Flag).unwrap()).is_err());
        let empty = Moderator::new(vec![]).unwrap();
        assert_eq!(empty.check("anything").action, None);
    }
}
