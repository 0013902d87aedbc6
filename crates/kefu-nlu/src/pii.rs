//! PII detection and reversible masking.
//!
//! Detected: Chinese mobile numbers (with or without +86 and separators), landlines with an area code, 400/800
//! service numbers, 18-digit resident ID numbers (GB 11643 checksum and a real birth date verified), bank cards
//! (Luhn-valid, with a card network's prefix and length), e-mail addresses, passport numbers (the Chinese formats anywhere,
//! other formats only after the word passport/护照), IPv4 and IPv6 addresses, and any configured patterns.
//!
//! Digits inside longer digit runs never match (an order number that contains a phone-like run is not a phone), and
//! checksums keep random numbers out: an 18-digit order number passes the ID checksum with probability 1/11 and must
//! also hold a valid birth date.
//!
//! Masking replaces each value with a placeholder such as `[PHONE_1]` (the same value gets the same placeholder) and
//! returns a [`Vault`] that restores them: the text sent to a model or written to a log holds no PII, while the
//! customer's own view and the tools that need the real value can have it back.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Phone,
    IdCard,
    BankCard,
    Email,
    Passport,
    Ip,
    /// A configured pattern, by its label.
    Custom(String),
}

impl PiiKind {
    /// The placeholder stem: `[PHONE_1]`.
    pub fn label(&self) -> String {
        match self {
            PiiKind::Phone => "PHONE".into(),
            PiiKind::IdCard => "ID".into(),
            PiiKind::BankCard => "CARD".into(),
            PiiKind::Email => "EMAIL".into(),
            PiiKind::Passport => "PASSPORT".into(),
            PiiKind::Ip => "IP".into(),
            PiiKind::Custom(l) => l.to_uppercase(),
        }
    }

    /// The kind's name in labelled sets and reports: `phone`, `id_card`, …, `custom:LABEL`.
    pub fn name(&self) -> String {
        match self {
            PiiKind::Phone => "phone".into(),
            PiiKind::IdCard => "id_card".into(),
            PiiKind::BankCard => "bank_card".into(),
            PiiKind::Email => "email".into(),
            PiiKind::Passport => "passport".into(),
            PiiKind::Ip => "ip".into(),
            PiiKind::Custom(l) => format!("custom:{l}"),
        }
    }
}

/// A detected value: byte range in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiSpan {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error("pattern {label:?} is not a valid regular expression: {message}")]
    BadPattern { label: String, message: String },
    #[error("pattern label {0:?} must be 1–20 ASCII letters, digits or underscores")]
    BadLabel(String),
}

macro_rules! re {
    ($name:ident, $pat:expr) => {
        static $name: LazyLock<Regex> =
            LazyLock::new(|| Regex::new($pat).expect("valid built-in pattern"));
    };
}

// Candidates; every match is then checked for digit boundaries and, where there is one, a checksum.
re!(MOBILE, r"(?:\+?86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}");
re!(
    LANDLINE,
    r"(?:\(0\d{2,3}\)\s?|0\d{2,3}[\s-])[2-9]\d{6,7}(?:-\d{1,5})?|[48]00[\s-]?\d{3}[\s-]?\d{4}"
);
re!(ID18, r"[1-9]\d{16}[\dXx]");
re!(CARD, r"[3-6]\d{3}(?:[\s-]?\d{4}){2,3}(?:[\s-]?\d{1,3})?");
re!(
    EMAIL,
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}"
);
re!(PASSPORT_CN, r"[EeGg]\d{8}|[Ee][A-HJ-NP-Za-hj-np-z]\d{7}");
re!(
    PASSPORT_CTX,
    r"(?i)(?:passport|护照)[^A-Za-z0-9]{0,12}(?:no\.?|number|号码?|号)?[^A-Za-z0-9]{0,6}([A-Z]{1,2}\d{6,9})"
);
re!(
    IPV4,
    r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
);
re!(
    IPV6,
    r"(?i)(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}:){1,7}:(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?"
);

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// True when the match touches more digits (or letters, for alphanumeric codes) on either side.
fn embedded(text: &str, start: usize, end: usize, alnum: bool) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let touches = |c: Option<char>| {
        c.is_some_and(|c| c.is_ascii_digit() || (alnum && c.is_ascii_alphabetic()) || c == '_')
    };
    touches(before) || touches(after)
}

