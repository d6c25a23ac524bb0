//! Byte-level BPE tokenizer (Hugging Face `tokenizers`) with CLIP's start/end tokens.

use std::path::Path;

use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::{Lowercase, NFC, NormalizerWrapper, Sequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{DataError, Result};
use crate::shard::{ShardReader, ShardSet};

/// CLIP's start-of-text token, put first in every row.
pub const START_TOKEN: &str = "<|startoftext|>";
/// CLIP's end-of-text token, put after the last caption token.
pub const END_TOKEN: &str = "<|endoftext|>";
/// Padding token of trained vocabularies; it takes id 0 so that padding with 0 is unambiguous.
pub const PAD_TOKEN: &str = "<|pad|>";
/// Vocabulary size suited to the tiny models and built-in benchmarks.
pub const DEFAULT_VOCAB_SIZE: usize = 1024;

/// Token ids of a batch, padded to a fixed context length.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenBatch {
    /// `batch · context_len` ids, row-major, padded with 0.
    pub ids: Vec<u32>,
    /// Position of the end token in each row (CLIP pools the text feature there).
    pub eot_positions: Vec<usize>,
    /// Ids per row.
    pub context_len: usize,
}

impl TokenBatch {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.eot_positions.len()
    }
    /// Whether the batch has no row.
    pub fn is_empty(&self) -> bool {
        self.eot_positions.is_empty()
    }
    /// Row `i` of the id matrix.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.ids[i * self.context_len..(i + 1) * self.context_len]
    }
}

/// Caption tokenizer: `<|startoftext|> tokens… <|endoftext|> 0 0 …`.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    sot: u32,
    eot: u32,
}

fn tok_err(e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer(e.to_string())
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("vocab_size", &self.vocab_size()).finish()
    }
}

impl TextTokenizer {
    fn from_inner(inner: Tokenizer) -> Result<Self> {
        let id = |t: &str| {
            inner.token_to_id(t).ok_or_else(|| DataError::Tokenizer(format!("vocabulary has no `{t}` token")))
        };
        Ok(Self { sot: id(START_TOKEN)?, eot: id(END_TOKEN)?, inner })
    }

    /// Trains a lower-casing byte-level BPE with `vocab_size` entries on `captions`.
    pub fn train<S: AsRef<str> + Send>(captions: impl Iterator<Item = S> + Send, vocab_size: usize) -> Result<Self> {
        // 256 byte symbols + 3 specials is the floor of a byte-level vocabulary.
        if vocab_size < 260 {
            return Err(DataError::Invalid(format!("vocab size {vocab_size} is below the byte-level minimum of 260")));
        }
        let specials = [PAD_TOKEN, START_TOKEN, END_TOKEN].iter().map(|t| AddedToken::from(*t, true)).collect();
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(specials)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        let mut tok = Tokenizer::new(BPE::default());
        tok.with_normalizer(Some(NormalizerWrapper::from(Sequence::new(vec![NFC.into(), Lowercase.into()]))));
        tok.with_pre_tokenizer(Some(ByteLevel::new(true, true, true)));
        tok.with_decoder(Some(ByteLevel::default()));
        tok.train(&mut trainer, captions).map_err(tok_err)?;
        Self::from_inner(tok)
    }

    /// Trains on the non-empty captions of a shard set (images are not decoded).
    pub fn train_from_shards(set: &ShardSet, vocab_size: usize) -> Result<Self> {
        let mut captions = Vec::new();
        for s in &set.shards {
            ShardReader::open(&s.path)?.for_each(|r| {
                if let Some(c) = r.caption.filter(|c| !c.is_empty()) {
                    captions.push(c);
                }
            });
        }
        if captions.is_empty() {
            return Err(DataError::Invalid("no captions to train the tokenizer on".into()));
        }
        Self::train(captions.into_iter(), vocab_size)
    }

