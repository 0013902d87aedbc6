//! Labelled examples for training: CSV with a header (`text,intent`; also `category`/`label`, or Chinese `文本`,
//! `问题`, `意图`, `类别`), a JSON array of `{"text", "intent"}` objects, or JSON lines. Checked before anything is
//! trained: unknown columns, empty texts, one class, duplicate rows and one text under two intents are errors that
//! name the line.

use std::collections::HashMap;

use serde::Deserialize;

use crate::NluError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Example {
    pub text: String,
    pub intent: String,
}

impl Example {
    pub fn new(text: impl Into<String>, intent: impl Into<String>) -> Self {
        Example {
            text: text.into(),
            intent: intent.into(),
        }
    }
}

const TEXT_COLUMNS: &[&str] = &["text", "question", "utterance", "文本", "问题", "句子"];
const INTENT_COLUMNS: &[&str] = &["intent", "category", "label", "意图", "类别", "标签"];

/// Parses and checks a training file by its extension (`.csv`, `.json`, `.jsonl`).
pub fn parse(name: &str, bytes: &[u8]) -> Result<Vec<Example>, NluError> {
    let examples = read(name, bytes)?;
    validate(&examples)?;
    Ok(examples)
}

/// Reads rows without checking them (public datasets with known repeats are de-duplicated by their loaders).
pub fn read(name: &str, bytes: &[u8]) -> Result<Vec<Example>, NluError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| NluError::BadTrainingFile("the file is not UTF-8 text".into()))?;
    let text = text.trim_start_matches('\u{feff}');
    let lower = name.to_ascii_lowercase();
    let examples = if lower.ends_with(".csv") {
        parse_csv(text)?
    } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            out.push(parse_json_row(line, n + 1)?);
        }
        out
    } else if lower.ends_with(".json") {
        let rows: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| {
            NluError::BadTrainingFile(format!(
                "expected a JSON array of {{\"text\", \"intent\"}}: {e}"
            ))
        })?;
        rows.into_iter()
            .enumerate()
            .map(|(i, v)| parse_json_row(&v.to_string(), i + 1))
            .collect::<Result<_, _>>()?
    } else {
        return Err(NluError::BadTrainingFile(format!(
            "{name}: unsupported file type (use .csv, .json or .jsonl)"
        )));
    };
    Ok(examples)
}

/// Keeps the first row of each text (compared trimmed), trimming it; returns how many were dropped.
pub fn dedupe(examples: &mut Vec<Example>) -> usize {
    let before = examples.len();
    let mut seen = std::collections::HashSet::new();
    examples.retain_mut(|e| {
        e.text = e.text.trim().to_owned();
        seen.insert(e.text.clone())
    });
    before - examples.len()
}

fn parse_json_row(s: &str, n: usize) -> Result<Example, NluError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Row {
        text: String,
        #[serde(alias = "label", alias = "category")]
        intent: String,
    }
    let r: Row = serde_json::from_str(s).map_err(|e| {
        NluError::BadTrainingFile(format!("row {n}: {e} (expected {{\"text\", \"intent\"}})"))
    })?;
    Ok(Example::new(r.text, r.intent))
}

fn parse_csv(text: &str) -> Result<Vec<Example>, NluError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| NluError::BadTrainingFile(format!("cannot read the CSV header: {e}")))?
        .clone();
    let (mut text_col, mut intent_col) = (None, None);
    for (i, h) in headers.iter().enumerate() {
        let h = h.trim().to_lowercase();
        if TEXT_COLUMNS.contains(&h.as_str()) && text_col.is_none() {
            text_col = Some(i);
        } else if INTENT_COLUMNS.contains(&h.as_str()) && intent_col.is_none() {
            intent_col = Some(i);
        } else {
            return Err(NluError::BadTrainingFile(format!(
                "unknown column {h:?}: expected one text column ({}) and one intent column ({})",
                TEXT_COLUMNS.join(", "),
                INTENT_COLUMNS.join(", ")
            )));
        }
    }
    let (Some(tc), Some(ic)) = (text_col, intent_col) else {
        return Err(NluError::BadTrainingFile(
            "the header needs a text column and an intent column (for example `text,intent`)"
                .into(),
        ));
    };
    let mut out = Vec::new();
    for (n, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| NluError::BadTrainingFile(format!("line {}: {e}", n + 2)))?;
        out.push(Example::new(
            rec.get(tc).unwrap_or_default(),
            rec.get(ic).unwrap_or_default(),
        ));
    }
    Ok(out)
}