/// GB 11643-1999: weighted sum of the first 17 digits mod 11 selects the check character; digits 7–14 are a real date.
pub fn valid_id18(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const C: &[u8; 11] = b"10X98765432";
    let sum: u32 = b[..17]
        .iter()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    if C[(sum % 11) as usize] != b[17].to_ascii_uppercase() {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    let (y, m, d) = (num(6..10), num(10..12), num(12..14));
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1900..=2100).contains(&y) && (1..=days).contains(&d)
}

pub fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// A length and prefix some card network issues (UnionPay 62, Visa 4, Mastercard 51–55, Amex 34/37, JCB 35,
/// Discover 60/64/65): 13-digit product barcodes and other Luhn-valid numbers stay out.
fn card_network(d: &str) -> bool {
    let n = d.len();
    let p2: u32 = d.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
    match p2 {
        34 | 37 => n == 15,
        35 | 51..=55 | 60 | 64 | 65 => n == 16,
        40..=49 => n == 16 || n == 19,
        62 => (16..=19).contains(&n),
        _ => false,
    }
}

#[derive(Clone, Default)]
pub struct PiiDetector {
    custom: Vec<(String, Regex)>,
}

impl PiiDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a configured pattern, e.g. `("member_id", r"VIP\d{8}")`; its values mask as `[MEMBER_ID_1]`.
    pub fn with_pattern(mut self, label: &str, pattern: &str) -> Result<Self, PiiError> {
        if label.is_empty()
            || label.len() > 20
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(PiiError::BadLabel(label.to_owned()));
        }
        let re = Regex::new(pattern).map_err(|e| PiiError::BadPattern {
            label: label.to_owned(),
            message: e.to_string(),
        })?;
        self.custom.push((label.to_owned(), re));
        Ok(self)
    }

    /// Every detected value, in text order, non-overlapping (on overlap the earlier-listed kind wins: configured
    /// patterns, e-mail, ID, card, passport, phone, IP).
    pub fn detect(&self, text: &str) -> Vec<PiiSpan> {
        let mut found: Vec<PiiSpan> = Vec::new();
        let mut push = |kind: PiiKind, start: usize, end: usize| {
            if !found.iter().any(|s| start < s.end && s.start < end) {
                found.push(PiiSpan { kind, start, end });
            }
        };
        for (label, re) in &self.custom {
            for m in re.find_iter(text) {
                if m.start() < m.end() {
                    push(PiiKind::Custom(label.clone()), m.start(), m.end());
                }
            }
        }
        for m in EMAIL.find_iter(text) {
            push(PiiKind::Email, m.start(), m.end());
        }
        for m in ID18.find_iter(text) {
            if !embedded(text, m.start(), m.end(), true) && valid_id18(m.as_str()) {
                push(PiiKind::IdCard, m.start(), m.end());
            }
        }
        for m in CARD.find_iter(text) {
            let d = digits(m.as_str());
            let (mut start, mut end) = (m.start(), m.end());
            // A trailing separator-less group may have been swallowed from a following number: trim to the digits.
            while text[..end].ends_with([' ', '-']) {
                end -= 1;
            }
            while text[start..].starts_with([' ', '-']) {
                start += 1;
            }
            if card_network(&d) && !embedded(text, start, end, true) && luhn(&d) {
                push(PiiKind::BankCard, start, end);
            }
        }
        for m in PASSPORT_CN.find_iter(text) {
            if !embedded(text, m.start(), m.end(), true) {
                push(PiiKind::Passport, m.start(), m.end());
            }
        }
        for c in PASSPORT_CTX.captures_iter(text) {
            if let Some(m) = c.get(1) {
                if !embedded(text, m.start(), m.end(), true) {
                    push(PiiKind::Passport, m.start(), m.end());
                }
            }
        }
        for m in MOBILE.find_iter(text).chain(LANDLINE.find_iter(text)) {
            if !embedded(text, m.start(), m.end(), false) {
                push(PiiKind::Phone, m.start(), m.end());
            }
        }
        for m in IPV4.find_iter(text) {
            let dotted = |c: Option<char>| c.is_some_and(|c| c == '.' || c.is_ascii_digit());
            let (before, after) = (
                text[..m.start()].chars().next_back(),
                text[m.end()..].chars().next(),
            );
            // `v1.2.3.4` and `version 1.2.3.4` are versions, `1.2.3.4.5` is not an address.
            let lead: String = text[..m.start()]
                .chars()
                .rev()
                .take(12)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let lead = lead.to_lowercase();
            let version = lead.ends_with('v') || lead.contains("version") || lead.contains("版本");
            if !dotted(before) && !dotted(after) && !version {
                push(PiiKind::Ip, m.start(), m.end());
            }
        }
        for m in IPV6.find_iter(text) {
            let s = m.as_str();
            // Times (12:30:45) and ratios are not addresses: require hex letters or a `::`.
            if s.matches(':').count() >= 2
                && (s.contains("::") || s.chars().any(|c| c.is_ascii_alphabetic()))
            {
                push(PiiKind::Ip, m.start(), m.end());
            }
        }
        found.sort_by_key(|s| s.start);
        found
    }

    /// Replaces every detected value with a placeholder; the vault restores them. Detection runs again on the
    /// result until nothing is found, because masking one value can change the context of a neighbour (an address
    /// right after an e-mail), so the output never holds anything the detector would flag.
    pub fn mask(&self, text: &str) -> Masked {
        let mut vault = Vault::default();
        let text = self.mask_with(text, &mut vault);
        Masked { text, vault }
    }

    /// [`mask`](Self::mask) with a vault shared across texts (the messages of one conversation), so the same value
    /// gets the same placeholder in every message and one vault restores them all.
    pub fn mask_with(&self, text: &str, vault: &mut Vault) -> String {
        let mut current = text.to_owned();
        for _ in 0..4 {
            let spans = self.detect(&current);
            if spans.is_empty() {
                break;
            }
            let mut out = String::with_capacity(current.len());
            let mut last = 0;
            for span in spans {
                out.push_str(&current[last..span.start]);
                out.push_str(&vault.placeholder(&span.kind, &current[span.start..span.end]));
                last = span.end;
            }
            out.push_str(&current[last..]);
            current = out;
        }
        current
    }
}

