# syntax=docker/dockerfile:1
# The lifeboat container image: the daemon and CLI on a distroless base (no shell, no package
# manager), running as the unprivileged user 65532.
#
#   docker build -t ghcr.io/lifeboat-dr/lifeboat:0.1.0 .
#
# The Helm chart (charts/lifeboat) runs it as
# `/lifeboat --config /etc/lifeboat/config.yaml --log-format json daemon`; pin the pushed image's
# digest with the chart's image.digest (charts/lifeboat/README.md).

# Build stage. The Debian release of the builder matches the runtime's (bookworm = Debian 12),
# so the binary needs no newer glibc than the runtime has.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# --no-default-features leaves out `embedded` (the in-memory cluster of `demo` and
# `drill --target embedded`), which a cluster deployment never uses. --locked builds exactly
# Cargo.lock. The caches only speed up rebuilds; the binary is copied out of the cached target.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --package lifeboat --bin lifeboat \
 && cp target/release/lifeboat /usr/local/bin/lifeboat

# Runtime stage: glibc, libgcc, CA certificates and tzdata, nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="lifeboat" \
      org.opencontainers.image.description="Disaster recovery for Kubernetes on AWS: scheduled backups of every API resource and EBS volume to S3, and restores into the same or another availability zone" \
      org.opencontainers.image.source="https://github.com/lifeboat-dr/lifeboat" \
      org.opencontainers.image.url="https://github.com/lifeboat-dr/lifeboat" \
      org.opencontainers.image.documentation="https://github.com/lifeboat-dr/lifeboat/tree/main/charts/lifeboat" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /usr/local/bin/lifeboat /lifeboat
# The distroless nonroot user, numerically, so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# /healthz, /ready and /metrics (server.listen).
EXPOSE 8000
ENTRYPOINT ["/lifeboat"]
