//! Language of a customer message. Chinese is decided by script, counting two Han characters (about one Chinese
//! word) against each Latin word, so "我的order还没到" is Chinese with English mixed in and "Where is my 快递?" English
//! with Chinese; kana and hangul decide Japanese and Korean; other text goes to whatlang's trigram model, limited to
//! the languages kefu names; Cyrillic is Russian or Ukrainian by its letters. @handles, #tags and web addresses are
//! left out. Very short Latin text ("ok", "refund?") is English unless whatlang is confident otherwise: customers of
//! a zh/en service write short English far more often than short Spanish.

use std::borrow::Cow;
use std::sync::LazyLock;

use serde::Serialize;
use whatlang::Lang;

use crate::text::is_han;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LanguageGuess {
    /// ISO 639-1 code where one exists (`zh`, `en`, `ja`, `es`, …), ISO 639-3 otherwise, `und` for no letters.
    pub lang: String,
    /// 0–1: how sure the guess is.
    pub confidence: f32,
    /// Chinese and Latin-script words in the same message.
    pub mixed: bool,
}

/// The languages kefu names, with their ISO 639-1 codes; whatlang only chooses among these. It knows 69, and on
/// short messages the others are mostly misreadings of these: Russian read as Bulgarian or Macedonian, an English
/// tweet as Afrikaans or Latin (`kefu eval language`, bench/RESULTS.md).
const LANGUAGES: &[(Lang, &str)] = &[
    (Lang::Eng, "en"),
    (Lang::Cmn, "zh"),
    (Lang::Spa, "es"),
    (Lang::Fra, "fr"),
    (Lang::Deu, "de"),
    (Lang::Por, "pt"),
    (Lang::Ita, "it"),
    (Lang::Rus, "ru"),
    (Lang::Ukr, "uk"),
    (Lang::Jpn, "ja"),
    (Lang::Kor, "ko"),
    (Lang::Vie, "vi"),
    (Lang::Tha, "th"),
    (Lang::Ind, "id"),
    (Lang::Ara, "ar"),
    (Lang::Tur, "tr"),
    (Lang::Nld, "nl"),
    (Lang::Pol, "pl"),
    (Lang::Hin, "hi"),
    (Lang::Swe, "sv"),
    (Lang::Dan, "da"),
    (Lang::Fin, "fi"),
    (Lang::Ell, "el"),
    (Lang::Heb, "he"),
    (Lang::Ces, "cs"),
    (Lang::Ron, "ro"),
    (Lang::Hun, "hu"),
    (Lang::Tgl, "tl"),
    (Lang::Nob, "nb"),
];

fn iso639_1(lang: Lang) -> String {
    match LANGUAGES.iter().find(|(l, _)| *l == lang) {
        Some((_, code)) => (*code).to_owned(),
        None => lang.code().to_owned(),
    }
}

static DETECTOR: LazyLock<whatlang::Detector> = LazyLock::new(|| {
    whatlang::Detector::with_allowlist(LANGUAGES.iter().map(|(l, _)| *l).collect())
});

/// `text` without @handles, #tags and web addresses, which carry no language (a trigram model reads a tweet's
/// handles as French); `text` itself when nothing with letters is left.
fn prose(text: &str) -> Cow<'_, str> {
    if !text.contains(['@', '#']) && !text.contains("://") && !text.contains("www.") {
        return Cow::Borrowed(text);
    }
    let kept: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !(w.starts_with(['@', '#']) || w.contains("://") || w.starts_with("www.")))
        .collect();
    let kept = kept.join(" ");
    if kept.chars().any(char::is_alphabetic) {
        Cow::Owned(kept)
    } else {
        Cow::Borrowed(text)
    }
}

