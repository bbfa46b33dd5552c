# Multi-stage build: compile in the Rust image, run in a small Debian image as a non-root user.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Build dependencies first so code changes reuse the cached layer.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin whatsapp-gateway

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --create-home gateway \
    && mkdir -p /data && chown gateway /data
COPY --from=build /src/target/release/whatsapp-gateway /usr/local/bin/whatsapp-gateway
USER gateway
WORKDIR /app
# `docker run --env-file config.env` overrides these with every uncommented line of the file;
# config.env.example keeps them commented out (checked by tests/api/container.rs).
ENV HOST=0.0.0.0 PORT=8000 DATA_DIR=/data LOG_FORMAT=json
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
    CMD ["whatsapp-gateway", "healthcheck"]
STOPSIGNAL SIGTERM
CMD ["whatsapp-gateway"]
