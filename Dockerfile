# syntax=docker/dockerfile:1
# Multi-stage build of both Gatehouse images from one builder:
#
#   docker build --target authserver -t ghcr.io/gatehouse-dev/authserver:0.1.0 .
#   docker build --target operator   -t ghcr.io/gatehouse-dev/gatehouse-operator:0.1.0 .
#
# Reproducible: the toolchain image is pinned, dependencies come from Cargo.lock
# (--locked), and protoc is vendored (no apt in the build). The runtime stage is
# distroless: glibc and CA certificates, no shell, no package manager, non-root.

FROM docker.io/library/rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# gcc and make for aws-lc-sys / ring / libsqlite3-sys (bundled C sources).
RUN apt-get update -q && apt-get install -y -q --no-install-recommends gcc g++ make \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p authserver -p operator \
    && mkdir -p /out \
    && cp target/release/authserver target/release/gatehouse-operator /out/

# Same Debian release as the builder, so the binaries' glibc requirement is met.
FROM gcr.io/distroless/cc-debian12:nonroot AS authserver
COPY --from=build /out/authserver /usr/local/bin/authserver
USER 65532:65532
# SQLite data for standalone use; in Kubernetes the pods use PostgreSQL and a read-only
# root filesystem.
WORKDIR /var/lib/gatehouse
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/authserver"]
CMD ["serve"]

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /out/gatehouse-operator /usr/local/bin/gatehouse-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gatehouse-operator"]