    /// Loads a `tokenizer.json` (ours or e.g. CLIP's, which has the same special tokens).
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(DataError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer.json not found"),
            ));
        }
        Self::from_inner(Tokenizer::from_file(path).map_err(tok_err)?)
    }

    /// CLIP's tokenizer, built from OpenAI's BPE merges file `bpe_simple_vocab_16e6.txt.gz` (as
    /// shipped with open_clip; gzip-compressed or plain text), with the ids of open_clip's
    /// `SimpleTokenizer`: 49 408 tokens, `<|startoftext|>` = 49406, `<|endoftext|>` = 49407, and
    /// [`encode_batch`](Self::encode_batch) rows equal to open_clip's `tokenize()` (a test checks
    /// this on several hundred varied sentences). Padding is id 0, which in CLIP's vocabulary is
    /// the symbol `!`: decode a row only up to its end token. Decoding, like `SimpleTokenizer`'s,
    /// puts a space after every word (`a photo .` for `a photo.`).
    ///
    /// The normalizer replays `SimpleTokenizer`'s cleaning (`ftfy.fix_text`, `html.unescape`
    /// twice, whitespace collapsed, `str.lower()`) as far as it is deterministic: ftfy's C1
    /// control → Windows-1252 mapping, Latin ligatures, full/half-width forms, curly quotes,
    /// ANSI terminal escapes and removed control characters, then NFC; `html.unescape` (twice)
    /// for the characters `&` `<` `>` `"` `'` and no-break space, i.e. `&amp;` `&lt;` `&gt;`
    /// `&quot;` `&apos;` `&nbsp;`, their upper-case and semicolon-less legacy forms (`&AMP;`,
    /// `&amp`) and their decimal and hex references (`&#39;`, `&#x27;`, `&#039`); then Python's
    /// whitespace, lower-casing with its final-sigma rule, and the split regex. Known
    /// differences, checked by the tests to still differ:
    ///
    /// * ftfy's mojibake repair (`fix_encoding`: `cafÃ©` → `café`, `donâ€™t` → `don't`, also C1
    ///   controls or spaces next to Latin-1 letters, as in `Ö\u{96}` or `Â x`) is not done.
    /// * Other character references (`&eacute;`, `&rsquo;`, `&#8217;`, `&copy`, …) stay text.
    ///   When a line has no `<`, ftfy also decodes references to any depth (`&amp;amp;amp;` →
    ///   `&`; here, as with `html.unescape` twice, `&amp;`) and in upper case (`&NBSP;`).
    /// * A literal `<|startoftext|>` or `<|endoftext|>` in a caption becomes the special id (as
    ///   in OpenAI's CLIP tokenizer), whereas open_clip 3.x names its special tokens
    ///   `<start_of_text>` / `<end_of_text>` and gives those the special ids instead.
    /// * Final sigma: `Σ` after a cased letter and before none becomes `ς`, as in Python, which
    ///   looks past any number of case-ignorable characters (`'`, `.`, combining marks) before
    ///   `Σ`; this looks past at most 3.
    /// * Unicode versions differ: Python's `regex` module knows Unicode 17, Rust's `regex`
    ///   Unicode 16, so letters new in 17 (e.g. Sidetic, CJK Extension J) split differently
    ///   when next to other letters; Python 3.11 lower-cases and composes (NFC) with Unicode 14
    ///   tables, this with the Rust standard library's and Unicode 9 ones
    ///   (`unicode-normalization-alignments`).
    ///
    /// Fails with [`DataError::Io`] when the file cannot be read and with [`DataError::Input`],
    /// naming the file (and the line), when it is not a UTF-8 merges list of two symbols a line.
    pub fn from_clip_bpe(path: &Path) -> Result<Self> {
        Self::from_inner(crate::clip_bpe::clip_tokenizer(path)?)
    }

    /// Writes the tokenizer as a `tokenizer.json` that [`TextTokenizer::load`] reads.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.inner.to_string(false).map_err(tok_err)?;
        dissect_io::write_atomic(path, json.as_bytes()).map_err(|e| DataError::io(path, e))
    }

    /// Vocabulary size, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of the start-of-text token `<|startoftext|>`.
    pub fn start_id(&self) -> u32 {
        self.sot
    }
    /// Id of the end-of-text token `<|endoftext|>`.
    pub fn end_id(&self) -> u32 {
        self.eot
    }

    /// Encodes and pads to `context_len`. Over-long captions are cut so that the end token is
    /// still the last one: the pooled feature must always see it.
    pub fn encode_batch(&self, texts: &[&str], context_len: usize) -> Result<TokenBatch> {
        if context_len < 2 {
            return Err(DataError::Invalid("context_len must be at least 2".into()));
        }
        let mut ids = vec![0u32; texts.len() * context_len];
        let mut eot_positions = Vec::with_capacity(texts.len());
        for (row, text) in ids.chunks_exact_mut(context_len).zip(texts) {
            // Special tokens are added by hand so loaded tokenizers with their own
            // post-processor behave the same as ours.
            let enc = self.inner.encode(*text, false).map_err(tok_err)?;
            let body = enc.get_ids();
            let n = body.len().min(context_len - 2);
            row[0] = self.sot;
            row[1..=n].copy_from_slice(&body[..n]);
            row[n + 1] = self.eot;
            eot_positions.push(n + 1);
        }
        Ok(TokenBatch { ids, eot_positions, context_len })
    }

    /// Decodes ids back to text (special tokens dropped), for logs and tests.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tok_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let shapes = ["circle", "square", "triangle", "star"];
        let colors = ["red", "green", "blue", "yellow"];
        let mut v = Vec::new();
        for s in shapes {
            for c in colors {
                v.push(format!("a small {c} {s} at the top left"));
                v.push(format!("A big {c} {s} to the left of a {s}"));
            }
        }
        v
    }

    #[test]
    fn train_save_load_identical() {
        let tok = TextTokenizer::train(corpus().into_iter(), 300).unwrap();
        assert!(tok.vocab_size() <= 300 && tok.vocab_size() > 259);
        assert_eq!(tok.inner.token_to_id(PAD_TOKEN), Some(0));
        let texts = ["a small red circle at the top left", "A BIG BLUE STAR", ""];
        let a = tok.encode_batch(&texts, 12).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        tok.save(&p).unwrap();
        let tok2 = TextTokenizer::load(&p).unwrap();
        assert_eq!(a, tok2.encode_batch(&texts, 12).unwrap());
        assert_eq!(tok2.vocab_size(), tok.vocab_size());
        // Row layout: sot, body, eot, zeros; lower-casing applied.
        let r0 = a.row(0);
        assert_eq!(r0[0], tok.start_id());
        assert_eq!(r0[a.eot_positions[0]], tok.end_id());
        assert!(r0[a.eot_positions[0] + 1..].iter().all(|&t| t == 0));
        assert_eq!(tok.decode(a.row(1)).unwrap().trim(), "a big blue star");
        assert_eq!(a.eot_positions[2], 1);
    }

    #[test]
    fn truncation_keeps_end_token_last() {
        let tok = TextTokenizer::train(corpus().into_iter(), 280).unwrap();
        let long = "red green blue yellow ".repeat(20);
        let b = tok.encode_batch(&[&long], 8).unwrap();
        assert_eq!(b.eot_positions, vec![7]);
        assert_eq!(b.row(0)[7], tok.end_id());
        assert!(tok.encode_batch(&["x"], 1).is_err());
        assert!(TextTokenizer::train(corpus().into_iter(), 10).is_err());
    }
}
