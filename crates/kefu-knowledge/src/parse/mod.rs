//! Source files → blocks of clean text with their heading path and location (or FAQ entries).
//!
//! Every parser takes untrusted bytes and returns a typed error instead of panicking; the PDF library is the one
//! dependency known to panic on malformed files, so its call is isolated (see [`pdf`]).

mod faq;
mod html;
mod markdown;
mod pdf;

use serde::{Deserialize, Serialize};

use crate::text;

/// The kinds of file the knowledge base reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Markdown,
    Html,
    Pdf,
    Text,
    /// Question/answer rows: CSV with a header, JSON array, or JSON lines.
    FaqCsv,
    FaqJson,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Text => "text",
            Format::FaqCsv => "faq_csv",
            Format::FaqJson => "faq_json",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "markdown" => Format::Markdown,
            "html" => Format::Html,
            "pdf" => Format::Pdf,
            "text" => Format::Text,
            "faq_csv" => Format::FaqCsv,
            "faq_json" => Format::FaqJson,
            _ => return None,
        })
    }

    /// The format a file name implies, by extension (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "md" | "markdown" => Format::Markdown,
            "html" | "htm" => Format::Html,
            "pdf" => Format::Pdf,
            "txt" | "text" => Format::Text,
            "csv" => Format::FaqCsv,
            "json" | "jsonl" => Format::FaqJson,
            _ => return None,
        })
    }

    pub fn is_faq(self) -> bool {
        matches!(self, Format::FaqCsv | Format::FaqJson)
    }
}

/// Where a piece of text came from, for citations. Lines and rows are 1-based.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line_start: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line_end: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub page_start: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub page_end: Option<u32>,
    /// FAQ row (CSV data row or JSON array index, 1-based).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub row: Option<u32>,
    /// Paragraph number within the document, where there are no lines or pages (HTML).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub paragraph: Option<u32>,
}

impl Location {
    pub fn lines(start: u32, end: u32) -> Self {
        Self {
            line_start: Some(start),
            line_end: Some(end),
            ..Self::default()
        }
    }

    /// The smallest location covering both.
    pub fn merge(&self, other: &Location) -> Location {
        fn lo(a: Option<u32>, b: Option<u32>) -> Option<u32> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        fn hi(a: Option<u32>, b: Option<u32>) -> Option<u32> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }
        }
        Location {
            line_start: lo(self.line_start, other.line_start),
            line_end: hi(self.line_end, other.line_end),
            page_start: lo(self.page_start, other.page_start),
            page_end: hi(self.page_end, other.page_end),
            row: lo(self.row, other.row),
            paragraph: lo(self.paragraph, other.paragraph),
        }
    }

    /// Human-readable: "lines 3–9", "page 2", "row 14".
    pub fn describe(&self) -> String {
        let range = |what: &str, a: u32, b: Option<u32>| match b {
            Some(b) if b != a => format!("{what}s {a}–{b}"),
            _ => format!("{what} {a}"),
        };
        if let Some(p) = self.page_start {
            range("page", p, self.page_end)
        } else if let Some(l) = self.line_start {
            range("line", l, self.line_end)
        } else if let Some(r) = self.row {
            format!("row {r}")
        } else if let Some(p) = self.paragraph {
            format!("paragraph {p}")
        } else {
            String::new()
        }
    }
}

/// A paragraph-like unit of a document: never split across chunks unless it alone is too long.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Headings above this block, outermost first.
    pub headings: Vec<String>,
    pub text: String,
    pub location: Location,
}

/// A curated question with its standard answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaqEntry {
    pub question: String,
    #[serde(default)]
    pub alternatives: Vec<String>,
    pub answer: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub location: Location,
}

/// A parsed file.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Passages {
        title: Option<String>,
        blocks: Vec<Block>,
    },
    Faq(Vec<FaqEntry>),
}

impl Parsed {
    pub fn is_empty(&self) -> bool {
        match self {
            Parsed::Passages { blocks, .. } => blocks.iter().all(|b| b.text.trim().is_empty()),
            Parsed::Faq(entries) => entries.is_empty(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("unsupported file type {0:?}: expected .md, .html, .pdf, .txt, .csv or .json")]
    Unsupported(String),
    #[error("the file is not text (binary content or an unknown encoding)")]
    NotText,
    #[error("the PDF is encrypted")]
    Encrypted,
    #[error("the PDF has no text layer (scanned images need OCR first)")]
    NoTextLayer,
    #[error("the file is corrupt: {0}")]
    Corrupt(String),
    /// FAQ files with bad rows are rejected whole, so a half-valid file never becomes half-searchable.
    #[error("invalid FAQ file: {0}")]
    InvalidFaq(String),
}

impl ParseError {
    /// A stable snake_case code for import reports and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty_file",
            ParseError::TooLarge { .. } => "file_too_large",
            ParseError::Unsupported(_) => "unsupported_type",
            ParseError::NotText => "not_text",
            ParseError::Encrypted => "encrypted_pdf",
            ParseError::NoTextLayer => "no_text_layer",
            ParseError::Corrupt(_) => "corrupt_file",
            ParseError::InvalidFaq(_) => "invalid_faq",
        }
    }
}

