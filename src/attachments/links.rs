//! Short-lived capability links: an upload link bound to (attachment, user, declared size,
//! expiry) and a preview link bound to (attachment, user, expiry). The token is
//! `v1.<expiry>.<size>.<user, base64url>.<HMAC-SHA256, base64url>`; the MAC covers the
//! link's purpose too, so a preview token never opens an upload.
//!
//! The key is derived from the session secret (HMAC of a context string) rather than the
//! secret itself, so a link's MAC can never be mistaken for, or help forge, a
//! client_secret's signature. Previous session secrets still verify during a rotation, as
//! they do for client_secrets.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::domain::UserId;

type HmacSha256 = Hmac<Sha256>;

/// The context the link key is derived with.
const KEY_CONTEXT: &[u8] = b"chatkit-gateway attachment links v1";

/// What a link lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Upload,
    Preview,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Preview => "preview",
        }
    }
}

/// What a valid link was issued for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub user: UserId,
    /// The declared size an upload link was issued for (0 for a preview).
    pub size: u64,
}

/// Signs with the first key, verifies with every one.
pub struct LinkKeys {
    keys: Vec<[u8; 32]>,
}

impl LinkKeys {
    #[must_use]
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a SecretString>) -> Self {
        let keys = secrets
            .into_iter()
            .map(|secret| {
                let mut mac =
                    <HmacSha256 as Mac>::new_from_slice(secret.expose_secret().as_bytes())
                        .expect("HMAC takes keys of any length");
                mac.update(KEY_CONTEXT);
                mac.finalize().into_bytes().into()
            })
            .collect();
        Self { keys }
    }

    /// A token for `purpose` on attachment `id` of `user`, valid until `expires` (Unix
    /// seconds).
    #[must_use]
    pub fn sign(
        &self,
        purpose: Purpose,
        id: &str,
        user: &UserId,
        size: u64,
        expires: i64,
    ) -> String {
        let tag = self
            .keys
            .first()
            .map(|key| {
                mac(key, purpose, id, user.as_str(), size, expires)
                    .finalize()
                    .into_bytes()
            })
            .unwrap_or_default();
        format!(
            "v1.{expires}.{size}.{}.{}",
            URL_SAFE_NO_PAD.encode(user.as_str()),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The grant of a token for `purpose` on attachment `id`, if its MAC verifies (in
    /// constant time) and it has not expired at `now` (Unix seconds).
    #[must_use]
    pub fn verify(&self, purpose: Purpose, id: &str, token: &str, now: i64) -> Option<Grant> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(expires), Some(size), Some(user), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expires: i64 = expires.parse().ok()?;
        let size: u64 = size.parse().ok()?;
        let user = String::from_utf8(URL_SAFE_NO_PAD.decode(user).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let genuine = self.keys.iter().any(|key| {
            mac(key, purpose, id, &user, size, expires)
                .verify_slice(&tag)
                .is_ok()
        });
        if !genuine || expires < now {
            return None;
        }
        Some(Grant {
            user: UserId::parse(&user)?,
            size,
        })
    }
}

/// The MAC over every field, each prefixed with its length so no two field lists encode
/// alike.
fn mac(
    key: &[u8; 32],
    purpose: Purpose,
    id: &str,
    user: &str,
    size: u64,
    expires: i64,
) -> HmacSha256 {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for field in [
        purpose.tag().as_bytes(),
        id.as_bytes(),
        user.as_bytes(),
        size.to_string().as_bytes(),
        expires.to_string().as_bytes(),
    ] {
        mac.update(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        mac.update(field);
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> LinkKeys {
        LinkKeys::new([&SecretString::from(secret.to_owned())])
    }

    #[test]
    fn a_link_verifies_for_its_purpose_attachment_and_time_only() {
        let k = keys("s3cret-s3cret-s3cret-s3cret-s3cret");
        let alice = UserId::parse("alice").unwrap();
        let t = k.sign(Purpose::Upload, "atc_1", &alice, 42, 1_000);
        assert_eq!(
            k.verify(Purpose::Upload, "atc_1", &t, 999),
            Some(Grant {
                user: alice.clone(),
                size: 42
            })
        );
        assert_eq!(
            k.verify(Purpose::Upload, "atc_1", &t, 1_000)
                .map(|g| g.size),
            Some(42)
        );
        assert!(
            k.verify(Purpose::Upload, "atc_1", &t, 1_001).is_none(),
            "expired"
        );
        assert!(
            k.verify(Purpose::Preview, "atc_1", &t, 0).is_none(),
            "other purpose"
        );
        assert!(
            k.verify(Purpose::Upload, "atc_2", &t, 0).is_none(),
            "other attachment"
        );
        assert!(keys("another-secret-another-secret")
            .verify(Purpose::Upload, "atc_1", &t, 0)
            .is_none());
        // Any field changed: the size, the user, the expiry.
        let forged = t.replacen(".42.", ".43.", 1);
        assert!(k.verify(Purpose::Upload, "atc_1", &forged, 0).is_none());
        let bob = URL_SAFE_NO_PAD.encode("bob");
        let parts: Vec<&str> = t.split('.').collect();
        let as_bob = format!("v1.{}.{}.{bob}.{}", parts[1], parts[2], parts[4]);
        assert!(k.verify(Purpose::Upload, "atc_1", &as_bob, 0).is_none());
        let later = format!("v1.9999.{}.{}.{}", parts[2], parts[3], parts[4]);
        assert!(k.verify(Purpose::Upload, "atc_1", &later, 0).is_none());
        for junk in ["", "v1", "v1.1.2.3", "v2.1.2.3.4", &format!("{t}.x")] {
            assert!(
                k.verify(Purpose::Upload, "atc_1", junk, 0).is_none(),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn links_signed_with_a_previous_secret_verify_during_a_rotation() {
        let old = SecretString::from("old-secret-old-secret-old-secret".to_owned());
        let new = SecretString::from("new-secret-new-secret-new-secret".to_owned());
        let alice = UserId::parse("alice").unwrap();
        let t = LinkKeys::new([&old]).sign(Purpose::Preview, "atc_1", &alice, 0, 10);
        assert!(LinkKeys::new([&new, &old])
            .verify(Purpose::Preview, "atc_1", &t, 0)
            .is_some());
        assert!(LinkKeys::new([&new])
            .verify(Purpose::Preview, "atc_1", &t, 0)
            .is_none());
    }
}
