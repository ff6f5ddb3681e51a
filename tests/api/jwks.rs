//! The JWKS verifier against a fake Better Auth key server on loopback, with keys made by
//! the test (support/jwks.rs).

use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    jwks::{b64, claims, ed25519, p256, rsa, sign, FakeJwks, TestKey},
    spawn_app_with,
    wait::{within, Gate},
    ApiResponse, TestApp,
};

/// The service verifying upstream tokens against `jwks`, with `edit` applied on top.
async fn gateway(jwks: &FakeJwks, edit: impl FnOnce(&mut chatkit_gateway::Settings)) -> TestApp {
    spawn_app_with(|settings| {
        settings.upstream.base_url = jwks.base.clone();
        edit(settings);
    })
    .await
}

async fn exchange(app: &TestApp, token: &str) -> ApiResponse {
    app.request(Method::POST, "/api/chatkit/session", Some(token), None, &[])
        .await
}

#[tokio::test]
async fn tokens_of_every_supported_algorithm_are_accepted() {
    let keys = [
        ed25519("ed"),
        p256("ec"),
        rsa("rs", Algorithm::RS256),
        rsa("ps", Algorithm::PS256),
    ];
    let jwks = FakeJwks::start(&keys.iter().collect::<Vec<_>>()).await;
    let app = gateway(&jwks, |_| {}).await;
    for key in &keys {
        let user = format!("user-{}", key.kid);
        let session = exchange(&app, &sign(key, claims(&jwks.base, &user)))
            .await
            .ok();
        assert_eq!(session["user_id"], user.as_str(), "{:?}", key.alg);
        // The client_secret works on the thread API.
        app.get(
            "/api/chatkit/threads",
            session["client_secret"].as_str().unwrap(),
        )
        .await
        .ok();
    }
    // `aud` may be an array.
    let mut c = claims(&jwks.base, "arr");
    c["aud"] = json!(["https://other.example", jwks.base]);
    exchange(&app, &sign(&keys[0], c)).await.ok();
    // HS256 dev tokens still work beside JWKS.
    exchange(&app, &app.upstream_token("hs-user")).await.ok();
    assert_eq!(jwks.hits(), 1, "one fetch served every key");
    let ready = app.ready().await;
    assert_eq!(
        (ready["jwks"].as_str(), ready["jwks_keys"].as_u64()),
        (Some("ready"), Some(4))
    );
}