/// Masked text and the values behind its placeholders.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Masked {
    pub text: String,
    pub vault: Vault,
}

/// Placeholder ↔ value. Serialisable, so a conversation can keep one across turns (same value, same placeholder).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Vault {
    values: Vec<(String, String)>,
    #[serde(skip)]
    by_value: HashMap<String, usize>,
    counters: HashMap<String, usize>,
}

impl Vault {
    fn placeholder(&mut self, kind: &PiiKind, value: &str) -> String {
        if self.by_value.is_empty() && !self.values.is_empty() {
            self.by_value = self
                .values
                .iter()
                .enumerate()
                .map(|(i, (_, v))| (v.clone(), i))
                .collect();
        }
        if let Some(&i) = self.by_value.get(value) {
            return self.values[i].0.clone();
        }
        let label = kind.label();
        let n = self.counters.entry(label.clone()).or_insert(0);
        *n += 1;
        let p = format!("[{label}_{n}]");
        self.by_value.insert(value.to_owned(), self.values.len());
        self.values.push((p.clone(), value.to_owned()));
        p
    }

    /// Puts the real values back (placeholders the vault does not know are left as they are).
    pub fn restore(&self, text: &str) -> String {
        let mut out = text.to_owned();
        // Newest first: a value found in a later masking round may contain an earlier placeholder. The closing
        // bracket keeps `[PHONE_1]` from matching inside `[PHONE_10]`.
        for (p, v) in self.values.iter().rev() {
            out = out.replace(p.as_str(), v);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kinds(text: &str) -> Vec<(PiiKind, &str)> {
        PiiDetector::new()
            .detect(text)
            .into_iter()
            .map(|s| (s.kind, &text[s.start..s.end]))
            .collect()
    }

    #[test]
    fn checksums() {
        assert!(valid_id18("11010519491231002X"));
        assert!(!valid_id18("110105194912310021"));
        assert!(!valid_id18("110105194913310028"), "month 13");
        assert!(luhn("4111111111111111"));
        assert!(!luhn("4111111111111112"));
    }

    #[test]
    fn finds_each_kind_in_chinese_and_english() {
        let t = "我的手机13812345678，座机010-62345678，身份证11010519491231002X，卡号6222 0212 3456 7890 127 不对，\
                 Visa 4111 1111 1111 1111, mail li.lei@example.com.cn, 护照号E12345678, server 192.168.1.20, \
                 v6 2001:db8::1, passport no. K1234567";
        let got = kinds(t);
        let want = [
            (PiiKind::Phone, "13812345678"),
            (PiiKind::Phone, "010-62345678"),
            (PiiKind::IdCard, "11010519491231002X"),
            (PiiKind::BankCard, "4111 1111 1111 1111"),
            (PiiKind::Email, "li.lei@example.com.cn"),
            (PiiKind::Passport, "E12345678"),
            (PiiKind::Ip, "192.168.1.20"),
            (PiiKind::Ip, "2001:db8::1"),
            (PiiKind::Passport, "K1234567"),
        ];
        for w in &want {
            assert!(got.contains(w), "missing {w:?} in {got:?}");
        }
        assert!(
            !got.iter().any(|(_, v)| v.contains("6222 0212")),
            "not Luhn-valid: {got:?}"
        );
    }

    #[test]
    fn hard_negatives_are_left_alone() {
        for t in [
            "订单号202611210001234567已发货",
            "运单号SF1234567890123",
            "2026-11-21 12:30:45 下单，金额¥1,299.00",
            "version 1.2.3.4 released",
            "商品编码 6901234567892",
            "订单 138123456789012",
            "时间 10:20:30:40",
        ] {
            assert!(kinds(t).is_empty(), "{t}: {:?}", kinds(t));
        }
    }

    #[test]
    fn masking_is_reversible_and_stable_per_value() {
        let d = PiiDetector::new()
            .with_pattern("member", r"VIP\d{6}")
            .unwrap();
        let m = d.mask("call 13812345678 or 13812345678, member VIP123456, alt +86 139-1234-5678");
        assert_eq!(
            m.text,
            "call [PHONE_1] or [PHONE_1], member [MEMBER_1], alt [PHONE_2]"
        );
        assert_eq!(
            m.vault.restore(&m.text),
            "call 13812345678 or 13812345678, member VIP123456, alt +86 139-1234-5678"
        );
        assert!(PiiDetector::new().with_pattern("bad label", "x").is_err());
        assert!(PiiDetector::new().with_pattern("x", "(").is_err());
    }

    proptest! {
        #[test]
        fn masked_text_holds_no_detected_value_and_restores_exactly(
            parts in prop::collection::vec(prop_oneof![
                Just("13812345678".to_string()),
                Just("11010519491231002X".to_string()),
                Just("4111111111111111".to_string()),
                Just("a.b@c.io".to_string()),
                Just("10.0.0.1".to_string()),
                Just("订单".to_string()),
                Just(" ".to_string()),
                "[0-9]{1,20}",
                "[a-z@.:]{0,8}",
                "[\\u4e00-\\u9fa5]{0,4}",
            ], 0..20)
        ) {
            let text = parts.concat();
            let d = PiiDetector::new();
            let m = d.mask(&text);
            prop_assert_eq!(m.vault.restore(&m.text), text.clone());
            let mut values: Vec<&str> = d.detect(&text).iter().map(|s| &text[s.start..s.end]).collect();
            values.sort();
            values.dedup();
            prop_assert!(m.vault.len() >= values.len());
            // Nothing the detector would flag survives masking.
            prop_assert!(d.detect(&m.text).is_empty(), "{:?} -> {:?}", text, m.text);
        }
    }
}
