# Multi-stage build: a Rust toolchain image builds the release binary; the
# runtime image is Debian slim with the espeak-ng runtime (libopus is linked
# statically by the opus crate), a non-root user and a health check.
#   docker build -t warmline .
#   docker run -p 8080:8080 -e WARMLINE_AGENT_URL=ws://agent:9000/stream warmline
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libclang-dev libespeak-ng-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin warmline \
 && strip target/release/warmline

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libespeak-ng1 espeak-ng-data ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/warmline --create-home warmline
COPY --from=build /src/target/release/warmline /usr/local/bin/warmline
USER warmline
WORKDIR /var/lib/warmline
# Listen on all interfaces inside the container; keep the database on a volume.
# An address other than loopback needs an API token: run with -e WARMLINE_API_TOKEN=…
# (or WARMLINE_API_ALLOW_OPEN=true when a proxy in front guards the API).
ENV WARMLINE_SERVER_LISTEN=0.0.0.0:8080 \
    WARMLINE_STORE_PATH=/var/lib/warmline/data/warmline.db
VOLUME ["/var/lib/warmline/data"]
EXPOSE 8080
# SIGTERM drains: new calls are refused, calls in progress finish (server.drain_timeout_s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["warmline"]
CMD ["serve"]
