# syntax=docker/dockerfile:1
# chatkit-gateway container image.
#
#   docker build -t chatkit-gateway .
#   docker run --rm -p 8000:8000 -v chatkit-data:/app/data \
#     -e CHATKIT_SESSION_SECRET=... -e BETTER_AUTH_URL=https://auth.example.com chatkit-gateway
#
# APP_ENV=production: the service refuses to start without CHATKIT_SESSION_SECRET (32+ bytes),
# without an upstream verifier (BETTER_AUTH_URL for JWKS and/or BETTER_AUTH_SECRET), with the
# development secrets, or with CHATKIT_SESSION_SECRET equal to BETTER_AUTH_SECRET.

FROM rust:1-bookworm AS builder
WORKDIR /src
# The workspace: the service, its entity and migration crates, and config/ (its TOML
# defaults are compiled into the binary).
COPY Cargo.toml Cargo.lock ./
COPY entity ./entity
COPY migration ./migration
COPY config ./config
COPY src ./src
# Cache mounts keep the crate registry and build artefacts between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin chatkit-gateway \
    && install -m 0755 target/release/chatkit-gateway /usr/local/bin/chatkit-gateway

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=builder /usr/local/bin/chatkit-gateway /usr/local/bin/chatkit-gateway
COPY config ./config
RUN mkdir -p /app/data && chown app:app /app/data
VOLUME ["/app/data"]
ENV HOST=0.0.0.0 \
    PORT=8000 \
    APP_ENV=production \
    DATABASE_URL=sqlite:///app/data/chatkit-gateway.db
USER app:app
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/chatkit-gateway"]
CMD ["serve"]
