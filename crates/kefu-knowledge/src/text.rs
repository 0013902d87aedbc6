//! Text primitives shared by the chunker and the indexes: CJK detection, a coarse language tag, sentence
//! splitting that never cuts a Chinese sentence, and a token estimate.

pub use kefu_nlu::text::is_cjk;

/// Fullwidth and CJK punctuation (、。「」 and friends).
fn is_cjk_punct(c: char) -> bool {
    matches!(c as u32, 0x3000..=0x303F | 0xFF00..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
}

/// A coarse language tag for a chunk: `zh` when Han characters make up at least a fifth of its letters, `en` when
/// it has Latin letters, otherwise `und`. (Message-level language detection belongs to the understanding step;
/// chunks only need this split to scope search.)
pub fn detect_lang(text: &str) -> &'static str {
    let (mut han, mut latin) = (0usize, 0usize);
    for c in text.chars() {
        if is_cjk(c) {
            han += 1;
        } else if c.is_alphabetic() {
            latin += 1;
        }
    }
    if han > 0 && han * 5 >= han + latin {
        "zh"
    } else if latin > 0 {
        "en"
    } else if han > 0 {
        "zh"
    } else {
        "und"
    }
}

/// Estimated model tokens of `text`, calibrated on the multilingual-e5 SentencePiece vocabulary: about one token
/// per Han character, one per Latin word plus one per further eight letters, one per three digits, one per
/// other symbol. Chunk sizes are bounded in these units rather than bytes, so a Chinese and an English chunk of the
/// same budget carry similar amounts of text for the model.
pub fn estimate_tokens(text: &str) -> usize {
    let mut tokens = 0;
    let mut word = 0usize; // letters in the current Latin word
    let mut digits = 0usize;
    let flush = |tokens: &mut usize, word: &mut usize, digits: &mut usize| {
        if *word > 0 {
            *tokens += 1 + (*word - 1) / 8;
            *word = 0;
        }
        if *digits > 0 {
            *tokens += (*digits).div_ceil(3);
            *digits = 0;
        }
    };
    for c in text.chars() {
        if is_cjk(c) {
            flush(&mut tokens, &mut word, &mut digits);
            tokens += 1;
        } else if c.is_alphabetic() {
            if digits > 0 {
                flush(&mut tokens, &mut word, &mut digits);
            }
            word += 1;
        } else if c.is_ascii_digit() {
            if word > 0 {
                flush(&mut tokens, &mut word, &mut digits);
            }
            digits += 1;
        } else {
            flush(&mut tokens, &mut word, &mut digits);
            if !c.is_whitespace() {
                tokens += 1;
            }
        }
    }
    flush(&mut tokens, &mut word, &mut digits);
    tokens
}

fn closes_sentence(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '；' | '!' | '?' | ';' | '…')
}

/// Quotes and brackets that belong to the sentence they close: `他说：“好。”` ends after the closing quote.
fn trails_sentence(c: char) -> bool {
    matches!(
        c,
        '”' | '’' | '」' | '』' | '）' | ')' | '"' | '\'' | '】' | '》' | ']'
    )
}

/// Splits text into sentences, each keeping its terminator, closing quotes and following whitespace, so the
/// pieces concatenate back to the input exactly. Chinese terminators end a sentence anywhere; `.` ends one only
/// when followed by whitespace or the end (so `3.5`, `e.g` and `example.com` stay whole); a newline always does.
pub fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let ends = if c == '\n' || closes_sentence(c) {
            true
        } else if c == '.' {
            chars
                .peek()
                .is_none_or(|&(_, n)| n.is_whitespace() || trails_sentence(n))
        } else {
            false
        };
        if !ends {
            continue;
        }
        let mut end = i + c.len_utf8();
        // Repeated terminators (?!, ……), closing quotes, then whitespace stay with this sentence.
        while let Some(&(j, n)) = chars.peek() {
            if closes_sentence(n) || n == '.' || trails_sentence(n) || n.is_whitespace() {
                end = j + n.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        out.push(&text[start..end]);
        start = end;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Collapses runs of spaces and tabs, trims each line, drops control characters and keeps at most one blank line
/// between paragraphs.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let mut cleaned = String::with_capacity(line.len());
        let mut space = false;
        for c in line.chars() {
            if c == '\u{feff}' || (c.is_control() && c != '\t') {
                continue;
            }
            if c.is_whitespace() {
                space = true;
            } else {
                if space && !cleaned.is_empty() {
                    cleaned.push(' ');
                }
                space = false;
                cleaned.push(c);
            }
        }
        if cleaned.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(&cleaned);
    }
    out
}

/// Whether the text reads as words rather than binary: few replacement or control characters.
pub fn looks_like_text(text: &str) -> bool {
    let mut bad = 0usize;
    let mut total = 0usize;
    for c in text.chars().take(65_536) {
        total += 1;
        if c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) {
            bad += 1;
        }
    }
    total == 0 || bad * 100 <= total
}

/// True when `c` joins the word before it without a space in running text (CJK and CJK punctuation).
pub fn is_cjk_or_punct(c: char) -> bool {
    is_cjk(c) || is_cjk_punct(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_concatenate_back_and_split_where_a_reader_would() {
        let zh = "请问退货要多久？一般3到5个工作日。他说：“好的。”然后走了";
        let s = split_sentences(zh);
        assert_eq!(s.concat(), zh);
        assert_eq!(
            s,
            vec![
                "请问退货要多久？",
                "一般3到5个工作日。",
                "他说：“好的。”",
                "然后走了"
            ]
        );

        let en = "Version 3.5 is out. See example.com for details! Really?! Yes";
        let s = split_sentences(en);
        assert_eq!(s.concat(), en);
        assert_eq!(
            s,
            vec![
                "Version 3.5 is out. ",
                "See example.com for details! ",
                "Really?! ",
                "Yes"
            ]
        );
    }

    #[test]
    fn language_and_tokens() {
        assert_eq!(detect_lang("如何申请退款？"), "zh");
        assert_eq!(detect_lang("How do I get a refund?"), "en");
        assert_eq!(detect_lang("iPhone 15 的保修期是多久"), "zh");
        assert_eq!(detect_lang("12345"), "und");
        assert_eq!(estimate_tokens("退款"), 2);
        assert_eq!(estimate_tokens("refund policy"), 2);
        assert_eq!(estimate_tokens("strikethrough"), 2);
        assert_eq!(estimate_tokens("订单 123456"), 4);
    }

    #[test]
    fn clean_normalises_whitespace_and_blank_lines() {
        assert_eq!(clean("  a   b \t c \n\n\n\nd\u{0}e\n"), "a b c\n\nde");
        assert!(looks_like_text("普通文本 plain"));
        assert!(!looks_like_text("\u{0}\u{1}\u{2}abc\u{3}"));
    }
}
