//! CLIP's byte-level BPE (OpenAI's `bpe_simple_vocab_16e6.txt.gz`, shipped with open_clip) as a
//! Hugging Face `tokenizers` pipeline that reproduces open_clip's `SimpleTokenizer` ids.
//!
//! `SimpleTokenizer.encode` does, in order: `ftfy.fix_text`, `html.unescape` twice, strip,
//! whitespace runs to one space, `str.lower()`, the split regex, then BPE over the UTF-8 bytes
//! of each piece (bytes mapped to printable characters, `</w>` appended to the last symbol).
//! The normalizer below replays the deterministic parts of that cleaning; what cannot be replayed
//! is listed on [`crate::TextTokenizer::from_clip_bpe`].

use std::io::Read;
use std::path::Path;

use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NFC, NormalizerWrapper, Replace, Sequence, Strip};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, NormalizedString, SplitDelimiterBehavior, Tokenizer};

use crate::error::{DataError, Result};
use crate::tokenizer::{END_TOKEN, START_TOKEN};

/// Merges `SimpleTokenizer` reads: `merges[1:49152-256-2+1]`, after the version line.
const CLIP_MERGES: usize = 49152 - 256 - 2;

/// `SimpleTokenizer`'s split regex, for text that is already lower-cased. Python compiles it
/// with `re.IGNORECASE`, which on lower-case text only matters twice: `'s` also matches `'ſ`
/// (long s folds to s), and U+0345 (combining ypogegrammeni, which folds to the letter ι)
/// leaves `[^\s\p{L}\p{N}]` without joining `[\p{L}]`, so Python drops it. Both are spelled out
/// here instead of relying on a case-insensitive flag, whose folding engines differ. The Python
/// regex's first alternatives, open_clip's special tokens `<start_of_text>|<end_of_text>`, are
/// left out: the added tokens `<|startoftext|>` and `<|endoftext|>` have their ids here.
const SPLIT_PATTERN: &str = r"'[sſ]|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}\x{345}]+";

/// Case-ignorable characters (apostrophes, periods, combining marks) between a cased letter and
/// a final `Σ` that the final-sigma rule looks past; Python looks past any number.
const MAX_SIGMA_SKIP: usize = 3;

/// ftfy's `fix_c1_controls`: C1 controls read as Windows-1252 (ftfy's "sloppy" codec keeps the
/// five bytes that Windows-1252 leaves undefined: 0x81, 0x8D, 0x8F, 0x90, 0x9D).
const C1_CONTROLS: [(char, char); 27] = [
    ('\u{80}', '€'),
    ('\u{82}', '‚'),
    ('\u{83}', 'ƒ'),
    ('\u{84}', '„'),
    ('\u{85}', '…'),
    ('\u{86}', '†'),
    ('\u{87}', '‡'),
    ('\u{88}', 'ˆ'),
    ('\u{89}', '‰'),
    ('\u{8A}', 'Š'),
    ('\u{8B}', '‹'),
    ('\u{8C}', 'Œ'),
    ('\u{8E}', 'Ž'),
    ('\u{91}', '‘'),
    ('\u{92}', '’'),
    ('\u{93}', '“'),
    ('\u{94}', '”'),
    ('\u{95}', '•'),
    ('\u{96}', '–'),
    ('\u{97}', '—'),
    ('\u{98}', '˜'),
    ('\u{99}', '™'),
    ('\u{9A}', 'š'),
    ('\u{9B}', '›'),
    ('\u{9C}', 'œ'),
    ('\u{9E}', 'ž'),
    ('\u{9F}', 'Ÿ'),
];

/// ftfy's `fix_latin_ligatures` (`chardata.LIGATURES`).
const LIGATURES: [(char, &str); 22] = [
    ('Ĳ', "IJ"),
    ('ĳ', "ij"),
    ('ŉ', "ʼn"),
    ('Ǳ', "DZ"),
    ('ǲ', "Dz"),
    ('ǳ', "dz"),
    ('Ǆ', "DŽ"),
    ('ǅ', "Dž"),
    ('ǆ', "dž"),
    ('Ǉ', "LJ"),
    ('ǈ', "Lj"),
    ('ǉ', "lj"),
    ('Ǌ', "NJ"),
    ('ǋ', "Nj"),
    ('ǌ', "nj"),
    ('ﬀ', "ff"),
    ('ﬁ', "fi"),
    ('ﬂ', "fl"),
    ('ﬃ', "ffi"),
    ('ﬄ', "ffl"),
    ('ﬅ', "ſt"),
    ('ﬆ', "st"),
];