#[tokio::test]
async fn wrong_addressing_expiry_and_tampering_are_refused() {
    let key = ed25519("k1");
    let jwks = FakeJwks::start(&[&key]).await;
    let app = gateway(&jwks, |_| {}).await;
    let now = chrono::Utc::now().timestamp();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims(&jwks.base, "alice");
        edit(&mut c);
        sign(&key, c)
    };
    exchange(&app, &with(&|c| c["iss"] = json!("https://evil.example")))
        .await
        .assert_error(401, "auth.invalid_token");
    exchange(&app, &with(&|c| c["aud"] = json!("https://evil.example")))
        .await
        .assert_error(401, "auth.invalid_token");
    exchange(&app, &with(&|c| c["exp"] = json!(now - 60)))
        .await
        .assert_error(401, "auth.expired");
    exchange(&app, &with(&|c| c["exp"] = json!(now - 10)))
        .await
        .ok();
    exchange(
        &app,
        &with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
    )
    .await
    .assert_error(401, "auth.invalid_token");
    exchange(
        &app,
        &with(&|c| {
            c.as_object_mut().unwrap().remove("sub");
        }),
    )
    .await
    .assert_error(401, "auth.invalid_token");
    exchange(&app, &with(&|c| c["aud"] = json!("chatkit")))
        .await
        .assert_error(401, "auth.invalid_token");
    // Tampered payload, same signature.
    let good = with(&|_| {});
    let parts: Vec<&str> = good.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = json!("mallory");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(payload.to_string().as_bytes()),
        parts[2]
    );
    exchange(&app, &tampered)
        .await
        .assert_error(401, "auth.invalid_token");
    // Signed by a key the server never published, under a published kid.
    let impostor = ed25519("k1");
    exchange(&app, &sign(&impostor, claims(&jwks.base, "alice")))
        .await
        .assert_error(401, "auth.invalid_token");
    // Explicit issuer/audience settings replace the defaults.
    let strict = gateway(&jwks, |s| {
        s.upstream.audience = "https://api.example".into()
    })
    .await;
    exchange(&strict, &with(&|_| {}))
        .await
        .assert_error(401, "auth.invalid_token");
    exchange(&strict, &with(&|c| c["aud"] = json!("https://api.example")))
        .await
        .ok();
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let ed = ed25519("ed");
    let rs = rsa("rs", Algorithm::RS256);
    let jwks = FakeJwks::start(&[&ed, &rs]).await;
    let app = gateway(&jwks, |_| {}).await;
    let header = |alg: &str, kid: &str| b64(json!({"alg": alg, "kid": kid}).to_string().as_bytes());
    let body = b64(claims(&jwks.base, "alice").to_string().as_bytes());

    // HS256 signed with the published public key as the HMAC secret.
    let n = rs.jwk["n"].as_str().unwrap();
    let forged = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rs".into());
        jsonwebtoken::encode(
            &h,
            &claims(&jwks.base, "alice"),
            &EncodingKey::from_secret(n.as_bytes()),
        )
        .unwrap()
    };
    exchange(&app, &forged)
        .await
        .assert_error(401, "auth.invalid_token");
    // With no shared secret configured, HS256 has no verifier at all.
    let jwks_only = gateway(&jwks, |s| {
        s.upstream.hs256_secret = secrecy::SecretString::from("")
    })
    .await;
    exchange(&jwks_only, &forged)
        .await
        .assert_error(401, "auth.unsupported_algorithm");
    exchange(&jwks_only, &format!("{}.{body}.", header("none", "ed")))
        .await
        .assert_error(401, "auth.invalid_token");
    // A key used with an algorithm its type does not fit.
    let es_claiming_ed = format!("{}.{body}.{}", header("ES256", "ed"), b64(&[0u8; 64]));
    exchange(&app, &es_claiming_ed)
        .await
        .assert_error(401, "auth.invalid_token");
    // The RSA key is published for RS256 only: a PS256 token under its kid is refused.
    let ps = TestKey {
        alg: Algorithm::PS256,
        ..rs.clone()
    };
    exchange(&app, &sign(&ps, claims(&jwks.base, "alice")))
        .await
        .assert_error(401, "auth.invalid_token");
    // An algorithm outside the allow-list, even with a fitting key.
    let ed_only = gateway(&jwks, |s| s.upstream.algorithms = vec!["EdDSA".into()]).await;
    exchange(&ed_only, &sign(&rs, claims(&jwks.base, "alice")))
        .await
        .assert_error(401, "auth.unsupported_algorithm");
    exchange(&ed_only, &sign(&ed, claims(&jwks.base, "alice")))
        .await
        .ok();
    // ES512 (Better Auth can issue it; this gateway cannot verify it): a clear code, and
    // a P-521 key in the set does not spoil the others.
    jwks.add_raw_key(
        json!({"kty": "EC", "crv": "P-521", "alg": "ES512", "kid": "p521",
        "x": b64(&[1u8; 66]), "y": b64(&[2u8; 66])}),
    );
    let fresh = gateway(&jwks, |_| {}).await;
    let es512 = format!("{}.{body}.{}", header("ES512", "p521"), b64(&[0u8; 132]));
    exchange(&fresh, &es512)
        .await
        .assert_error(401, "auth.unsupported_algorithm");
    exchange(&fresh, &sign(&ed, claims(&jwks.base, "alice")))
        .await
        .ok();
}

#[tokio::test]
async fn rotated_keys_are_picked_up_and_forged_kids_do_not_flood_the_key_server() {
    let old = ed25519("old");
    let jwks = FakeJwks::start(&[&old]).await;
    let app = gateway(&jwks, |s| s.upstream.jwks_refetch_cooldown_secs = 2).await;
    exchange(&app, &sign(&old, claims(&jwks.base, "alice")))
        .await
        .ok();
    assert_eq!(jwks.hits(), 1);

    // Better Auth rotates: a token under a new kid triggers one refetch.
    let new = p256("new");
    jwks.set_keys(&[&old, &new]);
    exchange(&app, &sign(&new, claims(&jwks.base, "alice")))
        .await
        .ok();
    assert_eq!(jwks.hits(), 2);

    // 60 concurrent tokens with forged kids: refused, and at most one refetch per cooldown.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let forged: Vec<String> = (0..60)
        .map(|i| sign(&ed25519(&format!("forged-{i}")), claims(&jwks.base, "x")))
        .collect();
    let replies = futures_util::future::join_all(forged.iter().map(|t| exchange(&app, t))).await;
    for r in &replies {
        r.assert_error(401, "auth.invalid_token");
    }
    assert_eq!(jwks.hits(), 3, "one refetch for the whole flood");
    let again =
        futures_util::future::join_all(forged.iter().take(10).map(|t| exchange(&app, t))).await;
    assert!(again.iter().all(|r| r.code() == "auth.invalid_token"));
    assert_eq!(jwks.hits(), 3, "still inside the cooldown");
}

