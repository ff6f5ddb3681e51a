//! The HTTP clients that carry model calls to the provider.
//!
//! Over HTTP/1.1 every concurrent model stream holds a TCP (and TLS) connection of its
//! own, with hyper's buffers and tasks for it (~17 KB per open stream in the streams
//! benchmark, bench/RESULTS.md "HTTP/2 to the provider"). Over HTTP/2 (`agent.openai.http2`: by
//! default wherever TLS negotiates it) many streams share a connection; but one reqwest
//! client keeps a single HTTP/2 connection per host, and hyper queues every stream beyond
//! the server's concurrent-stream limit on it, so a burst of turns would wait behind each
//! other. Hence a set of clients, each given at most `http2_streams_per_connection`
//! streams at a time: a new client (and so a new connection) is made only when every
//! existing one is full. Where ALPN settles on HTTP/1.1 instead, the same set works: each
//! client then opens a connection per stream, as the HTTP/1.1 client does.

use std::{
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use tokio::time::Instant;

use crate::config::Http2Mode;

/// Idle HTTP/1.1 connections to the provider kept for reuse.
const IDLE_PROVIDER_CONNECTIONS: usize = 64;

/// How long an idle connection is kept.
const IDLE: Duration = Duration::from_secs(30);

/// How long an HTTP/2 client beyond the first is kept once it carries nothing. Only a
/// burst makes them, and each holds a TLS connection with its buffers and its own pool:
/// dropped after 30 s, 5,000 streams left the process ~10 MiB above its settled figure
/// for a minute (bench/RESULTS.md, "An https provider"). A new burst pays a TLS handshake per
/// 100 streams, a few milliseconds.
const SPARE_IDLE: Duration = Duration::from_secs(5);

/// How the provider is reached: a shared HTTP/1.1 client, or HTTP/2 clients of bounded
/// concurrency.
pub struct ModelClientPool {
    mode: Mode,
}

/// What every client to the provider is built with.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    connect_timeout: Duration,
    /// Certificate authorities trusted besides the built-in web roots.
    roots: Vec<reqwest::Certificate>,
}

/// Why the provider's clients could not be set up (at start-up).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("agent.openai.ca_file {path:?}: {reason}")]
    CaFile { path: String, reason: String },
}

impl ClientOptions {
    /// The options for `connect_timeout`, trusting the authorities in the PEM file
    /// `ca_file` too (it must hold at least one certificate).
    pub fn new(connect_timeout: Duration, ca_file: Option<&str>) -> Result<Self, SetupError> {
        let roots = match ca_file.filter(|path| !path.trim().is_empty()) {
            None => Vec::new(),
            Some(path) => {
                let fail = |reason: String| SetupError::CaFile {
                    path: path.to_owned(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
                let roots = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| fail(format!("not PEM certificates: {e}")))?;
                if roots.is_empty() {
                    return Err(fail("holds no certificate".into()));
                }
                roots
            }
        };
        Ok(Self {
            connect_timeout,
            roots,
        })
    }
}

enum Mode {
    Http1(reqwest::Client),
    Http2(Arc<Http2Clients>),
}

struct Http2Clients {
    options: ClientOptions,
    /// HTTP/2 only (ALPN `h2` alone, or h2c by prior knowledge), not as ALPN settles it.
    only_http2: bool,
    per_connection: usize,
    // Locked only to pick, release or prune (no await under it); a client is made under
    // it only when all are full.
    state: Mutex<Http2State>,
}

// A task drops the clients a burst left idle exactly while there is more than one: it is
// started when the second is made and ends when it has brought them back to one.
#[derive(Default)]
struct Http2State {
    clients: Vec<Client>,
    next_id: u64,
}

struct Client {
    id: u64,
    client: reqwest::Client,
    streams: usize,
    idle_since: Instant,
}

/// The client one model call goes out on, and its place in that client's count: keep
/// it until the response body has been read to its end (or dropped).
pub struct Lease {
    client: reqwest::Client,
    slot: Option<(Arc<Http2Clients>, u64)>,
}

impl Lease {
    /// The client to send the call with.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some((set, id)) = self.slot.take() {
            let mut state = set.lock();
            if let Some(c) = state.clients.iter_mut().find(|c| c.id == id) {
                c.streams = c.streams.saturating_sub(1);
                if c.streams == 0 {
                    c.idle_since = Instant::now();
                }
            }
        }
    }
}

