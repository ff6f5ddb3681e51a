//! Better Auth's public-key mode: tokens signed with EdDSA (the default), ES256, RS256 or
//! PS256, verified against the key set at `<BETTER_AUTH_URL>/api/auth/jwks`.
//!
//! The key set is cached (moka) for its `Cache-Control: max-age` (clamped) or a configured
//! TTL, fetched by one request at a time however many callers wait (moka's `try_get_with`),
//! refetched for an unknown `kid` at most once per cooldown, and kept as the last good set
//! while the key server fails, so an outage of Better Auth does not sign everyone out.

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use jsonwebtoken::{decode, jwk::Jwk, Algorithm, DecodingKey, Validation};
use moka::{future::Cache, Expiry};
use serde_json::{Map, Value};

use super::{
    from_jwt_error,
    verifier::{identity_from_claims, upstream_validation, UpstreamIdentity, UpstreamVerifier},
    AuthError,
};
use crate::config::UpstreamSettings;

/// The asymmetric algorithms this build can verify.
pub const SUPPORTED: [Algorithm; 4] = [
    Algorithm::EdDSA,
    Algorithm::ES256,
    Algorithm::RS256,
    Algorithm::PS256,
];

/// After a failed fetch with no key set to fall back on, wait this long before the next try.
const FAILURE_BACKOFF: Duration = Duration::from_secs(2);

/// Why a fetch of the key set failed.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The key server could not be reached or did not answer 2xx.
    #[error("fetching the key set failed: {0}")]
    Fetch(String),
    /// The answer was not a key set.
    #[error("the key set is not valid JSON of the form {{\"keys\": [...]}}")]
    Malformed,
}

#[derive(Clone)]
struct Key {
    decoding: DecodingKey,
    kty: String,
    crv: Option<String>,
    alg: Option<String>,
}

impl Key {
    /// The key may verify `alg`: its type (and curve) fit, and its own `alg`, if any, agrees.
    fn fits(&self, alg: Algorithm) -> bool {
        let shape = match alg {
            Algorithm::EdDSA => self.kty == "OKP" && self.crv.as_deref() == Some("Ed25519"),
            Algorithm::ES256 => self.kty == "EC" && self.crv.as_deref() == Some("P-256"),
            Algorithm::RS256 | Algorithm::PS256 => self.kty == "RSA",
            _ => false,
        };
        shape
            && self
                .alg
                .as_deref()
                .is_none_or(|a| Algorithm::from_str(a).ok() == Some(alg))
    }
}

#[derive(Clone)]
struct KeySet {
    keys: HashMap<String, Key>,
    /// kids whose keys this build cannot use (e.g. ES512 / P-521), with their `alg`.
    unsupported: HashMap<String, String>,
    ttl: Duration,
}

/// What /readyz reports about the key set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksState {
    /// No fetch has finished yet.
    NotFetched,
    /// The last fetch succeeded with this many usable keys.
    Ready {
        /// Usable keys in the set.
        keys: usize,
    },
    /// Serving the last good set because the key server is failing.
    Stale {
        /// Usable keys in the set being served.
        keys: usize,
        /// Why the last fetch failed.
        error: String,
    },
    /// The key server is failing and there is no earlier set to serve.
    Unavailable {
        /// Why the last fetch failed.
        error: String,
    },
}

/// What the fetches so far have left behind. One value behind one lock, replaced as a
/// whole, so a reader never sees the report of one fetch with the keys of another.
struct FetchState {
    /// The last set fetched successfully, served while the key server fails.
    last_good: Option<Arc<KeySet>>,
    /// When the last fetch failed, if the one after it has not succeeded yet.
    last_failure: Option<Instant>,
    /// What /readyz shows.
    report: JwksState,
}

struct SetExpiry;

impl Expiry<(), Arc<KeySet>> for SetExpiry {
    fn expire_after_create(&self, _: &(), set: &Arc<KeySet>, _: Instant) -> Option<Duration> {
        Some(set.ttl)
    }
}

/// Verifies upstream tokens signed with an asymmetric key from the JWKS endpoint.
pub struct JwksVerifier {
    url: String,
    /// The key server's host, for spans: the URL may carry a token in its query.
    host: String,
    client: reqwest::Client,
    cache: Cache<(), Arc<KeySet>>,
    state: RwLock<FetchState>,
    /// When an unknown kid last forced a refetch. Apart from `state` because it is held
    /// across the cache invalidation, so callers that find the kid unknown at the same
    /// time wait for the fresh set rather than read the old one again.
    forced_refetch: tokio::sync::Mutex<Option<Instant>>,
    allowed: HashSet<Algorithm>,
    /// The claim rules for each allowed algorithm, built once.
    validations: HashMap<Algorithm, Validation>,
    settings: UpstreamSettings,
    session_audience: String,
}

/// `max-age` from a Cache-Control header.
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    value
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age=")?.trim().parse().ok())
}

