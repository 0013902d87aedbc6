//! Text folding shared by the classifier features and the moderation matcher: full-width to half-width, case,
//! traditional to simplified Chinese, with a map from every folded character back to the original text so a match
//! in folded text can be located (and masked) in what the customer wrote.

/// Han ideographs, kana and hangul: scripts written without spaces between words.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0xF900..=0xFAFF    // compatibility ideographs
        | 0x20000..=0x2A6DF) // extension B
}

/// Han ideographs only (what "Chinese" means for language detection).
pub fn is_han(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2A6DF)
}

/// Full-width ASCII (`ＡＢＣ１２３！`) and the ideographic space to their half-width forms, then lower case.
fn fold_width_case(c: char) -> char {
    let c = match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    };
    if c.is_uppercase() {
        // Lower-casing that expands (İ → i̇) keeps the first char: folding must stay one char per char.
        c.to_lowercase().next().unwrap_or(c)
    } else {
        c
    }
}

/// Text folded for matching, one output char per input char, with the byte offset of each char in the original.
#[derive(Debug, Clone, Default)]
pub struct Folded {
    pub chars: Vec<char>,
    /// `offsets[i]` is the byte offset in the original text of `chars[i]`; one extra entry holds the text's length.
    pub offsets: Vec<usize>,
}

impl Folded {
    pub fn as_string(&self) -> String {
        self.chars.iter().collect()
    }
}

/// Traditional → simplified for one character, from a table built once from `simplet2s` (its per-character
/// mapping; the converter's handful of two-character context rules do not matter for matching and features). The
/// table makes folding a lookup instead of the converter's per-character string hashing.
fn simplified(c: char) -> char {
    const FIRST: u32 = 0x3400;
    const LAST: u32 = 0x9FFF;
    static TABLE: std::sync::OnceLock<Vec<char>> = std::sync::OnceLock::new();
    let code = c as u32;
    if !(FIRST..=LAST).contains(&code) {
        return c;
    }
    let table = TABLE.get_or_init(|| {
        (FIRST..=LAST)
            .map(|u| {
                let ch = char::from_u32(u).unwrap_or(' ');
                let s = simplet2s::convert(ch.encode_utf8(&mut [0; 4]));
                let mut it = s.chars();
                match (it.next(), it.next()) {
                    (Some(one), None) => one,
                    _ => ch,
                }
            })
            .collect()
    });
    table[(code - FIRST) as usize]
}

/// One character folded as [`fold`] folds it.
pub fn fold_char(c: char) -> char {
    simplified(fold_width_case(c))
}

/// Folds width and case, and converts traditional Chinese characters to simplified ones: one output char per input
/// char.
pub fn fold(text: &str) -> Folded {
    let mut chars: Vec<char> = Vec::with_capacity(text.len());
    let mut offsets = Vec::with_capacity(text.len() + 1);
    for (i, c) in text.char_indices() {
        chars.push(fold_char(c));
        offsets.push(i);
    }
    offsets.push(text.len());
    Folded { chars, offsets }
}

/// [`fold`] as a plain string, for features.
pub fn fold_str(text: &str) -> String {
    fold(text).as_string()
}

/// The text up to `max_chars` characters.
pub fn clip(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Latin letters, with the accented ones of Latin-1 and Latin Extended-A/B.
pub fn is_latin_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || ('\u{00C0}'..='\u{024F}').contains(&c)
}

/// Removes control characters (keeping newlines and tabs as spaces) so they cannot hide words or break features.
pub fn strip_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '\n' || c == '\t' || c == '\r' {
                ' '
            } else {
                c
            }
        })
        .filter(|c| !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_keeps_one_char_per_char_and_maps_back() {
        let text = "退款ＡＢＣ１２３ 憂鬱的台灣 Hello";
        let f = fold(text);
        assert_eq!(f.as_string(), "退款abc123 忧郁的台湾 hello");
        assert_eq!(f.chars.len() + 1, f.offsets.len());
        // Each folded char points at the original char it came from.
        let i = f.chars.iter().position(|&c| c == '忧').unwrap();
        assert_eq!(&text[f.offsets[i]..f.offsets[i + 1]], "憂");
    }

    #[test]
    fn controls_are_removed() {
        assert_eq!(strip_controls("a\u{0}b\u{7}c\nd"), "abc d");
    }
}
