//! Word and affix helpers the parser and language detection share: ASCII case folding
//! only, so byte offsets found in the lowercased text stay valid in the original.

/// The words of `s`; `#` stays part of a word so "#3" is one.
pub(super) fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric() && c != '#')
        .filter(|w| !w.is_empty())
}

/// Whether one of the words of `lower` is one of `needles`.
pub(super) fn has_any(lower: &str, needles: &[&str]) -> bool {
    words(lower).any(|w| needles.contains(&w))
}

/// Whether `lower` contains one of `needles` anywhere (for phrases).
pub(super) fn contains_any(lower: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| lower.contains(n))
}

/// Trailing sentence punctuation and quotes off, inner text kept as the user wrote it.
pub(super) fn tidy(s: &str) -> String {
    s.trim()
        .trim_end_matches(['.', '!', '?', '۔', '؟'])
        .trim()
        .trim_matches(['"', '\'', '“', '”', '‘', '’'])
        .trim()
        .to_owned()
}

/// Strips a prefix, case-insensitively (ASCII), returning the rest of the original text.
pub(super) fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Strips a suffix, case-insensitively (ASCII), returning the rest of the original text.
pub(super) fn strip_suffix_ci<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = text.len().checked_sub(suffix.len())?;
    let tail = text.get(cut..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affixes_are_matched_without_case_and_never_split_a_character() {
        assert_eq!(strip_prefix_ci("Add Milk", "add "), Some("Milk"));
        assert_eq!(
            strip_suffix_ci("milk TO MY LIST", " to my list"),
            Some("milk")
        );
        // "İ" is two bytes: a prefix length that falls inside it is no match, not a panic.
        assert_eq!(strip_prefix_ci("İx", "a"), None);
        assert_eq!(strip_suffix_ci("xİ", "a"), None);
        assert_eq!(tidy("  “buy milk”. "), "buy milk");
        assert!(has_any("mark #3 as done", &["#3"]));
    }
}