/// The HTML character references decoded, with what `html.unescape` gives for them: the named
/// ones with or without `;` (the legacy names it accepts without one), except where the name
/// continues into a longer entity (`&ltimes;` is ⋉, not `<imes;`), and the decimal or hex
/// numeric ones (`&#39;`, `&#039`, `&#x27;`), whose digits run as far as they go. `&`, which
/// starts new references, comes last, so that one pass decodes one level of escaping, as one
/// `html.unescape` call does: each reference starts at its own `&`, so decoding them one kind at
/// a time gives the same text as Python's single scan.
const ENTITIES: [(&str, &str); 6] = [
    (
        concat!(
            r"&(?:lt(?!(?:cc|cir|dot|hree|imes|larr|quest|rPar|ri|rie|rif);)|LT);?",
            r"|&#0*60(?:;|(?![0-9]))|&#[xX]0*3[cC](?:;|(?![0-9a-fA-F]))"
        ),
        "<",
    ),
    (
        concat!(
            r"&(?:gt(?!(?:cc|cir|dot|lPar|quest|rapprox|rarr|rdot|reqless|reqqless|rless|rsim);)|GT);?",
            r"|&#0*62(?:;|(?![0-9]))|&#[xX]0*3[eE](?:;|(?![0-9a-fA-F]))"
        ),
        ">",
    ),
    (r"&(?:quot|QUOT);?|&#0*34(?:;|(?![0-9]))|&#[xX]0*22(?:;|(?![0-9a-fA-F]))", "\""),
    (r"&apos;|&#0*39(?:;|(?![0-9]))|&#[xX]0*27(?:;|(?![0-9a-fA-F]))", "'"),
    (r"&nbsp;?|&#0*160(?:;|(?![0-9]))|&#[xX]0*[aA]0(?:;|(?![0-9a-fA-F]))", "\u{a0}"),
    (r"&(?:amp|AMP);?|&#0*38(?:;|(?![0-9]))|&#[xX]0*26(?:;|(?![0-9a-fA-F]))", "&"),
];

fn input_err(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Input { path: path.to_path_buf(), reason: reason.into() }
}

fn tok_err(e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer(e.to_string())
}

/// GPT-2/CLIP `bytes_to_unicode`, in the order of its dict: the printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100.. in byte order.
fn bytes_to_unicode() -> Vec<char> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut chars: Vec<char> = (0..=255u8).filter(|&b| printable(b)).map(char::from).collect();
    let others = (0..=255u8).filter(|&b| !printable(b)).count() as u32;
    chars.extend((0..others).filter_map(|n| char::from_u32(256 + n)));
    chars
}

/// Reads the merges file, gzip-compressed (detected by its magic bytes) or plain.
fn read_merges_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let mut text = String::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_string(&mut text)
            .map_err(|e| input_err(path, format!("cannot decompress it as UTF-8 text: {e}")))?;
    } else {
        text = String::from_utf8(bytes).map_err(|e| input_err(path, format!("not UTF-8 text: {e}")))?;
    }
    Ok(text)
}

/// The merges `SimpleTokenizer` uses: lines 2..=48 895 (the first is a version line), each
/// two space-separated symbols. Fewer lines are accepted, as Python's slice does.
fn parse_merges(text: &str, path: &Path) -> Result<Merges> {
    let mut merges = Merges::with_capacity(CLIP_MERGES);
    for (i, line) in text.lines().enumerate().skip(1).take(CLIP_MERGES) {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => merges.push((a.to_owned(), b.to_owned())),
            _ => {
                return Err(input_err(
                    path,
                    format!("line {} is not a BPE merge of two symbols separated by a space: {line:?}", i + 1),
                ));
            }
        }
    }
    if merges.is_empty() {
        return Err(input_err(path, "no BPE merge after the first (version) line"));
    }
    Ok(merges)
}

