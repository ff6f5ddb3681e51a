//! A fake Better Auth key server on loopback (`/api/auth/jwks`), the keys the tests sign
//! with, and tokens shaped as Better Auth issues them.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use poem::{get, handler, web::Data, EndpointExt, Response, Route};
use serde_json::{json, Value};

use super::{app::serve_on_loopback, wait::Gate};

/// A key the test signs with, and its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn ed25519(kid: &str) -> TestKey {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let der = key.to_pkcs8_der().unwrap();
    TestKey {
        alg: Algorithm::EdDSA,
        kid: kid.into(),
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().as_bytes()), "kid": kid, "alg": "EdDSA"}),
    }
}

pub fn p256(kid: &str) -> TestKey {
    use p256::{elliptic_curve::sec1::ToEncodedPoint, pkcs8::EncodePrivateKey};
    let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let der = key.to_pkcs8_der().unwrap();
    let point = key.public_key().to_encoded_point(false);
    TestKey {
        alg: Algorithm::ES256,
        kid: kid.into(),
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()), "kid": kid, "alg": "ES256"}),
    }
}

/// RSA keys are slow to make in a debug build: one per test binary.
fn rsa_key() -> &'static rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap())
}

pub fn rsa(kid: &str, alg: Algorithm) -> TestKey {
    use rsa::{pkcs1::EncodeRsaPrivateKey, traits::PublicKeyParts};
    let key = rsa_key();
    let der = key.to_pkcs1_der().unwrap();
    let name = if alg == Algorithm::PS256 {
        "PS256"
    } else {
        "RS256"
    };
    TestKey {
        alg,
        kid: kid.into(),
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({"kty": "RSA", "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()), "kid": kid, "alg": name}),
    }
}

/// A Better Auth-shaped token: header `{alg, kid}`, claims user record + sub/iat/exp/iss/aud.
pub fn sign(key: &TestKey, claims: Value) -> String {
    let mut header = Header::new(key.alg);
    header.typ = None;
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

/// Better Auth's claims for `user`, issued by (and for) `issuer`, valid for 15 minutes.
pub fn claims(issuer: &str, user: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "id": user, "sub": user, "name": "Test User", "email": "t@example.com", "emailVerified": false,
        "iat": now, "exp": now + 900, "iss": issuer, "aud": issuer,
    })
}

/// The fake key server, serving at `base`.
pub struct FakeJwks {
    pub base: String,
    state: FakeState,
}

#[derive(Clone, Default)]
struct FakeState {
    hits: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    keys: Arc<Mutex<Vec<Value>>>,
    max_age: Arc<Mutex<Option<u64>>>,
    delay_ms: Arc<AtomicUsize>,
    held: Arc<Mutex<Option<Gate>>>,
}

#[handler]
async fn serve_jwks(state: Data<&FakeState>) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let held = state.held.lock().unwrap().clone();
    if let Some(gate) = held {
        gate.pass().await;
    }
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    if state.failing.load(Ordering::SeqCst) {
        return Response::builder()
            .status(poem::http::StatusCode::SERVICE_UNAVAILABLE)
            .body("down");
    }
    let body = json!({"keys": *state.keys.lock().unwrap()}).to_string();
    let mut resp = Response::builder().content_type("application/json");
    if let Some(age) = *state.max_age.lock().unwrap() {
        resp = resp.header("cache-control", format!("public, max-age={age}"));
    }
    resp.body(body)
}

impl FakeJwks {
    /// Publishing `keys`.
    pub async fn start(keys: &[&TestKey]) -> Self {
        let state = FakeState::default();
        let base = serve_on_loopback(
            Route::new()
                .at("/api/auth/jwks", get(serve_jwks))
                .data(state.clone()),
        )
        .await;
        let jwks = Self { base, state };
        jwks.set_keys(keys);
        jwks
    }

    pub fn set_keys(&self, keys: &[&TestKey]) {
        *self.state.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    pub fn add_raw_key(&self, jwk: Value) {
        self.state.keys.lock().unwrap().push(jwk);
    }

    /// How many times the key set was asked for.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Answers 503 from now on (`true`), or the keys again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// `Cache-Control: public, max-age=<secs>` on the answers from now on.
    pub fn set_max_age(&self, secs: u64) {
        *self.state.max_age.lock().unwrap() = Some(secs);
    }

    /// Each answer from now on takes `delay` (so concurrent callers overlap on one).
    pub fn set_delay(&self, delay: Duration) {
        let ms = usize::try_from(delay.as_millis()).unwrap();
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Each answer from now on waits until `gate` opens.
    pub fn hold(&self, gate: &Gate) {
        *self.state.held.lock().unwrap() = Some(gate.clone());
    }
}