#[tokio::test]
async fn the_key_set_is_fetched_once_for_concurrent_callers_and_honours_max_age() {
    let key = ed25519("k");
    let jwks = FakeJwks::start(&[&key]).await;
    jwks.set_max_age(1);
    jwks.set_delay(Duration::from_millis(200));
    // Token verifications are not remembered here: every request must consult the key set.
    let app = gateway(&jwks, |s| {
        s.upstream.jwks_min_ttl_secs = 1;
        s.upstream.verified_cache_secs = 0;
    })
    .await;
    // The start-up prefetch may be in flight; either way the callers share one fetch.
    let token = sign(&key, claims(&jwks.base, "alice"));
    let replies = futures_util::future::join_all((0..20).map(|_| exchange(&app, &token))).await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(jwks.hits(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    exchange(&app, &token).await.ok();
    assert_eq!(jwks.hits(), 2, "max-age=1 expired the cached set");
}

#[tokio::test]
async fn an_outage_keeps_the_last_good_keys() {
    let key = ed25519("k");
    let jwks = FakeJwks::start(&[&key]).await;
    jwks.set_max_age(1);
    let app = gateway(&jwks, |s| {
        s.upstream.jwks_min_ttl_secs = 1;
        s.upstream.jwks_refetch_cooldown_secs = 1;
        s.upstream.verified_cache_secs = 0;
    })
    .await;
    let token = sign(&key, claims(&jwks.base, "alice"));
    let secret = exchange(&app, &token).await.ok()["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    jwks.set_failing(true);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    exchange(&app, &token).await.ok();
    let hits = jwks.hits();
    assert!(hits >= 2, "the expired set was refetched");
    let ready = app.ready().await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["jwks"], "stale");
    assert!(ready["jwks_error"].as_str().unwrap().contains("503"));
    // Stale keys are re-served for a cooldown, not refetched per request.
    for _ in 0..10 {
        exchange(&app, &token).await.ok();
    }
    assert_eq!(jwks.hits(), hits);
    app.get("/api/chatkit/threads", &secret).await.ok();
    // Recovery.
    jwks.set_failing(false);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    exchange(&app, &token).await.ok();
    let ready = app.ready().await;
    assert_eq!(ready["jwks"], "ready");
}

#[tokio::test]
async fn an_outage_with_no_keys_is_a_clear_503_and_recovers() {
    let key = ed25519("k");
    let jwks = FakeJwks::start(&[&key]).await;
    jwks.set_failing(true);
    let app = gateway(&jwks, |_| {}).await;
    let token = sign(&key, claims(&jwks.base, "alice"));
    exchange(&app, &token)
        .await
        .assert_error(503, "auth.keys_unavailable");
    // Failures back off: a burst does not become a burst of fetches.
    let before = jwks.hits();
    for _ in 0..10 {
        exchange(&app, &token)
            .await
            .assert_error(503, "auth.keys_unavailable");
    }
    assert!(jwks.hits() <= before + 1);
    let ready = app.ready().await;
    assert_eq!(ready["jwks"], "unavailable");
    // HS256 sessions keep working meanwhile.
    app.login("hs-user").await;
    jwks.set_failing(false);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    exchange(&app, &token).await.ok();
}

#[tokio::test]
async fn a_hanging_key_server_times_out() {
    let key = ed25519("k");
    let jwks = FakeJwks::start(&[&key]).await;
    // The key server never answers while the test runs: only the fetch's timeout can end
    // the exchange.
    let never = Gate::new();
    jwks.hold(&never);
    let app = gateway(&jwks, |s| s.upstream.jwks_timeout_ms = 300).await;
    within(
        "the key fetch's timeout ending the exchange",
        exchange(&app, &sign(&key, claims(&jwks.base, "alice"))),
    )
    .await
    .assert_error(503, "auth.keys_unavailable");
    assert!(never.arrived() >= 1, "the key server was asked");
}

#[tokio::test]
async fn a_remembered_token_still_expires_and_copies_of_it_are_checked_in_full() {
    let key = ed25519("k");
    let jwks = FakeJwks::start(&[&key]).await;
    let app = gateway(&jwks, |s| {
        s.upstream.leeway_secs = 0;
        s.upstream.verified_cache_secs = 60;
    })
    .await;
    let mut c = claims(&jwks.base, "alice");
    c["exp"] = json!(chrono::Utc::now().timestamp() + 2);
    let token = sign(&key, c);
    exchange(&app, &token).await.ok();
    exchange(&app, &token).await.ok();
    // Same payload, forged signature: a different string, so no shortcut.
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_sig = b64(&[7u8; 64]);
    parts[2] = &forged_sig;
    exchange(&app, &parts.join("."))
        .await
        .assert_error(401, "auth.invalid_token");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    exchange(&app, &token)
        .await
        .assert_error(401, "auth.expired");
}
