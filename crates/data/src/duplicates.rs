//! Items identical to another one: held-out images identical after preprocessing, captions
//! identical after tokenization. Retrieval cannot tell such items apart, so a split with many
//! of them cannot be scored well (each tie counts against the query: see dissect-eval).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::{Deserialize, Serialize};

/// How many items share their content with at least one other item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateGroups {
    /// Items that have at least one identical twin (every member of every group).
    pub duplicated: u64,
    /// Groups of two or more identical items.
    pub groups: u64,
    /// Items in the largest group (0 without groups).
    pub largest: u64,
}

impl DuplicateGroups {
    /// Groups the items by key (equal keys = identical items).
    pub fn of<K: Hash + Eq>(keys: impl IntoIterator<Item = K>) -> Self {
        let mut sizes: HashMap<K, u64> = HashMap::new();
        for key in keys {
            *sizes.entry(key).or_default() += 1;
        }
        let mut groups = DuplicateGroups::default();
        for &size in sizes.values().filter(|&&n| n > 1) {
            groups.duplicated += size;
            groups.groups += 1;
            groups.largest = groups.largest.max(size);
        }
        groups
    }

    /// Whether any two items are identical.
    pub fn any(&self) -> bool {
        self.groups > 0
    }
}

impl std::fmt::Display for DuplicateGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.groups {
            0 => write!(f, "none"),
            1 => write!(f, "{} in 1 group of identical items", self.duplicated),
            n => write!(f, "{} in {n} groups of identical items (largest {})", self.duplicated, self.largest),
        }
    }
}

/// A 64-bit key of a preprocessed image or a token row: equal content gives equal keys (the
/// bits are hashed, so -0.0 and 0.0 differ, as they never both come out of one pipeline).
pub fn content_key<T: Copy + Into<ContentBits>>(values: &[T]) -> u64 {
    let mut hasher = DefaultHasher::new();
    values.len().hash(&mut hasher);
    for &v in values {
        v.into().0.hash(&mut hasher);
    }
    hasher.finish()
}

/// The bits of one value, for [`content_key`].
#[derive(Debug, Clone, Copy)]
pub struct ContentBits(u32);

impl From<f32> for ContentBits {
    fn from(v: f32) -> Self {
        ContentBits(v.to_bits())
    }
}

impl From<u32> for ContentBits {
    fn from(v: u32) -> Self {
        ContentBits(v)
    }
}

/// A caption as a CLIP tokenizer sees it before splitting into tokens: lower case, runs of
/// white space as one space, trimmed.
pub fn caption_key(caption: &str) -> String {
    caption.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_counted_by_hand() {
        // a a a b c c d: groups {a×3, c×2}; 5 duplicated items; largest 3.
        let g = DuplicateGroups::of(["a", "a", "a", "b", "c", "c", "d"]);
        assert_eq!(g, DuplicateGroups { duplicated: 5, groups: 2, largest: 3 });
        assert!(!DuplicateGroups::of([1, 2, 3]).any());
        assert_eq!(content_key(&[1.0f32, 2.0]), content_key(&[1.0f32, 2.0]));
        assert_ne!(content_key(&[1.0f32, 2.0]), content_key(&[2.0f32, 1.0]));
        assert_eq!(caption_key("  A  red\tCircle "), "a red circle");
    }
}
