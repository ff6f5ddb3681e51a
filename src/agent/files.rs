//! Files as an OpenAI-compatible API is sent them: the files attached to a message as parts
//! of its `content`, and a dictation as the multipart body of `/audio/transcriptions`.

use base64::Engine;
use serde::Serialize;

use super::provider::AttachedFile;

/// One part of a user message's `content` array (Chat Completions' shape).
#[derive(Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Debug, PartialEq, Serialize)]
pub(super) struct ImageUrl {
    pub url: String,
}

/// How much of each attached file goes to the model (`agent.openai.max_*_bytes`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Caps {
    pub image_bytes: u64,
    pub text_bytes: u64,
}

/// The image types vision models take; another image type is named in a note instead.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// A MIME type without its parameters, lowercased: `Text/CSV; charset=utf-8` is `text/csv`.
pub(super) fn essence(mime_type: &str) -> String {
    mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a file of this type is read as text: any `text/*`, and JSON.
pub(super) fn is_text(mime_type: &str) -> bool {
    let essence = essence(mime_type);
    essence.starts_with("text/") || essence == "application/json" || essence.ends_with("+json")
}

/// `bytes` as a person reads a size.
#[allow(clippy::cast_precision_loss)] // one decimal is all that is shown
fn size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    if bytes < KIB {
        format!("{bytes} bytes")
    } else if bytes < KIB * KIB {
        format!("{:.1} KB", bytes as f64 / KIB as f64)
    } else {
        format!("{:.1} MB", bytes as f64 / (KIB * KIB) as f64)
    }
}

fn len(file: &AttachedFile) -> u64 {
    u64::try_from(file.bytes.len()).unwrap_or(u64::MAX)
}

/// At most `cap` bytes of `bytes` as text (a BOM dropped, invalid UTF-8 replaced), never
/// cut inside a character; whether anything was left out.
pub(super) fn text_prefix(bytes: &[u8], cap: u64) -> (String, bool) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    if bytes.len() <= cap {
        return (String::from_utf8_lossy(bytes).into_owned(), false);
    }
    // A cut before a continuation byte (0b10xxxxxx) would split a character: back off to
    // the start of that character.
    let mut end = cap;
    while end > 0 && bytes[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    (String::from_utf8_lossy(&bytes[..end]).into_owned(), true)
}

/// What the model is told of one file.
fn file_part(file: &AttachedFile, caps: Caps) -> ContentPart {
    let name = &file.name;
    let mime = essence(&file.mime_type);
    let bytes = len(file);
    if IMAGE_TYPES.contains(&mime.as_str()) {
        if bytes > caps.image_bytes {
            return ContentPart::Text {
                text: format!(
                    "[The user attached the image \"{name}\" ({}), but it is over the {} limit \
                     for images sent to you, so it is left out: tell the user if it matters.]",
                    size(bytes),
                    size(caps.image_bytes)
                ),
            };
        }
        let data = base64::engine::general_purpose::STANDARD.encode(&file.bytes);
        return ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: format!("data:{mime};base64,{data}"),
            },
        };
    }
    if is_text(&mime) {
        let (content, cut) = text_prefix(&file.bytes, caps.text_bytes);
        let mut text = format!("The user attached the file \"{name}\" ({mime}):\n\n{content}");
        if cut {
            text.push_str(&format!(
                "\n\n[The file is cut here: only its first {} of {} are included.]",
                size(caps.text_bytes),
                size(bytes)
            ));
        }
        return ContentPart::Text { text };
    }
    ContentPart::Text {
        text: format!(
            "[The user attached the file \"{name}\" ({mime}, {}); its contents cannot be sent \
             to you.]",
            size(bytes)
        ),
    }
}

/// The user message's `content`: its text, then each attached file in the order attached.
pub(super) fn message_parts(text: &str, files: &[AttachedFile], caps: Caps) -> Vec<ContentPart> {
    let mut parts = Vec::with_capacity(files.len() + 1);
    if !text.is_empty() {
        parts.push(ContentPart::Text {
            text: text.to_owned(),
        });
    }
    parts.extend(files.iter().map(|f| file_part(f, caps)));
    parts
}

/// The file name and type a recording is sent as: providers tell its format by the
/// name's extension (`audio/webm;codecs=opus` is `audio.webm`). A type they do not take
/// goes as `audio.bin`, which the provider refuses.
pub(super) fn audio_file(mime_type: &str) -> (&'static str, &'static str) {
    match essence(mime_type).as_str() {
        "audio/webm" | "video/webm" => ("audio.webm", "audio/webm"),
        "audio/ogg" | "audio/opus" | "application/ogg" => ("audio.ogg", "audio/ogg"),
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" | "video/mp4" => ("audio.m4a", "audio/mp4"),
        "audio/mpeg" | "audio/mp3" | "audio/mpga" => ("audio.mp3", "audio/mpeg"),
        "audio/wav" | "audio/wave" | "audio/x-wav" | "audio/vnd.wave" => ("audio.wav", "audio/wav"),
        "audio/flac" | "audio/x-flac" => ("audio.flac", "audio/flac"),
        _ => ("audio.bin", "application/octet-stream"),
    }
}

