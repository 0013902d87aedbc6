//! Markdown (CommonMark + tables) through pulldown-cmark: one block per top-level paragraph, list, code block,
//! table or quote, with the heading path above it and its source lines.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use super::{Block, Location, Parsed};
use crate::text;

pub(super) fn parse(src: &str) -> Parsed {
    // Line starts, to turn byte offsets into 1-based line numbers.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(src.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_of = |offset: usize| line_starts.partition_point(|&s| s <= offset) as u32;

    let mut headings: Vec<(HeadingLevel, String)> = Vec::new();
    let mut title = None;
    let mut blocks = Vec::new();

    let mut depth = 0usize;
    let mut buf = String::new();
    let mut in_heading: Option<HeadingLevel> = None;
    let mut block_start = 0usize;
    let mut in_script = false;

    for (event, range) in Parser::new_ext(src, Options::ENABLE_TABLES).into_offset_iter() {
        match event {
            Event::Start(tag) => {
                if depth == 0 {
                    buf.clear();
                    block_start = range.start;
                    if let Tag::Heading { level, .. } = tag {
                        in_heading = Some(level);
                    }
                }
                match tag {
                    Tag::Item if !buf.is_empty() && !buf.ends_with('\n') => buf.push('\n'),
                    Tag::TableRow | Tag::TableHead if !buf.is_empty() && !buf.ends_with('\n') => {
                        buf.push('\n')
                    }
                    Tag::Paragraph if !buf.is_empty() && !buf.ends_with('\n') => buf.push('\n'),
                    _ => {}
                }
                if let Tag::Item = tag {
                    buf.push_str("- ");
                }
                depth += 1;
            }
            Event::End(tag) => {
                if let TagEnd::TableCell = tag {
                    buf.push_str(" | ");
                }
                depth = depth.saturating_sub(1);
                if depth > 0 {
                    continue;
                }
                let body = text::clean(&buf.replace(" | \n", "\n"));
                let body = body.trim_end_matches(" |").trim().to_owned();
                if let Some(level) = in_heading.take() {
                    if body.is_empty() {
                        continue;
                    }
                    if title.is_none() && level == HeadingLevel::H1 {
                        title = Some(body.clone());
                    }
                    headings.retain(|(l, _)| *l < level);
                    headings.push((level, body));
                } else if !body.is_empty() {
                    let end = range.end.max(block_start + 1) - 1;
                    blocks.push(Block {
                        headings: headings.iter().map(|(_, h)| h.clone()).collect(),
                        text: body,
                        location: Location::lines(line_of(block_start), line_of(end)),
                    });
                }
            }
            Event::Text(t) | Event::Code(t) if !in_script => buf.push_str(&t),
            Event::SoftBreak => buf.push(if ends_cjk(&buf) { '\n' } else { ' ' }),
            Event::HardBreak => buf.push('\n'),
            // Raw HTML inside Markdown is markup, not content; its text is not shown to readers either.
            Event::InlineHtml(h) => {
                let h = h.trim_start().to_ascii_lowercase();
                if h.starts_with("<script") || h.starts_with("<style") {
                    in_script = true;
                } else if h.starts_with("</script") || h.starts_with("</style") {
                    in_script = false;
                }
            }
            _ => {}
        }
    }
    Parsed::Passages { title, blocks }
}

/// A soft line break between Chinese lines is not a space.
fn ends_cjk(buf: &str) -> bool {
    buf.chars().last().is_some_and(text::is_cjk_or_punct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_paths_and_lines() {
        let md = "# 退货政策\n\n收到商品7天内可申请退货。\n\n## 退款时间\n\n退款将在3-5个工作日内\n原路返回。\n\n- 信用卡\n- 支付宝\n\n# Shipping\n\n| Region | Days |\n|---|---|\n| EU | 5 |\n\n```\ncode here\n```\n";
        let Parsed::Passages { title, blocks } = parse(md) else {
            panic!()
        };
        assert_eq!(title.as_deref(), Some("退货政策"));
        let summary: Vec<(Vec<String>, &str, Location)> = blocks
            .iter()
            .map(|b| (b.headings.clone(), b.text.as_str(), b.location.clone()))
            .collect();
        assert_eq!(
            summary[0],
            (
                vec!["退货政策".into()],
                "收到商品7天内可申请退货。",
                Location::lines(3, 3)
            )
        );
        assert_eq!(
            summary[1],
            (
                vec!["退货政策".into(), "退款时间".into()],
                "退款将在3-5个工作日内\n原路返回。",
                Location::lines(7, 8)
            )
        );
        assert_eq!(summary[2].1, "- 信用卡\n- 支付宝");
        assert_eq!(summary[3].0, vec!["Shipping".to_string()]);
        assert_eq!(summary[3].1, "Region | Days\nEU | 5");
        assert_eq!(summary[4].1, "code here");
        assert_eq!(summary[4].2, Location::lines(19, 21));
    }

    #[test]
    fn raw_html_in_markdown_is_dropped() {
        let Parsed::Passages { blocks, .. } = parse("Hello <script>alert(1)</script> world\n")
        else {
            panic!()
        };
        assert_eq!(blocks[0].text, "Hello world");
    }
}
