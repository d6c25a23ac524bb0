//! Brace expansion of shard patterns: `train-{0000..0575}.tar`, `{a,b}.tar`.

use crate::error::{DataError, Result};

/// Upper bound on expanded names, so a typo such as `{0..999999999}` fails fast instead of
/// exhausting memory.
const MAX_EXPANSION: usize = 10_000_000;

/// Expands every `{a..b}` numeric range and `{x,y,z}` list in `pattern`, left to right.
///
/// Ranges keep zero padding when either endpoint is written with a leading zero
/// (`{0000..0575}` → `0000`, `0001`, …), as WebDataset tools do.
pub fn expand_braces(pattern: &str) -> Result<Vec<String>> {
    let err = |reason: &str| DataError::Pattern { pattern: pattern.to_string(), reason: reason.to_string() };
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err(err("unmatched `}`"));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..].find('}').map(|c| c + open).ok_or_else(|| err("unmatched `{`"))?;
    let body = &pattern[open + 1..close];
    if body.contains('{') {
        return Err(err("nested braces are not supported"));
    }
    let prefix = &pattern[..open];
    let rest = expand_braces(&pattern[close + 1..])?;
    let alternatives = expand_body(body).map_err(|r| err(&r))?;
    let total = alternatives.len().saturating_mul(rest.len());
    if total > MAX_EXPANSION {
        return Err(err("expands to too many names"));
    }
    let mut out = Vec::with_capacity(total);
    for a in &alternatives {
        for r in &rest {
            out.push(format!("{prefix}{a}{r}"));
        }
    }
    Ok(out)
}

fn expand_body(body: &str) -> std::result::Result<Vec<String>, String> {
    if let Some((lo, hi)) = body.split_once("..") {
        let parse = |s: &str| s.parse::<u64>().map_err(|_| format!("`{s}` is not a non-negative integer"));
        let (a, b) = (parse(lo)?, parse(hi)?);
        if b < a {
            return Err(format!("range {a}..{b} is descending"));
        }
        if (b - a) as usize >= MAX_EXPANSION {
            return Err("range is too large".into());
        }
        let padded = (lo.len() > 1 && lo.starts_with('0')) || (hi.len() > 1 && hi.starts_with('0'));
        let width = if padded { lo.len().max(hi.len()) } else { 0 };
        Ok((a..=b).map(|i| format!("{i:0width$}")).collect())
    } else if body.contains(',') {
        Ok(body.split(',').map(str::to_string).collect())
    } else {
        Err(format!("`{{{body}}}` is neither a range nor a list"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_lists_and_padding() {
        assert_eq!(expand_braces("a.tar").unwrap(), vec!["a.tar"]);
        let v = expand_braces("data/train-{0000..0575}.tar").unwrap();
        assert_eq!(v.len(), 576);
        assert_eq!(v[0], "data/train-0000.tar");
        assert_eq!(v[575], "data/train-0575.tar");
        assert_eq!(expand_braces("s{8..10}").unwrap(), vec!["s8", "s9", "s10"]);
        assert_eq!(expand_braces("{a,b}-{0..1}.tar").unwrap(), vec!["a-0.tar", "a-1.tar", "b-0.tar", "b-1.tar"]);
    }

    #[test]
    fn bad_patterns_are_errors() {
        for p in ["a{0..2", "a}", "{3..1}", "{x}", "{a{b}}", "{0..99999999999}"] {
            assert!(expand_braces(p).is_err(), "{p}");
        }
    }
}