/// The algorithms of `names` this build verifies; the others are reported once.
pub fn allowed_algorithms(names: &[String]) -> HashSet<Algorithm> {
    let mut allowed = HashSet::new();
    for name in names {
        match Algorithm::from_str(name) {
            Ok(alg) if SUPPORTED.contains(&alg) => {
                allowed.insert(alg);
            }
            _ => tracing::warn!(
                algorithm = %name,
                "upstream.algorithms lists an algorithm this gateway cannot verify; tokens using it get auth.unsupported_algorithm"
            ),
        }
    }
    allowed
}

impl JwksVerifier {
    /// A verifier for the key set at `url` that refuses tokens meant for
    /// `session_audience` (our own client_secrets).
    #[must_use]
    pub fn new(url: String, settings: &UpstreamSettings, session_audience: &str) -> Self {
        let mut settings = settings.clone();
        // Better Auth sets iss and aud to its base URL's origin by default.
        if let Some(origin) = settings.base_origin() {
            if settings.issuer.is_empty() {
                settings.issuer = origin.clone();
            }
            if settings.audience.is_empty() {
                settings.audience = origin;
            }
        }
        let allowed = allowed_algorithms(&settings.algorithms);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.jwks_timeout_ms))
            .connect_timeout(Duration::from_millis(settings.jwks_timeout_ms))
            .user_agent(concat!("chatkit-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with timeouts builds");
        let host = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        Self {
            url,
            host,
            client,
            cache: Cache::builder()
                .max_capacity(1)
                .expire_after(SetExpiry)
                .build(),
            state: RwLock::new(FetchState {
                last_good: None,
                last_failure: None,
                report: JwksState::NotFetched,
            }),
            forced_refetch: tokio::sync::Mutex::new(None),
            validations: allowed
                .iter()
                .map(|alg| (*alg, upstream_validation(*alg, &settings)))
                .collect(),
            allowed,
            settings,
            session_audience: session_audience.to_owned(),
        }
    }

    /// The algorithms this verifier accepts.
    pub fn allowed(&self) -> &HashSet<Algorithm> {
        &self.allowed
    }

    /// What /readyz reports about the key set.
    pub fn state(&self) -> JwksState {
        self.read_state(|s| s.report.clone())
    }

    // A panic cannot leave `FetchState` half written (every write replaces whole fields of
    // plain data), so a poisoned lock still holds a consistent value and is used as is.
    fn read_state<T>(&self, f: impl FnOnce(&FetchState) -> T) -> T {
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write_state<T>(&self, f: impl FnOnce(&mut FetchState) -> T) -> T {
        f(&mut self.state.write().unwrap_or_else(PoisonError::into_inner))
    }

    #[tracing::instrument(name = "jwks.fetch", skip_all, fields(host = %self.host))]
    async fn fetch(&self) -> Result<KeySet, JwksError> {
        metrics::counter!(crate::metrics::JWKS_FETCHES).increment(1);
        let result = self.fetch_uncounted().await;
        if result.is_err() {
            metrics::counter!(crate::metrics::JWKS_FAILURES).increment(1);
        }
        result
    }

    async fn fetch_uncounted(&self) -> Result<KeySet, JwksError> {
        let resp = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| JwksError::Fetch(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(JwksError::Fetch(format!("HTTP {}", resp.status())));
        }
        let ttl = max_age(resp.headers())
            .unwrap_or(self.settings.jwks_cache_ttl_secs)
            .clamp(
                self.settings.jwks_min_ttl_secs,
                self.settings
                    .jwks_max_ttl_secs
                    .max(self.settings.jwks_min_ttl_secs),
            );
        let body: Value = resp.json().await.map_err(|_| JwksError::Malformed)?;
        let entries = body
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::Malformed)?;
        let mut set = KeySet {
            keys: HashMap::new(),
            unsupported: HashMap::new(),
            ttl: Duration::from_secs(ttl),
        };
        for entry in entries {
            let field = |k: &str| entry.get(k).and_then(Value::as_str).map(str::to_owned);
            let Some(kid) = field("kid") else { continue };
            let parsed = serde_json::from_value::<Jwk>(entry.clone())
                .ok()
                .and_then(|jwk| DecodingKey::from_jwk(&jwk).ok());
            match parsed {
                Some(decoding) => {
                    let key = Key {
                        decoding,
                        kty: field("kty").unwrap_or_default(),
                        crv: field("crv"),
                        alg: field("alg"),
                    };
                    set.keys.insert(kid, key);
                }
                None => {
                    let alg = field("alg")
                        .or_else(|| field("crv"))
                        .unwrap_or_else(|| "unknown".into());
                    tracing::warn!(%kid, %alg, "JWKS key this gateway cannot use; skipped");
                    set.unsupported.insert(kid, alg);
                }
            }
        }
        Ok(set)
    }

    /// Fetches the set; on failure falls back to the last good set for a short while.
    async fn load(&self) -> Result<Arc<KeySet>, AuthError> {
        let backing_off = self.read_state(|s| {
            s.last_good.is_none()
                && s.last_failure
                    .is_some_and(|t| t.elapsed() < FAILURE_BACKOFF)
        });
        if backing_off {
            return Err(AuthError::KeysUnavailable);
        }
        match self.fetch().await {
            Ok(set) => {
                let set = Arc::new(set);
                self.write_state(|s| {
                    *s = FetchState {
                        report: JwksState::Ready {
                            keys: set.keys.len(),
                        },
                        last_good: Some(set.clone()),
                        last_failure: None,
                    }
                });
                Ok(set)
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "could not fetch the upstream JWKS");
                let error = e.to_string();
                let last_good = self.write_state(|s| {
                    s.last_failure = Some(Instant::now());
                    s.report = match &s.last_good {
                        Some(good) => JwksState::Stale {
                            keys: good.keys.len(),
                            error,
                        },
                        None => JwksState::Unavailable { error },
                    };
                    s.last_good.clone()
                });
                let good = last_good.ok_or(AuthError::KeysUnavailable)?;
                // Serve it again for one cooldown before the next attempt.
                let cooldown = Duration::from_secs(self.settings.jwks_refetch_cooldown_secs.max(1));
                Ok(Arc::new(KeySet {
                    ttl: cooldown,
                    ..(*good).clone()
                }))
            }
        }
    }

    async fn key_set(&self) -> Result<Arc<KeySet>, AuthError> {
        self.cache
            .try_get_with((), self.load())
            .await
            .map_err(|_: Arc<AuthError>| AuthError::KeysUnavailable)
    }

    /// Warms the cache (called at start-up; failures are only logged).
    pub async fn prefetch(&self) {
        let _ = self.key_set().await;
    }

    /// Finds the key for `kid`, refetching once per cooldown when it is unknown
    /// (Better Auth rotated its keys).
    async fn key_for(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        let lookup = |set: &KeySet| -> Option<Result<DecodingKey, AuthError>> {
            if let Some(key) = set.keys.get(kid) {
                return Some(if key.fits(alg) {
                    Ok(key.decoding.clone())
                } else {
                    Err(AuthError::InvalidToken)
                });
            }
            set.unsupported
                .get(kid)
                .map(|_| Err(AuthError::UnsupportedAlgorithm))
        };
        if let Some(found) = lookup(&*self.key_set().await?) {
            return found;
        }
        let cooldown = Duration::from_secs(self.settings.jwks_refetch_cooldown_secs);
        let mut last = self.forced_refetch.lock().await;
        if last.is_none_or(|t| t.elapsed() >= cooldown) {
            *last = Some(Instant::now());
            self.cache.invalidate(&()).await;
        }
        drop(last);
        lookup(&*self.key_set().await?).unwrap_or(Err(AuthError::InvalidToken))
    }
}

