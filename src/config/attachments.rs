//! Attachments (`[attachments]`): where their bytes are kept, how large and of which types
//! they may be, how many a user may keep, and how long their signed links live.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{check_ranges, setting_names, SEC_DAY};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The types an attachment may be declared as. Each one is checked or served safely:
/// images and PDF by their signatures, text as `text/plain` (never rendered as a page).
/// Types a browser would run (HTML, SVG, XML, scripts) are not among them.
pub const KNOWN_MIME_TYPES: [&str; 9] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "text/plain",
    "text/markdown",
    "text/csv",
    "application/pdf",
    "application/json",
];

/// Where attachment bytes are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentStore {
    /// In the database, in chunks (`attachment_chunks`): nothing else to run.
    Db,
    /// In an S3-compatible bucket (`[attachments.s3]`).
    S3,
}

impl AttachmentStore {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Db => "db",
            Self::S3 => "s3",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct AttachmentSettings {
    pub store: AttachmentStore,
    /// The largest attachment, in bytes.
    pub max_bytes: u64,
    /// The types accepted, from [`KNOWN_MIME_TYPES`].
    pub allowed_mime_types: Vec<String>,
    /// Attachments one user may hold (sent or not).
    pub quota_files: u64,
    /// Bytes one user may hold, by declared size.
    pub quota_bytes: u64,
    /// How long an upload link works.
    pub upload_url_ttl_secs: u64,
    /// How long an image's preview link works.
    pub preview_url_ttl_secs: u64,
    /// Uploads no message used are deleted once this old.
    pub unsent_ttl_secs: u64,
    /// How often the unsent ones are looked for.
    pub collect_interval_secs: u64,
    /// The database store's row size.
    pub chunk_bytes: u64,
    /// Upload bytes held in memory at once by all uploads together (each holds one chunk
    /// or S3 part while it fills); an upload waits for room, so memory stays bounded
    /// however many run at once.
    pub buffer_bytes: u64,
    /// What the links start with (`https://chat.example.com`); empty = a path only, for a
    /// page served from the gateway's origin.
    pub public_base_url: String,
    pub s3: S3Settings,
}

/// An S3-compatible bucket (`[attachments.s3]`).
#[derive(Clone, Debug, Deserialize)]
pub struct S3Settings {
    pub bucket: String,
    /// Empty = AWS itself; otherwise the endpoint of a compatible server (MinIO, R2, …).
    pub endpoint: String,
    pub region: String,
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
    /// Allows an `http://` endpoint (a server on the same host or network).
    pub allow_http: bool,
    /// Key prefix of every object the gateway writes.
    pub prefix: String,
    /// Multipart part size (S3 refuses parts under 5 MiB, except the last).
    pub part_bytes: u64,
}

impl AttachmentSettings {
    /// Every limit out of range, a type that is not in [`KNOWN_MIME_TYPES`], and, with the
    /// S3 store, a bucket that cannot be reached as configured.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        check_ranges(
            &[
                ("attachments.max_bytes", self.max_bytes, 1, 5 * GIB),
                ("attachments.quota_files", self.quota_files, 1, 1_000_000),
                (
                    "attachments.quota_bytes",
                    self.quota_bytes,
                    self.max_bytes.clamp(1, 5 * GIB),
                    1024 * GIB,
                ),
                (
                    "attachments.upload_url_ttl_secs",
                    self.upload_url_ttl_secs,
                    10,
                    SEC_DAY,
                ),
                (
                    "attachments.preview_url_ttl_secs",
                    self.preview_url_ttl_secs,
                    10,
                    7 * SEC_DAY,
                ),
                (
                    "attachments.unsent_ttl_secs",
                    self.unsent_ttl_secs,
                    60,
                    30 * SEC_DAY,
                ),
                (
                    "attachments.collect_interval_secs",
                    self.collect_interval_secs,
                    1,
                    SEC_DAY,
                ),
                (
                    "attachments.chunk_bytes",
                    self.chunk_bytes,
                    4 * KIB,
                    16 * MIB,
                ),
            ],
            problems,
        );
        let largest_buffer = match self.store {
            AttachmentStore::Db => ("attachments.chunk_bytes", self.chunk_bytes),
            AttachmentStore::S3 => ("attachments.s3.part_bytes", self.s3.part_bytes),
        };
        check_ranges(
            &[(
                "attachments.buffer_bytes",
                self.buffer_bytes,
                largest_buffer.1,
                16 * GIB,
            )],
            problems,
        );
        if self.buffer_bytes < largest_buffer.1 {
            problems.push(format!(
                "{} must hold at least one {}",
                setting_names("attachments.buffer_bytes"),
                largest_buffer.0
            ));
        }
        if self.allowed_mime_types.is_empty() {
            problems.push(format!(
                "{} must name at least one type",
                setting_names("attachments.allowed_mime_types")
            ));
        }
        for ty in &self.allowed_mime_types {
            if !KNOWN_MIME_TYPES.contains(&ty.as_str()) {
                problems.push(format!(
                    "{} names {ty:?}, which cannot be checked or served safely; use some of {}",
                    setting_names("attachments.allowed_mime_types"),
                    KNOWN_MIME_TYPES.join(", ")
                ));
            }
        }
        let base = self.public_base_url.as_str();
        if !base.is_empty()
            && (!(base.starts_with("https://") || base.starts_with("http://"))
                || base.ends_with('/')
                || reqwest::Url::parse(base).is_err())
        {
            problems.push(format!(
                "{} must be empty or an http(s) URL without a trailing slash, got {base:?}",
                setting_names("attachments.public_base_url")
            ));
        }
        if self.store == AttachmentStore::S3 {
            self.s3.check(problems);
        }
    }
}