fn builder(options: &ClientOptions) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .user_agent(concat!("chatkit-gateway/", env!("CARGO_PKG_VERSION")))
        // Connections left idle (after a burst) close soon instead of keeping their buffers.
        .pool_idle_timeout(IDLE);
    options
        .roots
        .iter()
        .fold(builder, |b, root| b.add_root_certificate(root.clone()))
}

impl Http2Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, Http2State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the clients beyond the first that have carried nothing for [`SPARE_IDLE`]:
    /// each has its own pool and TLS configuration, and a burst leaves dozens (without
    /// this, 40 s after 3,000 streams the process held ~5 MiB more than over HTTP/1.1).
    /// Runs while there is more than one client.
    async fn prune(set: Weak<Self>) {
        loop {
            tokio::time::sleep(SPARE_IDLE).await;
            let Some(set) = set.upgrade() else { return };
            let (idle, done) = {
                let mut state = set.lock();
                let (keep, idle): (Vec<_>, Vec<_>) = std::mem::take(&mut state.clients)
                    .into_iter()
                    .enumerate()
                    .partition(|(i, c)| {
                        *i == 0 || c.streams > 0 || c.idle_since.elapsed() < SPARE_IDLE
                    });
                state.clients = keep.into_iter().map(|(_, c)| c).collect();
                (idle, state.clients.len() <= 1)
            };
            // Outside the lock: closing their idle connections is a syscall each.
            drop(idle);
            if done {
                return;
            }
        }
    }
}

impl ModelClientPool {
    /// The clients `mode` asks for, for a provider at `https` or plain `http`.
    #[must_use]
    pub fn new(
        mode: Http2Mode,
        https: bool,
        per_connection: usize,
        options: ClientOptions,
    ) -> Self {
        match (mode, https) {
            (Http2Mode::Never, _) | (Http2Mode::Auto, false) => Self::http1(&options),
            (Http2Mode::Auto, true) => Self::http2(options, per_connection, false),
            (Http2Mode::Always, _) => Self::http2(options, per_connection, true),
        }
    }

    /// HTTP/1.1 only: one connection per concurrent stream, as every OpenAI-compatible
    /// server accepts.
    fn http1(options: &ClientOptions) -> Self {
        let client = builder(options)
            .http1_only()
            // Every streamed turn holds its own provider connection. After a burst (5,000
            // concurrent streams in the benchmark) all of them went idle into the pool and
            // stayed there, with their buffers: keep enough for steady traffic.
            .pool_max_idle_per_host(IDLE_PROVIDER_CONNECTIONS)
            .build()
            .expect("a reqwest client with timeouts builds");
        Self {
            mode: Mode::Http1(client),
        }
    }

    /// At most `per_connection` concurrent streams on each connection: HTTP/2 only (ALPN
    /// `h2` over `https`, prior knowledge over `http`) if `only_http2`, otherwise as ALPN
    /// settles it.
    fn http2(options: ClientOptions, per_connection: usize, only_http2: bool) -> Self {
        Self {
            mode: Mode::Http2(Arc::new(Http2Clients {
                options,
                only_http2,
                per_connection: per_connection.max(1),
                state: Mutex::default(),
            })),
        }
    }