#[async_trait]
impl UpstreamVerifier for JwksVerifier {
    async fn verify(&self, token: &str) -> Result<UpstreamIdentity, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        let validation = self
            .validations
            .get(&header.alg)
            .ok_or(AuthError::UnsupportedAlgorithm)?;
        let kid = header.kid.as_deref().ok_or(AuthError::InvalidToken)?;
        let key = self.key_for(kid, header.alg).await?;
        let data = decode::<Map<String, Value>>(token, &key, validation).map_err(from_jwt_error)?;
        identity_from_claims(
            &data.claims,
            &self.settings.user_id_claim,
            &self.session_audience,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verifier whose key server refuses connections: a port just freed.
    fn unreachable_verifier() -> JwksVerifier {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let settings = crate::config::Settings::defaults().upstream;
        JwksVerifier::new(
            format!("http://127.0.0.1:{port}/jwks"),
            &settings,
            "chatkit",
        )
    }

    #[tokio::test]
    async fn a_failed_first_fetch_is_reported_with_its_error_and_backs_off() {
        let verifier = unreachable_verifier();
        assert_eq!(verifier.state(), JwksState::NotFetched);
        verifier.prefetch().await;
        let JwksState::Unavailable { error } = verifier.state() else {
            panic!("expected unavailable, got {:?}", verifier.state());
        };
        assert!(error.contains("fetching the key set failed"), "{error}");
        verifier.read_state(|s| {
            assert!(s.last_good.is_none() && s.last_failure.is_some());
        });
        // Within the backoff no fetch is tried: the failure time stays the first one.
        let first = verifier.read_state(|s| s.last_failure);
        assert!(matches!(
            verifier.load().await,
            Err(AuthError::KeysUnavailable)
        ));
        assert_eq!(verifier.read_state(|s| s.last_failure), first);
    }

    #[test]
    fn a_panic_while_the_state_is_held_does_not_take_the_verifier_down() {
        let verifier = unreachable_verifier();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            verifier.write_state(|_| panic!("poison the lock"))
        }));
        assert!(panicked.is_err());
        assert!(verifier.state.is_poisoned());
        assert_eq!(verifier.state(), JwksState::NotFetched);
        verifier.write_state(|s| s.report = JwksState::Ready { keys: 1 });
        assert_eq!(verifier.state(), JwksState::Ready { keys: 1 });
    }
}