impl S3Settings {
    fn check(&self, problems: &mut Vec<String>) {
        check_ranges(
            &[(
                "attachments.s3.part_bytes",
                self.part_bytes,
                5 * MIB,
                5 * GIB,
            )],
            problems,
        );
        for (key, value) in [
            ("attachments.s3.bucket", self.bucket.as_str()),
            ("attachments.s3.region", self.region.as_str()),
        ] {
            if value.trim().is_empty() {
                problems.push(format!(
                    "{} must be set when attachments.store = \"s3\"",
                    setting_names(key)
                ));
            }
        }
        // Secrets are named, never quoted.
        for (key, value) in [
            ("attachments.s3.access_key_id", &self.access_key_id),
            ("attachments.s3.secret_access_key", &self.secret_access_key),
        ] {
            if value.expose_secret().is_empty() {
                problems.push(format!(
                    "{} must be set when attachments.store = \"s3\"",
                    setting_names(key)
                ));
            }
        }
        let endpoint = self.endpoint.as_str();
        if endpoint.is_empty() {
            return;
        }
        match reqwest::Url::parse(endpoint) {
            Ok(url) if url.scheme() == "https" => {}
            Ok(url) if url.scheme() == "http" && self.allow_http => {}
            Ok(url) if url.scheme() == "http" => problems.push(format!(
                "{} is http://; set {} to send keys and files unencrypted",
                setting_names("attachments.s3.endpoint"),
                setting_names("attachments.s3.allow_http")
            )),
            _ => problems.push(format!(
                "{} must be an http(s) URL, got {endpoint:?}",
                setting_names("attachments.s3.endpoint")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn problems(edit: impl FnOnce(&mut AttachmentSettings)) -> Vec<String> {
        let mut attachments = Settings::defaults().attachments;
        edit(&mut attachments);
        let mut problems = Vec::new();
        attachments.check(&mut problems);
        problems
    }

    #[test]
    fn the_defaults_pass() {
        assert!(problems(|_| {}).is_empty(), "{:?}", problems(|_| {}));
    }

    #[test]
    fn every_limit_and_type_is_reported_together() {
        let found = problems(|a| {
            a.max_bytes = 0;
            a.upload_url_ttl_secs = 0;
            a.chunk_bytes = 1;
            a.allowed_mime_types = vec!["image/png".into(), "text/html".into()];
            a.public_base_url = "ftp://x".into();
        });
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found[0].contains("GATEWAY__ATTACHMENTS__MAX_BYTES"));
        assert!(found[1].contains("upload_url_ttl_secs"));
        assert!(found[2].contains("chunk_bytes"));
        assert!(found[3].contains("\"text/html\""));
        assert!(found[4].contains("public_base_url"));
    }

    #[test]
    fn the_s3_store_needs_a_bucket_and_keys_and_says_so_without_quoting_them() {
        let found = problems(|a| {
            a.store = AttachmentStore::S3;
            a.s3.bucket = String::new();
            a.s3.secret_access_key = SecretString::from("hunter2");
            a.s3.endpoint = "http://127.0.0.1:9000".into();
            a.s3.allow_http = false;
        });
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("attachments.s3.bucket"));
        assert!(found[1].contains("attachments.s3.access_key_id"));
        assert!(found[2].contains("allow_http"));
        assert!(!found.concat().contains("hunter2"));
        let s3_part = problems(|a| {
            a.store = AttachmentStore::S3;
            a.s3.bucket = "b".into();
            a.s3.access_key_id = SecretString::from("k");
            a.s3.secret_access_key = SecretString::from("s");
            a.s3.part_bytes = MIB;
        });
        assert!(s3_part[0].contains("part_bytes"), "{s3_part:?}");
    }
}
