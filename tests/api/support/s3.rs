//! The REAL S3-compatible server of the attachment tests: moto's standalone server
//! (`moto_server`, from the venv tests/s3/setup.sh creates), one per test on a free port.
//! It is set up unauthenticated (an IAM user with an access key allowed `s3:*`, and a
//! bucket), then told to authenticate every request from then on, so each request the
//! gateway sends must carry a valid SigV4 signature of that key.

use std::process::{Child, Command, Stdio};

use chatkit_gateway::config::S3Settings;
use object_store::{aws::AmazonS3Builder, path::Path, ObjectStore};
use secrecy::SecretString;

use super::{app::free_port, fixtures::SETUP, wait::eventually};

/// The bucket every server is set up with.
pub const BUCKET: &str = "attachments";

/// A running server; killed when dropped.
pub struct S3Server {
    port: u16,
    child: Option<Child>,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// `moto_server` from tests/s3's venv (or `S3_TEST_MOTO_SERVER`).
pub fn moto_server() -> String {
    if let Ok(program) = std::env::var("S3_TEST_MOTO_SERVER") {
        return program;
    }
    let venv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/s3/.venv/bin/moto_server"
    );
    if !std::path::Path::new(venv).exists() {
        panic!(
            "the S3 test server's venv (tests/s3/.venv, made by tests/s3/setup.sh) is \
             missing: run {SETUP} (it installs or checks every fixture of the suite)"
        );
    }
    venv.to_owned()
}

impl S3Server {
    /// A server with the user, its key and the bucket, enforcing signatures.
    pub async fn start() -> Self {
        let port = free_port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let mut server = Self {
            port,
            child: Some(child),
            access_key_id: String::new(),
            secret_access_key: String::new(),
        };
        let http = reqwest::Client::new();
        let base = server.endpoint();
        eventually("moto_server coming up", || async {
            http.get(format!("{base}/moto-api/"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
        // Unauthenticated set-up. moto picks the service of an unsigned request from the
        // credential scope of its Authorization header, which it does not check yet.
        let iam = |params: &[(&str, &str)]| {
            http.post(format!("{base}/"))
                .header(
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIASETUP/20260101/us-east-1/iam/aws4_request, \
                     SignedHeaders=host, Signature=0",
                )
                .form(&[&[("Version", "2010-05-08")][..], params].concat())
                .send()
        };
        let ok = |r: reqwest::Response| {
            assert!(r.status().is_success(), "moto set-up: {}", r.status());
            r
        };
        ok(iam(&[("Action", "CreateUser"), ("UserName", "gateway")])
            .await
            .unwrap());
        let key = ok(
            iam(&[("Action", "CreateAccessKey"), ("UserName", "gateway")])
                .await
                .unwrap(),
        )
        .text()
        .await
        .unwrap();
        server.access_key_id = between(&key, "<AccessKeyId>", "</AccessKeyId>");
        server.secret_access_key = between(&key, "<SecretAccessKey>", "</SecretAccessKey>");
        ok(iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", "gateway"),
            ("PolicyName", "s3"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
            ),
        ])
        .await
        .unwrap());
        ok(http.put(format!("{base}/{BUCKET}")).send().await.unwrap());
        // From now on every request must be signed by a known key.
        ok(http
            .post(format!("{base}/moto-api/reset-auth"))
            .header("Content-Type", "text/plain")
            .body("0")
            .send()
            .await
            .unwrap());
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The gateway's `[attachments.s3]` for this server.
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            bucket: BUCKET.into(),
            endpoint: self.endpoint(),
            region: "us-east-1".into(),
            access_key_id: SecretString::from(self.access_key_id.clone()),
            secret_access_key: SecretString::from(self.secret_access_key.clone()),
            allow_http: true,
            prefix: "attachments/".into(),
            part_bytes: 5 * 1024 * 1024,
        }
    }

    fn client(&self) -> impl ObjectStore {
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .build()
            .unwrap()
    }

    /// The keys of every object in the bucket, through a signed client of our own.
    pub async fn keys(&self) -> Vec<String> {
        use futures_util::TryStreamExt;
        let mut keys: Vec<String> = self
            .client()
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// The bytes of the object `key`.
    pub async fn object(&self, key: &str) -> Vec<u8> {
        use object_store::{GetOptions, ObjectStore as _};
        self.client()
            .get_opts(&Path::from(key), GetOptions::default())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text.find(start).expect("tag present") + start.len();
    let to = text[from..].find(end).expect("closing tag") + from;
    text[from..to].to_owned()
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
