//! FAQ files: CSV with a header row, a JSON array (or `{"faqs": [...]}`), or JSON lines. Columns/keys, English or
//! Chinese: `question`/`问题`, `answer`/`答案`, optional `alternatives`/`相似问题` (separated by `|` or new lines in
//! CSV, an array in JSON) and `tags`/`标签` (separated by `,` `，` `|` `;`). A file with any bad row is rejected
//! whole, naming the rows, so a half-valid file never becomes half-searchable.

use std::collections::HashMap;

use super::{FaqEntry, Location, ParseError};
use crate::text;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Question,
    Answer,
    Alternatives,
    Tags,
}

fn field(name: &str) -> Option<Field> {
    Some(match name.trim().to_lowercase().as_str() {
        "question" | "q" | "问题" | "标准问题" => Field::Question,
        "answer" | "a" | "答案" | "回答" => Field::Answer,
        "alternatives"
        | "alternative_questions"
        | "similar_questions"
        | "相似问题"
        | "相似问法" => Field::Alternatives,
        "tags" | "tag" | "标签" => Field::Tags,
        _ => return None,
    })
}

const EXPECTED: &str = "question, answer, alternatives, tags (or 问题, 答案, 相似问题, 标签)";
/// How many bad rows an error names before summarising.
const NAMED_ROWS: usize = 5;

#[derive(Default)]
struct Rows {
    entries: Vec<FaqEntry>,
    problems: Vec<String>,
    problem_count: usize,
    seen: HashMap<String, u32>,
}

impl Rows {
    fn problem(&mut self, row: u32, what: impl Into<String>) {
        self.problem_count += 1;
        if self.problems.len() < NAMED_ROWS {
            self.problems.push(format!("row {row}: {}", what.into()));
        }
    }

    fn push(
        &mut self,
        row: u32,
        question: &str,
        answer: &str,
        alternatives: Vec<String>,
        tags: Vec<String>,
    ) {
        let question = text::clean(question).replace('\n', " ");
        let answer = text::clean(answer);
        if question.is_empty() {
            return self.problem(row, "the question is empty");
        }
        if answer.is_empty() {
            return self.problem(row, "the answer is empty");
        }
        let key = question.to_lowercase();
        if let Some(first) = self.seen.get(&key) {
            return self.problem(row, format!("repeats the question of row {first}"));
        }
        self.seen.insert(key, row);
        let mut alts: Vec<String> = Vec::new();
        for a in alternatives
            .iter()
            .map(|a| text::clean(a).replace('\n', " "))
        {
            if !a.is_empty() && a != question && !alts.contains(&a) {
                alts.push(a);
            }
        }
        let mut tag_list: Vec<String> = Vec::new();
        for t in tags.iter().map(|t| t.trim().to_owned()) {
            if !t.is_empty() && !tag_list.contains(&t) {
                tag_list.push(t);
            }
        }
        self.entries.push(FaqEntry {
            question,
            alternatives: alts,
            answer,
            tags: tag_list,
            location: Location {
                row: Some(row),
                ..Location::default()
            },
        });
    }

    fn finish(self) -> Result<Vec<FaqEntry>, ParseError> {
        if self.problem_count > 0 {
            let more = self.problem_count - self.problems.len();
            let mut msg = self.problems.join("; ");
            if more > 0 {
                msg.push_str(&format!("; and {more} more"));
            }
            return Err(ParseError::InvalidFaq(msg));
        }
        if self.entries.is_empty() {
            return Err(ParseError::Empty);
        }
        Ok(self.entries)
    }
}

fn split_alternatives(s: &str) -> Vec<String> {
    s.split(['|', '\n']).map(str::to_owned).collect()
}

fn split_tags(s: &str) -> Vec<String> {
    s.split([',', '，', '|', ';', '；'])
        .map(str::to_owned)
        .collect()
}

pub(super) fn parse_csv(src: &str) -> Result<Vec<FaqEntry>, ParseError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(src.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ParseError::InvalidFaq(format!("unreadable header: {e}")))?
        .clone();
    let mut columns = Vec::with_capacity(headers.len());
    for h in headers.iter() {
        match field(h) {
            Some(f) if columns.contains(&Some(f)) => {
                return Err(ParseError::InvalidFaq(format!(
                    "column {h:?} appears twice"
                )));
            }
            Some(f) => columns.push(Some(f)),
            None if h.trim().is_empty() => columns.push(None),
            None => {
                return Err(ParseError::InvalidFaq(format!(
                    "unknown column {h:?}; expected {EXPECTED}"
                )))
            }
        }
    }
    for needed in [Field::Question, Field::Answer] {
        if !columns.contains(&Some(needed)) {
            let name = if needed == Field::Question {
                "question"
            } else {
                "answer"
            };
            return Err(ParseError::InvalidFaq(format!(
                "no {name} column; expected {EXPECTED}"
            )));
        }
    }
    let mut rows = Rows::default();
    for (i, record) in reader.records().enumerate() {
        // Row numbers count data rows from 1, as a spreadsheet shows them below the header (line i + 2).
        let row = i as u32 + 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                rows.problem(row, format!("{e}"));
                continue;
            }
        };
        let (mut q, mut a, mut alts, mut tags) = ("", "", Vec::new(), Vec::new());
        for (value, col) in record.iter().zip(&columns) {
            match col {
                Some(Field::Question) => q = value,
                Some(Field::Answer) => a = value,
                Some(Field::Alternatives) => alts = split_alternatives(value),
                Some(Field::Tags) => tags = split_tags(value),
                None => {}
            }
        }
        rows.push(row, q, a, alts, tags);
    }
    rows.finish()
}