/// Errors for data no classifier should be trained on.
pub fn validate(examples: &[Example]) -> Result<(), NluError> {
    let mut seen: HashMap<&str, (usize, &str)> = HashMap::new();
    for (i, e) in examples.iter().enumerate() {
        let row = i + 1;
        if e.text.trim().is_empty() {
            return Err(NluError::BadTrainingFile(format!(
                "row {row}: the text is empty"
            )));
        }
        if e.intent.trim().is_empty() {
            return Err(NluError::BadTrainingFile(format!(
                "row {row}: the intent is empty"
            )));
        }
        if e.text.len() > 4096 {
            return Err(NluError::BadTrainingFile(format!(
                "row {row}: the text is longer than 4096 bytes; training examples are single messages"
            )));
        }
        match seen.get(e.text.trim()) {
            Some((first, intent)) if *intent == e.intent => {
                return Err(NluError::BadTrainingFile(format!(
                    "row {row} repeats row {first} ({:?}); remove the duplicate",
                    e.text
                )))
            }
            Some((first, intent)) => {
                return Err(NluError::BadTrainingFile(format!(
                    "row {row}: {:?} is labelled {:?} here and {intent:?} in row {first}",
                    e.text, e.intent
                )))
            }
            None => {
                seen.insert(e.text.trim(), (row, e.intent.as_str()));
            }
        }
    }
    let mut classes: Vec<&str> = examples.iter().map(|e| e.intent.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    if classes.len() < 2 {
        return Err(NluError::BadTrainingFile(format!(
            "a classifier needs at least two intents; this file has {}",
            classes.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(name: &str, body: &str) -> String {
        parse(name, body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn reads_csv_json_and_jsonl_with_chinese_headers() {
        let csv = "\u{feff}文本,意图\n我要退货,return\n快递到哪了,tracking\n";
        let ex = parse("a.csv", csv.as_bytes()).unwrap();
        assert_eq!(ex[1], Example::new("快递到哪了", "tracking"));
        let json = r#"[{"text":"a","intent":"x"},{"text":"b","label":"y"}]"#;
        assert_eq!(parse("a.json", json.as_bytes()).unwrap().len(), 2);
        let jsonl = "{\"text\":\"a\",\"intent\":\"x\"}\n\n{\"text\":\"b\",\"intent\":\"y\"}\n";
        assert_eq!(parse("a.jsonl", jsonl.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn bad_files_are_named_errors() {
        assert!(err("a.csv", "text,intent,extra\na,b,c\n").contains("unknown column \"extra\""));
        assert!(err("a.csv", "text\na\n").contains("intent column"));
        assert!(err("a.csv", "text,intent\na,x\nb,x\n").contains("at least two intents"));
        assert!(err("a.csv", "text,intent\na,x\nb,y\na,x\n").contains("row 3 repeats row 1"));
        assert!(
            err("a.csv", "text,intent\na,x\nb,y\na,y\n").contains("labelled \"y\" here and \"x\"")
        );
        assert!(err("a.csv", "text,intent\n ,x\nb,y\n").contains("row 1: the text is empty"));
        assert!(err("a.json", r#"[{"text":"a","intent":"x","who":1}]"#).contains("unknown field"));
        assert!(err("a.txt", "x").contains("unsupported file type"));
        assert!(parse("a.csv", &[0xff, 0xfe, 0x00]).is_err());
    }
}
