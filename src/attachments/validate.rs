//! What an attachment may be called and what its bytes must look like.
//!
//! Names are refused, not rewritten: a name with a path in it, a control character or a
//! direction override is a client bug or an attack, and a silently changed name would
//! surprise the user more than a clear refusal. Types must be in the allow-list, whose
//! entries are all ones the gateway can check or serve inertly (see
//! [`crate::config::KNOWN_MIME_TYPES`]). Images and PDF must start with their format's
//! signature, which also keeps out anything a browser would sniff as HTML, SVG or script.
//! Text types are not sniffed: they are only ever served as `text/plain` with `nosniff`
//! and a sandboxing CSP, so HTML in a `.txt` is shown as text, never run.

use super::AttachmentError;

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 255;

/// How many leading bytes the content check needs (a PDF may start within its first KiB).
pub const HEAD_BYTES: usize = 1024;

/// The name as given, if it is a plain file name.
pub fn name(raw: &str) -> Result<String, AttachmentError> {
    let refuse = |why: &str| Err(AttachmentError::NameInvalid(format!("the name {why}")));
    if raw.trim().is_empty() {
        return refuse("is empty");
    }
    if raw.chars().count() > MAX_NAME_CHARS {
        return refuse(&format!("is longer than {MAX_NAME_CHARS} characters"));
    }
    if raw
        .chars()
        .any(|c| c.is_control() || is_direction_control(c))
    {
        return refuse("holds a control character");
    }
    if raw.contains(['/', '\\']) {
        return refuse("holds a path separator; send the file name alone");
    }
    if raw.contains("..") {
        return refuse("holds \"..\"");
    }
    Ok(raw.to_owned())
}

/// Unicode direction overrides and isolates, which make `gpj.exe` display as `exe.jpg`.
fn is_direction_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The type, lower-cased and without parameters, if the allow-list has it.
pub fn mime_type(raw: &str, allowed: &[String]) -> Result<String, AttachmentError> {
    let essence = raw
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if allowed.contains(&essence) {
        Ok(essence)
    } else {
        Err(AttachmentError::TypeNotAllowed(format!(
            "attachments of type {:?} are not accepted; accepted: {}",
            raw.chars().take(100).collect::<String>(),
            allowed.join(", ")
        )))
    }
}

/// Whether a type is shown inline as an image (and so has a preview link).
#[must_use]
pub fn is_image(mime_type: &str) -> bool {
    matches!(
        mime_type,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

/// Checks the first bytes of an upload against its declared type.
pub fn content(mime_type: &str, head: &[u8]) -> Result<(), AttachmentError> {
    let ok = match mime_type {
        "image/png" => head.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => head.starts_with(b"\xff\xd8\xff"),
        "image/gif" => head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a"),
        "image/webp" => head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP",
        "application/pdf" => head.windows(5).take(HEAD_BYTES).any(|w| w == b"%PDF-"),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    let what = if looks_active(head) {
        "look like HTML, SVG or script"
    } else {
        "do not start with its signature"
    };
    Err(AttachmentError::ContentMismatch(format!(
        "the bytes are declared as {mime_type} but {what}"
    )))
}

/// Whether bytes would be sniffed as markup or script by a browser (for the message only:
/// the signature check above is what refuses them).
fn looks_active(head: &[u8]) -> bool {
    let text: Vec<u8> = head.iter().take(512).map(u8::to_ascii_lowercase).collect();
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace() && !matches!(b, 0xef | 0xbb | 0xbf))
        .unwrap_or(text.len());
    let text = &text[start..];
    text.starts_with(b"<")
        || text.starts_with(b"#!")
        || [&b"<script"[..], b"<svg", b"<html", b"javascript:", b"<?xml"]
            .iter()
            .any(|needle| text.windows(needle.len()).any(|w| w == *needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_paths_controls_and_overrides_are_refused() {
        assert_eq!(
            name("report 2026 (final).pdf").unwrap(),
            "report 2026 (final).pdf"
        );
        assert_eq!(name("été.png").unwrap(), "été.png");
        for bad in [
            "",
            "  ",
            "../etc/passwd",
            "a/b.png",
            "a\\b.png",
            "..",
            "a\0b.png",
            "a\nb.png",
            "gpj\u{202E}.exe",
            &"x".repeat(256),
        ] {
            let err = name(bad).unwrap_err();
            assert_eq!(err.code(), "attachment.name_invalid", "{bad:?}");
        }
        assert!(name(&"é".repeat(255)).is_ok(), "counted in characters");
    }

    #[test]
    fn types_are_normalised_and_checked_against_the_list() {
        let allowed = vec!["image/png".to_owned(), "text/plain".to_owned()];
        assert_eq!(
            mime_type("Text/Plain; charset=utf-8", &allowed).unwrap(),
            "text/plain"
        );
        assert_eq!(
            mime_type("image/svg+xml", &allowed).unwrap_err().code(),
            "attachment.type_not_allowed"
        );
    }

    #[test]
    fn images_must_carry_their_signature_and_markup_is_named() {
        assert!(content("image/png", b"\x89PNG\r\n\x1a\n....").is_ok());
        assert!(content("image/jpeg", b"\xff\xd8\xff\xe0").is_ok());
        assert!(content("image/gif", b"GIF89a..").is_ok());
        assert!(content("image/webp", b"RIFF\0\0\0\0WEBPVP8 ").is_ok());
        assert!(content("application/pdf", b"%PDF-1.7\n").is_ok());
        assert!(content("text/plain", b"<script>alert(1)</script>").is_ok());
        let html = content("image/png", b"  <html><script>x</script>").unwrap_err();
        assert!(html.to_string().contains("HTML, SVG or script"), "{html}");
        let svg = content("image/gif", b"<?xml version=\"1.0\"?><svg/>").unwrap_err();
        assert_eq!(svg.code(), "attachment.content_mismatch");
        let jpeg_as_png = content("image/png", b"\xff\xd8\xff\xe0").unwrap_err();
        assert!(jpeg_as_png.to_string().contains("signature"));
        assert!(content("image/webp", b"RIFF").is_err());
    }
}