pub(super) fn parse_json(src: &str) -> Result<Vec<FaqEntry>, ParseError> {
    let trimmed = src.trim_start();
    let items: Vec<serde_json::Value> = if trimmed.starts_with('[') || trimmed.starts_with('{') {
        match serde_json::from_str::<serde_json::Value>(src) {
            Ok(serde_json::Value::Array(items)) => items,
            Ok(serde_json::Value::Object(mut obj)) if obj.contains_key("faqs") => {
                match obj.remove("faqs") {
                    Some(serde_json::Value::Array(items)) => items,
                    _ => return Err(ParseError::InvalidFaq("\"faqs\" must be an array".into())),
                }
            }
            // A single object on the first line may be JSON lines.
            Ok(serde_json::Value::Object(_)) | Err(_) if trimmed.starts_with('{') => {
                json_lines(src)?
            }
            Ok(_) => {
                return Err(ParseError::InvalidFaq(
                    "expected an array of entries".into(),
                ))
            }
            Err(e) => return Err(ParseError::InvalidFaq(format!("not valid JSON: {e}"))),
        }
    } else {
        return Err(ParseError::InvalidFaq(
            "expected a JSON array, {\"faqs\": [...]} or JSON lines".into(),
        ));
    };
    let mut rows = Rows::default();
    for (i, item) in items.into_iter().enumerate() {
        let row = i as u32 + 1;
        let serde_json::Value::Object(obj) = item else {
            rows.problem(row, "not an object");
            continue;
        };
        let (mut q, mut a, mut alts, mut tags) =
            (String::new(), String::new(), Vec::new(), Vec::new());
        let mut bad = None;
        for (k, v) in obj {
            let strings =
                |v: &serde_json::Value, split: fn(&str) -> Vec<String>| -> Option<Vec<String>> {
                    match v {
                        serde_json::Value::String(s) => Some(split(s)),
                        serde_json::Value::Array(a) => {
                            a.iter().map(|x| x.as_str().map(str::to_owned)).collect()
                        }
                        serde_json::Value::Null => Some(Vec::new()),
                        _ => None,
                    }
                };
            match field(&k) {
                Some(Field::Question) => q = v.as_str().unwrap_or_default().to_owned(),
                Some(Field::Answer) => a = v.as_str().unwrap_or_default().to_owned(),
                Some(Field::Alternatives) => match strings(&v, split_alternatives) {
                    Some(x) => alts = x,
                    None => bad = Some(format!("{k:?} must be a string or an array of strings")),
                },
                Some(Field::Tags) => match strings(&v, split_tags) {
                    Some(x) => tags = x,
                    None => bad = Some(format!("{k:?} must be a string or an array of strings")),
                },
                None => bad = Some(format!("unknown key {k:?}; expected {EXPECTED}")),
            }
        }
        match bad {
            Some(b) => rows.problem(row, b),
            None => rows.push(row, &q, &a, alts, tags),
        }
    }
    rows.finish()
}

fn json_lines(src: &str) -> Result<Vec<serde_json::Value>, ParseError> {
    src.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| ParseError::InvalidFaq(format!("line {}: not valid JSON: {e}", i + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_chinese_headers_alternatives_and_tags() {
        let csv = "问题,答案,相似问题,标签\n怎么退货？,收货7天内在订单页申请。,如何退货|退货流程,售后，退货\n\"Where is my order?\",\"Track it under Orders, then Tracking.\",,shipping\n";
        let e = parse_csv(csv).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].question, "怎么退货？");
        assert_eq!(e[0].alternatives, vec!["如何退货", "退货流程"]);
        assert_eq!(e[0].tags, vec!["售后", "退货"]);
        assert_eq!(e[1].answer, "Track it under Orders, then Tracking.");
        assert_eq!(e[1].location.row, Some(2));
    }

    #[test]
    fn bad_rows_reject_the_file_and_name_the_rows() {
        let err = parse_csv("question,answer\nA?,yes\n,no question\nA?,again\nB?\n").unwrap_err();
        let ParseError::InvalidFaq(msg) = err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("row 2: the question is empty"), "{msg}");
        assert!(
            msg.contains("row 3: repeats the question of row 1"),
            "{msg}"
        );
        assert!(msg.contains("row 4"), "{msg}");
        assert!(
            matches!(parse_csv("question,reply\nA?,yes\n"), Err(ParseError::InvalidFaq(m)) if m.contains("unknown column \"reply\""))
        );
        assert!(
            matches!(parse_csv("answer\nyes\n"), Err(ParseError::InvalidFaq(m)) if m.contains("no question column"))
        );
    }

    #[test]
    fn json_array_object_and_lines() {
        let a = parse_json(
            r#"[{"question":"Q1","answer":"A1","alternatives":["q one"],"tags":"x,y"}]"#,
        )
        .unwrap();
        assert_eq!(a[0].alternatives, vec!["q one"]);
        assert_eq!(a[0].tags, vec!["x", "y"]);
        let b = parse_json(r#"{"faqs":[{"问题":"运费多少","答案":"满99包邮"}]}"#).unwrap();
        assert_eq!(b[0].answer, "满99包邮");
        let c = parse_json(
            "{\"question\":\"Q1\",\"answer\":\"A1\"}\n{\"question\":\"Q2\",\"answer\":\"A2\"}\n",
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert!(
            matches!(parse_json(r#"[{"question":"Q","answer":"A","extra":1}]"#), Err(ParseError::InvalidFaq(m)) if m.contains("unknown key"))
        );
        assert!(matches!(parse_json("[1,"), Err(ParseError::InvalidFaq(_))));
    }
}
