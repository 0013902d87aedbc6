//! HTML through html5ever (scraper): visible text only — scripts, styles, templates, forms and navigation are
//! dropped — split into blocks at block-level elements, with the h1–h6 heading path.

use scraper::{ElementRef, Html, Node};

use super::{Block, Location, Parsed};
use crate::text;

const SKIP: &[&str] = &[
    "script", "style", "noscript", "template", "head", "nav", "form", "button", "select", "svg",
    "iframe", "object",
];
const BLOCK: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "aside",
    "header",
    "footer",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "pre",
    "blockquote",
    "table",
    "figure",
    "figcaption",
    "details",
    "summary",
    "br",
    "hr",
    "body",
];

struct Walker {
    headings: Vec<(u8, String)>,
    blocks: Vec<Block>,
    buf: String,
    paragraph: u32,
}

impl Walker {
    fn flush(&mut self) {
        let body = text::clean(&self.buf);
        self.buf.clear();
        if body.is_empty() {
            return;
        }
        self.paragraph += 1;
        self.blocks.push(Block {
            headings: self.headings.iter().map(|(_, h)| h.clone()).collect(),
            text: body,
            location: Location {
                paragraph: Some(self.paragraph),
                ..Location::default()
            },
        });
    }

    fn walk(&mut self, el: ElementRef<'_>) {
        for child in el.children() {
            match child.value() {
                Node::Text(t) => self.buf.push_str(t),
                Node::Element(e) => {
                    let name = e.name();
                    if SKIP.contains(&name) {
                        continue;
                    }
                    let Some(child_el) = ElementRef::wrap(child) else {
                        continue;
                    };
                    if let Some(level) = heading_level(name) {
                        self.flush();
                        let h =
                            text::clean(&child_el.text().collect::<String>()).replace('\n', " ");
                        if !h.is_empty() {
                            self.headings.retain(|(l, _)| *l < level);
                            self.headings.push((level, h));
                        }
                        continue;
                    }
                    let block = BLOCK.contains(&name);
                    if block {
                        self.flush();
                    }
                    match name {
                        "td" | "th" => {
                            self.walk(child_el);
                            self.buf.push_str(" | ");
                        }
                        "li" | "tr" => {
                            let kept = self.buf.trim_end().trim_end_matches('|').trim_end().len();
                            self.buf.truncate(kept);
                            if !self.buf.is_empty() {
                                self.buf.push('\n');
                            }
                            if name == "li" {
                                self.buf.push_str("- ");
                            }
                            self.walk(child_el);
                        }
                        "br" => self.buf.push('\n'),
                        _ => self.walk(child_el),
                    }
                    if block {
                        let kept = self.buf.trim_end().trim_end_matches('|').trim_end().len();
                        self.buf.truncate(kept);
                        self.flush();
                    }
                }
                _ => {}
            }
        }
    }
}

fn heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

pub(super) fn parse(src: &str) -> Parsed {
    let doc = Html::parse_document(src);
    let title = doc
        .root_element()
        .descendants()
        .filter_map(ElementRef::wrap)
        .find(|e| e.value().name() == "title")
        .map(|e| text::clean(&e.text().collect::<String>()))
        .filter(|t| !t.is_empty());
    let mut w = Walker {
        headings: Vec::new(),
        blocks: Vec::new(),
        buf: String::new(),
        paragraph: 0,
    };
    w.walk(doc.root_element());
    w.flush();
    let title = title.or_else(|| w.blocks.first().and_then(|b| b.headings.first().cloned()));
    Parsed::Passages {
        title,
        blocks: w.blocks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_text_with_headings_and_no_scripts() {
        let html = r#"<html><head><title>帮助中心</title><script>var x = "secret";</script></head>
        <body><nav>Home | Login</nav>
        <h1>配送</h1><p>我们使用<b>顺丰</b>快递，一般<em>2天</em>送达。</p>
        <h2>Fees</h2><ul><li>Standard: free</li><li>Express: ¥20</li></ul>
        <table><tr><th>Region</th><th>Days</th></tr><tr><td>EU</td><td>5</td></tr></table>
        <script>alert('x')</script><style>p{color:red}</style>
        <p onclick="evil()">Tail &amp; end</p></body></html>"#;
        let Parsed::Passages { title, blocks } = parse(html) else {
            panic!()
        };
        assert_eq!(title.as_deref(), Some("帮助中心"));
        let texts: Vec<&str> = blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(texts[0], "我们使用顺丰快递，一般2天送达。");
        assert_eq!(blocks[0].headings, vec!["配送".to_string()]);
        assert!(texts.iter().any(|t| t.contains("- Standard: free")));
        assert!(
            texts.iter().any(|t| t.contains("Region | Days")),
            "{texts:?}"
        );
        assert_eq!(*texts.last().unwrap(), "Tail & end");
        assert_eq!(
            blocks.last().unwrap().headings,
            vec!["配送".to_string(), "Fees".to_string()]
        );
        let all = texts.join("\n");
        for bad in ["secret", "alert", "color", "Login", "evil"] {
            assert!(!all.contains(bad), "{bad} leaked into {all}");
        }
    }
}