/// A `multipart/form-data` body with the fields `model` and `file` (the recording):
/// its `Content-Type` (with the boundary) and its bytes.
pub(super) fn transcription_body(model: &str, audio: &[u8], mime_type: &str) -> (String, Vec<u8>) {
    // Random, so no recording can contain the delimiter line by chance or design.
    let boundary = format!("chatkit-gateway-{}", uuid::Uuid::new_v4().simple());
    let (file_name, file_type) = audio_file(mime_type);
    let mut body = Vec::with_capacity(audio.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"{file_name}\"\r\nContent-Type: {file_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(audio);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, mime_type: &str, bytes: &[u8]) -> AttachedFile {
        AttachedFile {
            name: name.into(),
            mime_type: mime_type.into(),
            bytes: bytes::Bytes::copy_from_slice(bytes),
        }
    }

    const CAPS: Caps = Caps {
        image_bytes: 2048,
        text_bytes: 16,
    };

    fn text(t: &str) -> ContentPart {
        ContentPart::Text { text: t.into() }
    }

    #[test]
    fn images_go_as_data_urls_and_text_files_as_text() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3];
        let parts = message_parts(
            "add these",
            &[
                file("board.png", "image/png", &png),
                file(
                    "list.md",
                    "text/markdown; charset=utf-8",
                    b"- milk\n- eggs\n",
                ),
                file("data.json", "application/json", b"{\"a\":1}"),
            ],
            CAPS,
        );
        assert_eq!(
            parts,
            vec![
                text("add these"),
                ContentPart::ImageUrl {
                    image_url: ImageUrl {
                        url: "data:image/png;base64,iVBORw0KGgoBAgM=".into()
                    }
                },
                text("The user attached the file \"list.md\" (text/markdown):\n\n- milk\n- eggs\n"),
                text("The user attached the file \"data.json\" (application/json):\n\n{\"a\":1}"),
            ]
        );
        // The wire shape: OpenAI's content parts.
        assert_eq!(
            serde_json::to_value(&parts[..2]).unwrap(),
            serde_json::json!([
                {"type": "text", "text": "add these"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoBAgM="}}
            ])
        );
    }

    #[test]
    fn over_the_caps_an_image_is_left_out_and_text_is_cut_with_a_note() {
        let big = vec![0u8; 3000];
        let parts = message_parts(
            "",
            &[
                file("photo.jpg", "image/jpeg", &big),
                file("todo.txt", "text/plain", b"one\ntwo\nthree\nfour\nfive\n"),
                file("report.pdf", "application/pdf", b"%PDF-1.7"),
                file("icon.svg", "image/svg+xml", b"<svg/>"),
            ],
            CAPS,
        );
        assert_eq!(
            parts,
            vec![
                text("[The user attached the image \"photo.jpg\" (2.9 KB), but it is over the 2.0 KB limit for images sent to you, so it is left out: tell the user if it matters.]"),
                text("The user attached the file \"todo.txt\" (text/plain):\n\none\ntwo\nthree\nfo\n\n[The file is cut here: only its first 16 bytes of 24 bytes are included.]"),
                text("[The user attached the file \"report.pdf\" (application/pdf, 8 bytes); its contents cannot be sent to you.]"),
                text("[The user attached the file \"icon.svg\" (image/svg+xml, 6 bytes); its contents cannot be sent to you.]"),
            ]
        );
    }

    #[test]
    fn text_is_never_cut_inside_a_character() {
        // "é" is two bytes: a cap that falls between them keeps the whole "é" out.
        assert_eq!(text_prefix("aé".as_bytes(), 2), ("a".to_owned(), true));
        assert_eq!(text_prefix("aé".as_bytes(), 3), ("aé".to_owned(), false));
        assert_eq!(text_prefix("€".as_bytes(), 2), (String::new(), true));
        // A byte-order mark is not text; invalid bytes become U+FFFD.
        assert_eq!(
            text_prefix(b"\xEF\xBB\xBFok\xFF", 10),
            ("ok\u{FFFD}".to_owned(), false)
        );
    }

    #[test]
    fn a_recording_is_named_after_its_type() {
        assert_eq!(
            audio_file("audio/webm;codecs=opus"),
            ("audio.webm", "audio/webm")
        );
        assert_eq!(audio_file("audio/ogg"), ("audio.ogg", "audio/ogg"));
        assert_eq!(audio_file("audio/mp4"), ("audio.m4a", "audio/mp4"));
        assert_eq!(audio_file("Audio/MPEG"), ("audio.mp3", "audio/mpeg"));
        assert_eq!(audio_file("audio/wav"), ("audio.wav", "audio/wav"));
        assert_eq!(audio_file("audio/x-wav"), ("audio.wav", "audio/wav"));
        assert_eq!(
            audio_file("text/html\r\nX: y"),
            ("audio.bin", "application/octet-stream")
        );
    }

    #[test]
    fn the_transcription_body_is_multipart_with_model_and_file() {
        let (content_type, body) = transcription_body("whisper-x", b"\x1aE\xdf\xa3", "audio/webm");
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let mut expected = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-x\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audio.webm\"\r\n\
             Content-Type: audio/webm\r\n\r\n"
        )
        .into_bytes();
        expected.extend_from_slice(b"\x1aE\xdf\xa3");
        expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        assert_eq!(body, expected);
        // A fresh boundary each time.
        let (again, _) = transcription_body("whisper-x", b"", "audio/webm");
        assert_ne!(again, content_type);
    }
}
