# syntax=docker/dockerfile:1
# Multi-stage build of the leadsift binary. librdkafka is compiled from the
# source bundled with rdkafka-sys, so the build stage needs a C toolchain.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p leadsift --bins \
 && install -m 0755 target/release/leadsift target/release/leadsift-bench /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/leadsift --create-home leadsift \
 && mkdir -p /var/lib/leadsift/inbox \
 && chown -R leadsift /var/lib/leadsift
COPY --from=build /usr/local/bin/leadsift /usr/local/bin/leadsift-bench /usr/local/bin/
COPY rules /etc/leadsift/rules
USER leadsift
WORKDIR /var/lib/leadsift
ENV LEADSIFT_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["leadsift"]
CMD ["run"]
