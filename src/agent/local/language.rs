//! Which language the user wrote in: Urdu script, Roman Urdu, or English (the default).

use super::text::words;

/// The languages the local agent answers in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lang {
    English,
    RomanUrdu,
    Urdu,
}

/// Common Roman Urdu words that are not English words, so one of them is enough.
const ROMAN_URDU_WORDS: &[&str] = &[
    "karo", "kar", "kardo", "krdo", "karein", "dikhao", "dikha", "batao", "mera", "meri", "mere",
    "meray", "hai", "hain", "ko", "ka", "ki", "ke", "naya", "nayi", "hatao", "hata", "mita",
    "mukammal", "kya", "mujhe", "aur", "nahi", "yaad", "kaam", "shukriya", "salam", "assalam",
    "hogaya", "gaya", "dein", "den", "rakh", "rakho", "naam", "madad", "sab", "wala", "khatam",
    "saray", "sare", "tamam", "baqi", "baaki", "shamil", "daal", "likh", "lo", "diya",
];

/// The language of `text`: Urdu script wins, then any Roman Urdu word.
pub(super) fn detect_lang(text: &str) -> Lang {
    if text.chars().any(|c| ('\u{0600}'..='\u{06FF}').contains(&c)) {
        return Lang::Urdu;
    }
    let lower = text.to_ascii_lowercase();
    if words(&lower).any(|w| ROMAN_URDU_WORDS.contains(&w)) {
        Lang::RomanUrdu
    } else {
        Lang::English
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_or_a_roman_urdu_word_decides() {
        assert_eq!(detect_lang("meri tasks dikhao"), Lang::RomanUrdu);
        assert_eq!(detect_lang("list my tasks"), Lang::English);
        assert_eq!(detect_lang("میرے کام دکھاؤ"), Lang::Urdu);
        // A Roman Urdu word inside an English word does not count.
        assert_eq!(detect_lang("karaoke tonight"), Lang::English);
    }
}
