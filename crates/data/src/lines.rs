//! Small text files of one entry a line: class names, prompt templates.

use std::path::Path;

use crate::error::{DataError, Result};

/// The trimmed, non-empty lines of a small text file.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

/// `f` over `items` on up to `threads` scoped threads (contiguous chunks), results in order.
/// A panicking worker is reported as an error rather than taking the caller down.
pub(crate) fn map_in_chunks<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Result<Vec<R>> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    let f = &f;
    let parts: Vec<Vec<R>> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(chunk).map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>())).collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| DataError::Invalid("a worker thread panicked".into())))
            .collect::<Result<_>>()
    })?;
    Ok(parts.into_iter().flatten().collect())
}