/// Frequent function words of the Latin-script languages a shop widget sees most. Short messages carry too few
/// trigrams for whatlang (it reads a plain French question as Portuguese), but they almost always carry two or
/// three of these.
const FUNCTION_WORDS: &[(&str, &[&str])] = &[
    (
        "en",
        &[
            "the", "is", "my", "i", "you", "it", "and", "to", "of", "a", "where", "what", "when",
            "how", "have", "has", "was", "not", "can", "please", "this", "for", "with", "order",
            "do", "does", "why", "me",
        ],
    ),
    (
        "fr",
        &[
            "le", "la", "les", "est", "je", "vous", "et", "de", "des", "une", "un", "mon", "ma",
            "mes", "pas", "pour", "avec", "où", "quand", "comment", "que", "qui", "sera", "merci",
            "bonjour", "il", "ai", "sont", "au", "du",
        ],
    ),
    (
        "es",
        &[
            "el", "la", "los", "las", "es", "yo", "mi", "usted", "y", "de", "del", "una", "un",
            "no", "para", "con", "dónde", "cuándo", "cómo", "que", "qué", "por", "gracias", "hola",
            "está", "pedido", "hace",
        ],
    ),
    (
        "de",
        &[
            "der", "die", "das", "ist", "ich", "sie", "und", "zu", "von", "ein", "eine", "mein",
            "meine", "nicht", "für", "mit", "wo", "wann", "wie", "was", "bitte", "danke", "habe",
            "hallo", "vor",
        ],
    ),
    (
        "pt",
        &[
            "o", "os", "as", "é", "eu", "meu", "minha", "você", "e", "do", "da", "um", "uma",
            "não", "para", "com", "onde", "quando", "como", "que", "obrigado", "olá", "está", "há",
            "pedido",
        ],
    ),
    (
        "it",
        &[
            "il", "lo", "gli", "è", "io", "mio", "mia", "lei", "e", "di", "del", "della", "uno",
            "una", "non", "per", "con", "dove", "quando", "come", "che", "grazie", "ciao", "ho",
            "fa",
        ],
    ),
    (
        "nl",
        &[
            "de", "het", "een", "is", "ik", "mijn", "u", "jij", "en", "van", "niet", "voor", "met",
            "waar", "wanneer", "hoe", "wat", "bedankt", "hallo", "heb", "geleden",
        ],
    ),
    (
        "id",
        &[
            "saya",
            "anda",
            "dan",
            "yang",
            "di",
            "ke",
            "dari",
            "tidak",
            "untuk",
            "dengan",
            "mana",
            "kapan",
            "bagaimana",
            "apa",
            "terima",
            "kasih",
            "pesanan",
            "sudah",
            "belum",
            "ini",
            "itu",
        ],
    ),
];

fn by_function_words(text: &str) -> Option<&'static str> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphabetic() || c == '\''))
        .flat_map(|w| w.split('\''))
        .filter(|w| !w.is_empty())
        .collect();
    if words.len() < 3 {
        return None;
    }
    let mut scores: Vec<(&str, usize)> = FUNCTION_WORDS
        .iter()
        .map(|(lang, list)| (*lang, words.iter().filter(|w| list.contains(w)).count()))
        .collect();
    scores.sort_by_key(|s| std::cmp::Reverse(s.1));
    // A clear winner only: at least two function words and more than the runner-up.
    (scores[0].1 >= 2 && scores[0].1 > scores[1].1).then_some(scores[0].0)
}

