//! Parity of `TextTokenizer::from_clip_bpe` with open_clip's `SimpleTokenizer` on the sentences
//! of `fixtures/clip_tokenizer_ids.json` (written by `bench/clip_tokenizer_fixture.py`).

use std::path::{Path, PathBuf};

use dissect_data::TextTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    text: String,
    /// open_clip's row up to and including the end token; the rest of the row is 0.
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct KnownDifference {
    text: String,
    reason: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Fixture {
    open_clip: String,
    context_length: usize,
    cases: Vec<Case>,
    known_differences: Vec<KnownDifference>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture() -> Fixture {
    let text = std::fs::read_to_string(fixtures().join("clip_tokenizer_ids.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn padded(ids: &[u32], context_len: usize) -> Vec<u32> {
    let mut row = ids.to_vec();
    row.resize(context_len, 0);
    row
}

/// Rows of `tok` that differ from the fixture's, with the sentence.
fn mismatches(tok: &TextTokenizer, fx: &Fixture) -> Vec<String> {
    let texts: Vec<&str> = fx.cases.iter().map(|c| c.text.as_str()).collect();
    let batch = tok.encode_batch(&texts, fx.context_length).unwrap();
    fx.cases
        .iter()
        .enumerate()
        .filter(|(i, c)| batch.row(*i) != padded(&c.ids, fx.context_length).as_slice())
        .map(|(i, c)| {
            format!(
                "row {i} {:?}:\n  open_clip {:?}\n  dissect   {:?}",
                c.text,
                c.ids,
                &batch.row(i)[..batch.eot_positions[i] + 1]
            )
        })
        .collect()
}

#[test]
fn clip_bpe_matches_open_clip_simple_tokenizer() {
    let fx = fixture();
    assert!(fx.cases.len() >= 300, "only {} sentences", fx.cases.len());
    assert_eq!(fx.context_length, 77);
    let start = std::time::Instant::now();
    let tok = TextTokenizer::from_clip_bpe(&fixtures().join("bpe_simple_vocab_16e6.txt.gz")).unwrap();
    let built = start.elapsed();
    assert_eq!(tok.vocab_size(), 49408);
    assert_eq!((tok.start_id(), tok.end_id()), (49406, 49407));
    // The fixture exercises truncation (end token kept last) and the empty string.
    assert!(fx.cases.iter().any(|c| c.ids.len() == fx.context_length));
    assert!(fx.cases.iter().any(|c| c.ids == [49406, 49407]));

    let start = std::time::Instant::now();
    let bad = mismatches(&tok, &fx);
    let encoded = start.elapsed();
    assert!(
        bad.is_empty(),
        "{} of {} rows differ from open_clip {}; the first is {}",
        bad.len(),
        fx.cases.len(),
        fx.open_clip,
        bad[0]
    );
    eprintln!("{} sentences equal: built in {built:.2?}, encoded in {encoded:.2?}", fx.cases.len());

    // Save → load gives the same tokenizer.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    tok.save(&path).unwrap();
    let loaded = TextTokenizer::load(&path).unwrap();
    assert_eq!((loaded.vocab_size(), loaded.start_id(), loaded.end_id()), (49408, 49406, 49407));
    let bad = mismatches(&loaded, &fx);
    assert!(bad.is_empty(), "{} rows differ after save and load; the first is {}", bad.len(), bad[0]);

    // Decoding drops the special tokens and turns `</w>` into spaces, as SimpleTokenizer does.
    let batch = tok.encode_batch(&["A photo of a café, 2 dogs!"], 77).unwrap();
    assert_eq!(
        tok.decode(&batch.row(0)[..batch.eot_positions[0] + 1]).unwrap().trim_end(),
        "a photo of a café , 2 dogs !"
    );
}

/// The documented differences from SimpleTokenizer (TextTokenizer::from_clip_bpe) are real: if one
/// of these starts to agree, move it to the parity set and update the documentation.
#[test]
fn known_differences_still_differ() {
    let fx = fixture();
    let tok = TextTokenizer::from_clip_bpe(&fixtures().join("bpe_simple_vocab_16e6.txt.gz")).unwrap();
    for d in &fx.known_differences {
        let batch = tok.encode_batch(&[d.text.as_str()], fx.context_length).unwrap();
        assert_ne!(
            batch.row(0),
            padded(&d.ids, fx.context_length).as_slice(),
            "{:?} now agrees ({})",
            d.text,
            d.reason
        );
    }
}