    /// The client for the next model call. Call it on the runtime: a second HTTP/2
    /// client starts the task that later drops the idle ones.
    pub fn lease(&self) -> Lease {
        let set = match &self.mode {
            Mode::Http1(client) => {
                return Lease {
                    client: client.clone(),
                    slot: None,
                }
            }
            Mode::Http2(set) => set,
        };
        let mut state = set.lock();
        // The first client with room: streams gather on the oldest connections, and the
        // newer ones go idle (and are dropped) once a burst is over.
        let index = match state
            .clients
            .iter()
            .position(|c| c.streams < set.per_connection)
        {
            Some(index) => index,
            None => {
                let builder = builder(&set.options);
                let builder = if set.only_http2 {
                    builder.http2_prior_knowledge()
                } else {
                    builder
                };
                let client = builder
                    .build()
                    .expect("a reqwest client with timeouts builds");
                let id = state.next_id;
                state.next_id += 1;
                state.clients.push(Client {
                    id,
                    client,
                    streams: 0,
                    idle_since: Instant::now(),
                });
                if state.clients.len() == 2 {
                    tokio::spawn(Http2Clients::prune(Arc::downgrade(set)));
                }
                state.clients.len() - 1
            }
        };
        let c = &mut state.clients[index];
        c.streams += 1;
        Lease {
            client: c.client.clone(),
            slot: Some((set.clone(), c.id)),
        }
    }

    #[cfg(test)]
    fn counts(&self) -> Vec<usize> {
        match &self.mode {
            Mode::Http1(_) => Vec::new(),
            Mode::Http2(set) => set.lock().clients.iter().map(|c| c.streams).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(1),
            roots: Vec::new(),
        }
    }

    #[test]
    fn the_mode_and_scheme_choose_the_clients() {
        let shared = |mode, https| match ModelClientPool::new(mode, https, 100, options()).mode {
            Mode::Http2(set) => Some(set.only_http2),
            Mode::Http1(_) => None,
        };
        assert_eq!(shared(Http2Mode::Auto, true), Some(false));
        assert_eq!(shared(Http2Mode::Auto, false), None);
        assert_eq!(shared(Http2Mode::Always, true), Some(true));
        assert_eq!(shared(Http2Mode::Always, false), Some(true));
        assert_eq!(shared(Http2Mode::Never, true), None);
        assert_eq!(shared(Http2Mode::Never, false), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_client_is_made_only_when_every_one_is_full() {
        let up = ModelClientPool::http2(options(), 2, true);
        let a = up.lease();
        let b = up.lease();
        assert_eq!(up.counts(), [2]);
        let c = up.lease();
        assert_eq!(up.counts(), [2, 1]);
        drop(a);
        assert_eq!(up.counts(), [1, 1]);
        // The freed place on the first client is taken before the second gets more.
        let d = up.lease();
        assert_eq!(up.counts(), [2, 1]);
        let e = up.lease();
        assert_eq!(up.counts(), [2, 2]);
        drop((b, c, d, e));
        assert_eq!(up.counts(), [0, 0]);
        let _f = up.lease();
        assert_eq!(up.counts(), [1, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn clients_beyond_the_first_are_dropped_once_idle() {
        let up = ModelClientPool::http2(options(), 1, true);
        let leases: Vec<_> = (0..3).map(|_| up.lease()).collect();
        assert_eq!(up.counts(), [1, 1, 1]);
        // Busy clients stay, however long their streams last.
        tokio::time::sleep(SPARE_IDLE * 3).await;
        assert_eq!(up.counts(), [1, 1, 1]);
        drop(leases);
        tokio::time::sleep(SPARE_IDLE / 2).await;
        // In use again before it was idle long enough: kept.
        let _a = up.lease();
        let b = up.lease();
        assert_eq!(up.counts(), [1, 1, 0]);
        drop(b);
        tokio::time::sleep(SPARE_IDLE * 2 + Duration::from_secs(1)).await;
        assert_eq!(up.counts(), [1]);
        // The task has ended with one client left; a new burst starts it again.
        let c = up.lease();
        assert_eq!(up.counts(), [1, 1]);
        drop(c);
        tokio::time::sleep(SPARE_IDLE * 2 + Duration::from_secs(1)).await;
        assert_eq!(up.counts(), [1]);
    }

    #[tokio::test]
    async fn http1_leases_count_nothing() {
        let up = ModelClientPool::http1(&options());
        let _a = up.lease();
        let _b = up.lease();
        assert!(up.counts().is_empty());
    }
}