/// Guesses the language of `text` (only its first 2,000 characters are read).
pub fn detect(text: &str) -> LanguageGuess {
    let text = crate::text::clip(text, 2000);
    let text: &str = &prose(text);
    let (mut han, mut kana, mut hangul, mut cyrillic, mut latin_words, mut letters) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    let mut in_latin_word = false;
    for c in text.chars() {
        let latin = crate::text::is_latin_letter(c);
        if latin && !in_latin_word {
            latin_words += 1;
        }
        in_latin_word = latin;
        if is_han(c) {
            han += 1;
        } else if matches!(c as u32, 0x3040..=0x30FF) {
            kana += 1;
        } else if matches!(c as u32, 0xAC00..=0xD7AF | 0x1100..=0x11FF) {
            hangul += 1;
        } else if matches!(c as u32, 0x0400..=0x04FF) {
            cyrillic += 1;
        }
        if c.is_alphabetic() {
            letters += 1;
        }
    }
    if letters == 0 {
        return LanguageGuess {
            lang: "und".into(),
            confidence: 0.0,
            mixed: false,
        };
    }
    let guess = |lang: &str, confidence: f32, mixed: bool| LanguageGuess {
        lang: lang.to_owned(),
        confidence,
        mixed,
    };
    if kana > 0 && kana * 5 >= han + kana {
        return guess("ja", 0.95, latin_words > 0);
    }
    if hangul > 0 && hangul * 2 >= hangul + han {
        return guess("ko", 0.95, latin_words > 0);
    }
    if han > 0 {
        // A Chinese word is about two characters: two Han characters weigh as much as one Latin word, so "Where is
        // my 快递?" is English with a Chinese word in it and "我的order还没到" Chinese with an English one.
        let words = han as f32 / 2.0;
        let share = words / (words + latin_words as f32);
        if share >= 0.3 {
            return guess("zh", share.clamp(0.5, 1.0), latin_words > 0);
        }
    }
    if cyrillic * 2 >= letters {
        // Russian and Ukrainian share most letters, and a short message's trigrams cannot tell them apart; Ukrainian
        // text almost always has one of і ї є ґ, which Russian does not use.
        let ukrainian = text.contains(['і', 'ї', 'є', 'ґ', 'І', 'Ї', 'Є', 'Ґ']);
        return guess(if ukrainian { "uk" } else { "ru" }, 0.9, han > 0);
    }
    if let Some(lang) = by_function_words(text) {
        return guess(lang, 0.8, han > 0);
    }
    // Emoji, curly quotes and the like do not make a message less English: only its letters count here.
    let ascii_letters = text
        .chars()
        .filter(|c| c.is_alphabetic())
        .all(|c| c.is_ascii());
    let info = DETECTOR.detect(text);
    match info {
        Some(i) if i.is_reliable() || !ascii_letters => {
            guess(&iso639_1(i.lang()), i.confidence() as f32, han > 0)
        }
        // Short or ambiguous ASCII text: English, unless whatlang leans elsewhere with some confidence.
        Some(i) if i.lang() != Lang::Eng && i.confidence() > 0.5 && latin_words >= 4 => {
            guess(&iso639_1(i.lang()), i.confidence() as f32, han > 0)
        }
        _ if ascii_letters || latin_words > 0 => guess("en", 0.5, han > 0),
        Some(i) => guess(&iso639_1(i.lang()), i.confidence() as f32, han > 0),
        None => guess("und", 0.0, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_english_and_the_mix() {
        assert_eq!(detect("我的快递什么时候到？").lang, "zh");
        assert_eq!(detect("退貨怎麼辦理").lang, "zh");
        let mixed = detect("我的order还没到，tracking number是多少");
        assert_eq!(mixed.lang, "zh");
        assert!(mixed.mixed);
        assert_eq!(detect("Where is my order? It has been a week.").lang, "en");
        assert_eq!(detect("refund?").lang, "en");
        assert_eq!(detect("ok").lang, "en");
        let en_with_name = detect("I bought the 小米 charger and it broke after two days of use");
        assert_eq!(en_with_name.lang, "en");
        assert!(en_with_name.mixed);
    }

    #[test]
    fn common_languages_of_a_widget() {
        for (text, want) in [
            ("¿Dónde está mi pedido? Lo compré hace una semana.", "es"),
            (
                "Où est ma commande ? Je l'ai achetée il y a une semaine.",
                "fr",
            ),
            (
                "Bonjour, je voudrais savoir quand ma commande sera livrée, merci beaucoup.",
                "fr",
            ),
            ("Dov'è il mio ordine? L'ho comprato una settimana fa.", "it"),
            (
                "Waar is mijn bestelling? Ik heb het een week geleden gekocht.",
                "nl",
            ),
            (
                "Pesanan saya di mana? Saya membelinya seminggu yang lalu.",
                "id",
            ),
            (
                "Wo ist meine Bestellung? Ich habe sie vor einer Woche gekauft.",
                "de",
            ),
            ("Где мой заказ? Я купил его неделю назад.", "ru"),
            ("注文した商品はいつ届きますか？", "ja"),
            ("주문한 상품이 언제 도착하나요?", "ko"),
            ("Onde está o meu pedido? Comprei há uma semana.", "pt"),
            (
                "Đơn hàng của tôi đang ở đâu? Tôi đã mua một tuần trước.",
                "vi",
            ),
            ("คำสั่งซื้อของฉันอยู่ที่ไหน", "th"),
            ("أين طلبي؟ لقد اشتريته منذ أسبوع", "ar"),
        ] {
            assert_eq!(detect(text).lang, want, "{text}");
        }
    }

    #[test]
    fn short_messages_of_the_widget_and_its_channels() {
        // Each of these was misread before `kefu eval language` (session 32): Russian as Bulgarian, Macedonian or
        // Ukrainian, Spanish as Catalan, an English sentence with a Chinese noun as Chinese, tweets with handles or
        // emoji as French, German or Turkish.
        for (text, want, mixed) in [
            ("Здравствуйте, где мой заказ?", "ru", false),
            ("Оплата не прошла, почему?", "ru", false),
            ("Коли я отримаю гроші?", "uk", false),
            ("El producto llegó roto", "es", false),
            ("Where is my 快递?", "en", true),
            ("Can I pay with 支付宝?", "en", true),
            ("我要cancel这个订单", "zh", true),
            (
                "@VirginAmerica Congrats VX on the new route! ✈️🎉",
                "en",
                false,
            ),
            ("@united thats weak. See ya 👋", "en", false),
            (
                "@VirginAmerica @freddieawards Done and done! Best airline around, hands down!",
                "en",
                false,
            ),
        ] {
            let got = detect(text);
            assert_eq!((got.lang.as_str(), got.mixed), (want, mixed), "{text}");
        }
        // A handle alone is still read rather than dropped.
        assert_eq!(detect("@united").lang, "en");
    }

    #[test]
    fn no_letters_is_undetermined() {
        assert_eq!(detect("").lang, "und");
        assert_eq!(detect("12345 ?!").lang, "und");
        assert_eq!(detect("😀\u{0}").lang, "und");
    }
}
