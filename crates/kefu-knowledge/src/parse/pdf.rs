//! PDF text layer through pdf-extract, page by page; each page's paragraphs become blocks located by page.
//!
//! pdf-extract is the most complete pure-Rust text extractor, but it panics on some malformed files instead of
//! returning an error, so the call runs under `catch_unwind` and a panic becomes [`ParseError::Corrupt`]. Encrypted
//! files are recognised before extraction (their trailer names an `/Encrypt` dictionary).

use super::{Block, Location, ParseError, Parsed};
use crate::text;

pub(super) fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(ParseError::Corrupt("missing the %PDF- header".into()));
    }
    if contains(bytes, b"/Encrypt") {
        return Err(ParseError::Encrypted);
    }
    let owned = bytes.to_vec();
    let pages =
        std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem_by_pages(&owned))
            .map_err(|_| ParseError::Corrupt("the PDF structure could not be read".into()))?
            .map_err(|e| {
                let msg = e.to_string();
                if msg.to_ascii_lowercase().contains("encrypt") {
                    ParseError::Encrypted
                } else {
                    ParseError::Corrupt(msg)
                }
            })?;
    let mut blocks = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let page_no = i as u32 + 1;
        for para in text::clean(page).split("\n\n") {
            // Extracted lines are visual lines: join them back into running text.
            let joined = join_visual_lines(para);
            if joined.is_empty() {
                continue;
            }
            blocks.push(Block {
                headings: Vec::new(),
                text: joined,
                location: Location {
                    page_start: Some(page_no),
                    page_end: Some(page_no),
                    ..Location::default()
                },
            });
        }
    }
    Ok(Parsed::Passages {
        title: None,
        blocks,
    })
}

/// Joins the visual lines of one paragraph: no space between CJK lines, a space otherwise, and a hyphen at a line
/// end before a lowercase letter is a word broken across lines.
fn join_visual_lines(para: &str) -> String {
    let mut out = String::with_capacity(para.len());
    for line in para.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if out.is_empty() {
            out.push_str(line);
            continue;
        }
        let prev = out.chars().last().unwrap_or(' ');
        let next = line.chars().next().unwrap_or(' ');
        if prev == '-' && next.is_lowercase() {
            out.pop();
        } else if !(text::is_cjk_or_punct(prev) && text::is_cjk_or_punct(next)) {
            out.push(' ');
        }
        out.push_str(line);
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visual_lines_join_by_script() {
        assert_eq!(
            join_visual_lines("退款将在\n三个工作日内"),
            "退款将在三个工作日内"
        );
        assert_eq!(
            join_visual_lines("Refunds are pro-\ncessed in three\ndays"),
            "Refunds are processed in three days"
        );
    }

    #[test]
    fn non_pdf_and_encrypted_bytes_are_rejected() {
        assert!(matches!(parse(b"hello"), Err(ParseError::Corrupt(_))));
        assert_eq!(
            parse(b"%PDF-1.4\n1 0 obj << >> endobj trailer << /Encrypt 5 0 R >>"),
            Err(ParseError::Encrypted)
        );
        assert!(matches!(
            parse(b"%PDF-1.4\ngarbage garbage"),
            Err(ParseError::Corrupt(_))
        ));
    }
}