/// Vocabulary in `SimpleTokenizer`'s order: 256 byte symbols, the same with `</w>`, one token
/// per merge, then the start and end tokens.
fn vocabulary(merges: &Merges, path: &Path) -> Result<Vocab> {
    let bytes = bytes_to_unicode();
    let tokens = bytes
        .iter()
        .map(char::to_string)
        .chain(bytes.iter().map(|c| format!("{c}</w>")))
        .chain(merges.iter().map(|(a, b)| format!("{a}{b}")))
        .chain([START_TOKEN.to_owned(), END_TOKEN.to_owned()]);
    let mut vocab = Vocab::with_capacity(2 * bytes.len() + merges.len() + 2);
    for (id, token) in tokens.enumerate() {
        // Python's dict would keep the last id of a repeated token and leave a hole in the ids;
        // CLIP's file has none, so a repeat means a different file.
        if let Some(first) = vocab.insert(token.clone(), id as u32) {
            return Err(input_err(
                path,
                format!("token {token:?} occurs twice in the vocabulary (ids {first} and {id})"),
            ));
        }
    }
    Ok(vocab)
}

fn replace(pattern: ReplacePattern, content: &str) -> Result<NormalizerWrapper> {
    Ok(Replace::new(pattern, content).map_err(tok_err)?.into())
}

fn replace_regex(pattern: &str, content: &str) -> Result<NormalizerWrapper> {
    replace(ReplacePattern::Regex(pattern.to_owned()), content)
}

fn replace_str(pattern: impl Into<String>, content: &str) -> Result<NormalizerWrapper> {
    replace(ReplacePattern::String(pattern.into()), content)
}

/// ftfy's `fix_character_width`: NFKC of U+FF01..=U+FFEF where it differs (fullwidth ASCII,
/// halfwidth katakana and hangul, fullwidth symbols). Its U+3000 → space is left to the
/// whitespace step, which treats both alike.
fn width_map() -> Vec<(char, String)> {
    (0xFF01..=0xFFEF)
        .filter_map(char::from_u32)
        .filter_map(|c| {
            let mut n = NormalizedString::from(c.to_string());
            n.nfkc();
            (n.get() != c.to_string()).then(|| (c, n.get().to_owned()))
        })
        .collect()
}

/// The cleaning `SimpleTokenizer` applies before its split regex, as far as it is replayable.
fn normalizer() -> Result<NormalizerWrapper> {
    let mut steps = Vec::new();
    // ftfy.fix_text, in ftfy's order (fix_encoding, which guesses at mojibake, is left out).
    for (c, to) in C1_CONTROLS {
        steps.push(replace_str(c, &to.to_string())?);
    }
    for (c, to) in LIGATURES {
        steps.push(replace_str(c, to)?);
    }
    for (c, to) in width_map() {
        steps.push(replace_str(c, &to)?);
    }
    steps.push(replace_regex(r"[\x{201C}-\x{201F}]", "\"")?);
    steps.push(replace_regex(r"[\x{2BC}\x{2018}-\x{201B}]", "'")?);
    // fix_line_breaks only turns line breaks into `\n`: whitespace either way.
    steps.push(replace_regex(r"\x1B\[(?:\d|;)*[a-zA-Z]", "")?);
    steps.push(replace_regex(r"[\x00-\x08\x0B\x0E-\x1F\x7F\x{206A}-\x{206F}\x{FEFF}\x{FFF9}-\x{FFFC}]", "")?);
    steps.push(NFC.into());
    // html.unescape, twice, for the entities listed in ENTITIES.
    for _ in 0..2 {
        for (pattern, to) in ENTITIES {
            steps.push(replace_regex(pattern, to)?);
        }
    }
    // whitespace_clean, then str.lower(), whose final-sigma rule Lowercase lacks: Σ after a
    // cased letter and not followed by one (case-ignorable characters skipped both ways)
    // becomes ς. Look-behinds have a fixed length: one step per number of skipped characters.
    steps.push(replace_regex(r"\s+", " ")?);
    steps.push(Strip::new(true, true).into());
    let before_no_cased = r"(?!\p{Case_Ignorable}*[\p{Cased}&&[^\p{Case_Ignorable}]])";
    for skipped in 0..=MAX_SIGMA_SKIP {
        let after_cased = format!(r"(?<=[\p{{Cased}}&&[^\p{{Case_Ignorable}}]]\p{{Case_Ignorable}}{{{skipped}}})");
        steps.push(replace_regex(&format!("{after_cased}Σ{before_no_cased}"), "ς")?);
    }
    steps.push(Lowercase.into());
    Ok(Sequence::new(steps).into())
}

