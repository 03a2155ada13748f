# syntax=docker/dockerfile:1
#
# The latch image: `latch` (api, relay, worker, migrate and the operator commands) and
# `latch-sim` (the simulated legacy time-and-attendance system and webhook receiver, for
# test stacks), on Debian bookworm, running as an unprivileged user.
#
#   docker build -t latch:local .
#
# The database migrations are embedded in the `latch` binary (refinery), so the image needs
# no SQL files. No secret is baked in: every setting comes from LATCH_* variables (or a TOML
# file named by LATCH_CONFIG) when a container starts. See deploy/README.md.

# --- build -----------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target directories are BuildKit caches, so rebuilds reuse what they can;
# the binaries are copied out of the cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p latch-cli -p latch-sim \
    && mkdir -p /out \
    && cp target/release/latch target/release/latch-sim /out/

# --- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to PostgreSQL, NATS and the sinks checked against the system's trust
# store; curl: container health checks (GET /healthz, /readyz).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 latch \
    && useradd --system --uid 10001 --gid latch --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin latch
COPY --from=build /out/latch /out/latch-sim /usr/local/bin/

# latch api: LATCH_HTTP_ADDR (8080); relay and worker: LATCH_ADMIN_ADDR with /healthz, /readyz,
# /metrics (9101, 9102); latch-sim legacy: --addr and --admin-addr (8090, 8091). Each role
# listens on 127.0.0.1 unless told otherwise: give it 0.0.0.0:PORT in a container.
EXPOSE 8080 9101 9102 8090 8091

# A numeric user, so that Kubernetes can check runAsNonRoot.
USER 10001:10001
ENV LATCH_LOG_FORMAT=json
CMD ["latch", "--help"]