/// Decodes text bytes: UTF-8 (with or without BOM) or UTF-16 with a BOM; anything else that is not valid UTF-8 or
/// reads as binary is [`ParseError::NotText`].
pub fn decode_text(bytes: &[u8]) -> Result<String, ParseError> {
    let text = if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        std::str::from_utf8(rest)
            .map_err(|_| ParseError::NotText)?
            .to_owned()
    } else if bytes.len() >= 2 && (bytes[..2] == [0xFF, 0xFE] || bytes[..2] == [0xFE, 0xFF]) {
        let le = bytes[0] == 0xFF;
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|p| {
                if le {
                    u16::from_le_bytes([p[0], p[1]])
                } else {
                    u16::from_be_bytes([p[0], p[1]])
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|_| ParseError::NotText)?
    } else {
        if bytes.contains(&0) {
            return Err(ParseError::NotText);
        }
        std::str::from_utf8(bytes)
            .map_err(|_| ParseError::NotText)?
            .to_owned()
    };
    if !text::looks_like_text(&text) {
        return Err(ParseError::NotText);
    }
    Ok(text)
}

/// Parses a file's bytes in the given format.
pub fn parse(format: Format, bytes: &[u8]) -> Result<Parsed, ParseError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ParseError::Empty);
    }
    let parsed = match format {
        Format::Pdf => pdf::parse(bytes)?,
        Format::Markdown => markdown::parse(&decode_text(bytes)?),
        Format::Html => html::parse(&decode_text(bytes)?),
        Format::Text => plain(&decode_text(bytes)?),
        Format::FaqCsv => Parsed::Faq(faq::parse_csv(&decode_text(bytes)?)?),
        Format::FaqJson => Parsed::Faq(faq::parse_json(&decode_text(bytes)?)?),
    };
    if parsed.is_empty() {
        return Err(if format == Format::Pdf {
            ParseError::NoTextLayer
        } else {
            ParseError::Empty
        });
    }
    Ok(parsed)
}

/// Plain text: paragraphs separated by blank lines, with their line numbers.
fn plain(text: &str) -> Parsed {
    let mut blocks = Vec::new();
    let mut para: Vec<&str> = Vec::new();
    let mut start = 0u32;
    let flush = |para: &mut Vec<&str>, start: u32, end: u32, blocks: &mut Vec<Block>| {
        let t = text::clean(&para.join("\n"));
        if !t.is_empty() {
            blocks.push(Block {
                headings: Vec::new(),
                text: t,
                location: Location::lines(start, end),
            });
        }
        para.clear();
    };
    let mut n = 0u32;
    for (i, line) in text.lines().enumerate() {
        n = i as u32 + 1;
        if line.trim().is_empty() {
            flush(&mut para, start, n - 1, &mut blocks);
        } else {
            if para.is_empty() {
                start = n;
            }
            para.push(line);
        }
    }
    flush(&mut para, start, n, &mut blocks);
    Parsed::Passages {
        title: None,
        blocks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Format; 6] = [
        Format::Markdown,
        Format::Html,
        Format::Pdf,
        Format::Text,
        Format::FaqCsv,
        Format::FaqJson,
    ];

    /// Inputs shaped like each format, with the characters that trip parsers up.
    fn structured() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("# 标题\n".to_string()),
            Just("## Sub\n".to_string()),
            Just("- item\n".to_string()),
            Just("| a | b |\n|---|---|\n".to_string()),
            Just("```\ncode\n".to_string()),
            Just("<p>段落".to_string()),
            Just("<script>x</script>".to_string()),
            Just("</div>".to_string()),
            Just("question,answer\n".to_string()),
            Just("\"quoted, \"\"x\"\"\",".to_string()),
            Just("[{\"question\":\"q\",\"answer\":".to_string()),
            Just("%PDF-1.4\n".to_string()),
            Just("\u{0}\u{feff}\r\n".to_string()),
            "[a-z ,。！？\\n]{0,20}",
            "[\\u4e00-\\u9fa5]{0,10}",
        ];
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
            for f in ALL {
                let _ = parse(f, &bytes);
            }
        }

        #[test]
        fn parsers_never_panic_and_keep_no_empty_blocks(text in structured()) {
            for f in ALL {
                match parse(f, text.as_bytes()) {
                    Ok(Parsed::Passages { blocks, .. }) => {
                        prop_assert!(!blocks.is_empty());
                        prop_assert!(blocks.iter().all(|b| !b.text.trim().is_empty()));
                    }
                    Ok(Parsed::Faq(entries)) => {
                        prop_assert!(entries.iter().all(|e| !e.question.is_empty() && !e.answer.is_empty()));
                    }
                    Err(_) => {}
                }
            }
        }
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::from_name("退货政策.MD"), Some(Format::Markdown));
        assert_eq!(Format::from_name("a/b/faq.csv"), Some(Format::FaqCsv));
        assert_eq!(Format::from_name("x.docx"), None);
        assert_eq!(Format::from_name("README"), None);
    }

    #[test]
    fn plain_text_keeps_paragraph_lines() {
        let Parsed::Passages { blocks, .. } = parse(
            Format::Text,
            "第一段。\n续行。\n\n\nSecond para.\n".as_bytes(),
        )
        .unwrap() else {
            panic!("passages expected")
        };
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].text, "第一段。\n续行。");
        assert_eq!(blocks[0].location, Location::lines(1, 2));
        assert_eq!(blocks[1].location, Location::lines(5, 5));
    }

    #[test]
    fn bad_bytes_are_typed_errors() {
        assert_eq!(parse(Format::Text, b"  \n\t"), Err(ParseError::Empty));
        assert_eq!(
            parse(Format::Text, b"\x00\x01\x02binary\xff"),
            Err(ParseError::NotText)
        );
        assert_eq!(
            parse(Format::Markdown, &[0xC3, 0x28, 0x41]),
            Err(ParseError::NotText)
        );
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("退款".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert!(matches!(
            parse(Format::Text, &utf16),
            Ok(Parsed::Passages { .. })
        ));
    }
}