/// Builds the CLIP tokenizer from the text of a merges file (`path` only names it in errors).
fn clip_tokenizer_from_text(text: &str, path: &Path) -> Result<Tokenizer> {
    let merges = parse_merges(text, path)?;
    let vocab = vocabulary(&merges, path)?;
    let model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .end_of_word_suffix("</w>".to_owned())
        .build()
        .map_err(|e| input_err(path, format!("not a valid BPE merges list: {e}")))?;
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(normalizer()?));
    let split = Split::new(SplitPattern::Regex(SPLIT_PATTERN.to_owned()), SplitDelimiterBehavior::Removed, true)
        .map_err(tok_err)?;
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::from(PreTokenizerSequence::new(vec![
        split.into(),
        ByteLevel::new(false, false, false).into(),
    ]))));
    // `</w>` → the byte-level symbol of a space, so that the byte-level decoder turns it into
    // one (SimpleTokenizer.decode replaces it by a space too).
    let end_of_word = Replace::new("</w>", "\u{120}").map_err(tok_err)?;
    tok.with_decoder(Some(DecoderWrapper::from(DecoderSequence::new(vec![
        DecoderWrapper::Replace(end_of_word),
        ByteLevel::default().into(),
    ]))));
    let specials: Vec<AddedToken> = [START_TOKEN, END_TOKEN].iter().map(|t| AddedToken::from(*t, true)).collect();
    tok.add_special_tokens(&specials);
    Ok(tok)
}

/// Builds the CLIP tokenizer from a merges file (`bpe_simple_vocab_16e6.txt.gz`, or plain text).
pub(crate) fn clip_tokenizer(path: &Path) -> Result<Tokenizer> {
    clip_tokenizer_from_text(&read_merges_file(path)?, path)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::TextTokenizer;

    const TINY: &str = "#version: 0.2\nh e\nl l\nhe ll\nhell o</w>\n";

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn gzip(text: &str) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn byte_symbols_in_clip_order() {
        let b = bytes_to_unicode();
        assert_eq!(b.len(), 256);
        assert_eq!((b[0], b[93], b[94], b[187], b[188], b[255]), ('!', '~', '¡', 'ÿ', '\u{100}', '\u{143}'));
    }

    #[test]
    fn tiny_vocabulary_plain_or_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        for path in [write(dir.path(), "tiny.txt", TINY.as_bytes()), write(dir.path(), "tiny.txt.gz", &gzip(TINY))] {
            let tok = TextTokenizer::from_clip_bpe(&path).unwrap();
            // 2 × 256 byte symbols, 4 merges, 2 special tokens.
            assert_eq!((tok.vocab_size(), tok.start_id(), tok.end_id()), (518, 516, 517));
            let b = tok.encode_batch(&["  HELLO hello!", "hel"], 8).unwrap();
            // hello</w> = 512 + 3; "!</w>" = 256 + "!"; h, e, l</w> as bytes.
            assert_eq!(b.row(0), [516, 515, 515, 256, 517, 0, 0, 0]);
            assert_eq!(b.row(1), [516, 512, 256 + 75, 517, 0, 0, 0, 0]);
            // Padding is id 0, the byte symbol "!": decode up to the end token.
            assert_eq!(tok.decode(&b.row(0)[..5]).unwrap(), "hello hello ! ");
        }
    }

    #[test]
    fn malformed_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], &str); 7] = [
            ("one.txt", b"#version: 0.2\nh e\nl\n", "line 3 is not a BPE merge"),
            ("three.txt", b"#version: 0.2\nh e l\n", "line 2 is not a BPE merge"),
            ("blank.txt", b"#version: 0.2\nh e\n\nl l\n", "line 3 is not a BPE merge"),
            ("header.txt", b"#version: 0.2\n", "no BPE merge"),
            ("unknown.txt", "#version: 0.2\nhe llo\n".as_bytes(), "not a valid BPE merges list"),
            ("twice.txt", b"#version: 0.2\nh e\nh e\n", "occurs twice"),
            ("latin1.txt", b"#version: 0.2\n\xe9 e\n", "not UTF-8"),
        ];
        for (name, bytes, expected) in cases {
            let path = write(dir.path(), name, bytes);
            let err = TextTokenizer::from_clip_bpe(&path).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(expected), "{name}: {err}");
        }
        let mut gz = gzip(TINY);
        gz.truncate(gz.len() / 2);
        let err = TextTokenizer::from_clip_bpe(&write(dir.path(), "cut.txt.gz", &gz)).unwrap_err().to_string();
        assert!(err.contains("cut.txt.gz") && err.contains("cannot decompress"), "{err}");
        let err = TextTokenizer::from_clip_bpe(&dir.path().join("missing.txt.gz")).unwrap_err().to_string();
        assert!(err.contains("missing.txt.gz"), "{err}");
    }
}
