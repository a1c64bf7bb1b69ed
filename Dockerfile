# syntax=docker/dockerfile:1
#
# ferry's container image: a build stage with the pinned Rust toolchain that compiles the
# release binary from Cargo.lock, and a small Debian runtime that runs it as a non-root
# user (10001). `docker build -t ferry .`, then `docker run ferry` runs `ferry serve`,
# listening on 0.0.0.0:8080. The root filesystem may be read-only: the cloud setup
# (Redis + S3) writes nothing locally; the embedded default writes under its working
# folder /var/lib/ferry, so mount a volume there when you use it.
# See the README, "Deployment".

# The toolchain ferry is built and tested with here (rust-version in Cargo.toml: 1.88).
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Strip symbols from the release binary (about 30 MB down to about 23 MB); panics still
# name their location.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
# The registry and target folders are BuildKit caches, so a rebuild after a source change
# recompiles ferry, not its dependencies. The binary leaves the cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin ferry \
 && install -D -m 0755 target/release/ferry /out/ferry

# Same Debian release as the build stage, so the binary's glibc is there. ferry links
# only libc, libm and libgcc_s dynamically; TLS is rustls, with the system's CA roots.
FROM debian:bookworm-slim AS runtime
# Unpinned on purpose: bookworm-security replaces ca-certificates versions and removes
# the old ones, and a pin would break the build; the base image tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 ferry \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/ferry \
        --shell /usr/sbin/nologin ferry \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/ferry
COPY --from=build /out/ferry /usr/local/bin/ferry
USER 10001:10001
WORKDIR /var/lib/ferry
# Inside a container, listen on every interface; log one JSON object per line. Every
# other setting comes from FERRY__SECTION__KEY variables (README, "Configuration").
ENV FERRY__SERVER__LISTEN=0.0.0.0:8080 \
    FERRY__TELEMETRY__LOG_FORMAT=json
EXPOSE 8080
# ferry handles SIGTERM itself as PID 1 (readiness 503, drain, graceful stop) and starts
# no child processes, so it needs no init.
ENTRYPOINT ["ferry"]
CMD ["serve"]
