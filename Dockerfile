# syntax=docker/dockerfile:1
# chatkit-gateway container image.
#
#   docker build -t chatkit-gateway .
#   docker run --rm -p 8000:8000 -v chatkit-data:/app/data \
#     -e CHATKIT_SESSION_SECRET=... -e BETTER_AUTH_URL=https://auth.example.com chatkit-gateway
#
# Or with PostgreSQL: `docker compose up` (compose.yaml; secrets in .env, see .env.example).
#
# APP_ENV=production: the service refuses to start without CHATKIT_SESSION_SECRET (32+ bytes),
# without an upstream verifier (BETTER_AUTH_URL for JWKS and/or BETTER_AUTH_SECRET), with the
# development secrets, or with CHATKIT_SESSION_SECRET equal to BETTER_AUTH_SECRET.
#
# The service runs as uid:gid 10001:10001. A named volume on /app/data takes that owner
# from the image; a bind-mounted host directory keeps its own, so give it to 10001 first
# (`sudo chown 10001:10001 ./data`) or run with `--user "$(id -u):$(id -g)"`.

# Base images pinned to a release (the toolchain the tests run on, and Debian 12's point
# release), so a rebuild does not silently change compiler or libc.
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
# The workspace: the service, its entity and migration crates, the benchmark's load
# generator and floor (workspace members: cargo reads every member's manifest, even to
# build one binary), and config/ (every TOML file and the system prompt are compiled into
# the binary).
# .cargo/config.toml carries the SQLite and jemalloc build settings (the allocator's purge
# timing, SQLite's allocator without a global mutex). tests/api/container.rs checks that
# these files alone make a workspace cargo can read.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY entity ./entity
COPY migration ./migration
COPY bench/loadgen ./bench/loadgen
COPY bench/floor ./bench/floor
COPY config ./config
COPY src ./src
# Cache mounts keep the crate registry and build artefacts between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin chatkit-gateway \
    && install -m 0755 target/release/chatkit-gateway /usr/local/bin/chatkit-gateway

FROM debian:12.11-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=builder /usr/local/bin/chatkit-gateway /usr/local/bin/chatkit-gateway
COPY config ./config
# Owned by the service user (a new named volume copies this); group-writable and setgid
# so a container started with another uid but gid 10001 can write there too.
RUN mkdir -p /app/data && chown app:app /app/data && chmod 2770 /app/data
VOLUME ["/app/data"]
ENV HOST=0.0.0.0 \
    PORT=8000 \
    APP_ENV=production \
    DATABASE_URL=sqlite:///app/data/chatkit-gateway.db
USER 10001:10001
EXPOSE 8000
# The image has no curl: the binary probes its own /readyz (exit 0 ready, 1 not).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/chatkit-gateway", "healthcheck", "--timeout-ms", "4000"]
ENTRYPOINT ["/usr/local/bin/chatkit-gateway"]
CMD ["serve"]
