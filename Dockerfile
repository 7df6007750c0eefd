# syntax=docker/dockerfile:1
# mailroute's container images, one target per program:
#
#   docker build --target operator -t ghcr.io/mailroute/mailroute-operator:0.1.0 .
#   docker build --target relay    -t ghcr.io/mailroute/mailroute-relay:0.1.0 .
#   docker build --target sink     -t mailroute-e2e-sink:dev .   (tests only)
#
# Built on Debian bookworm, run on distroless cc-debian12 (the same glibc;
# no shell, no package manager), as the non-root user 65532.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# Symbols stay (readable backtraces), debug info goes: about 20 MB per
# binary instead of 120 MB.
ENV CARGO_PROFILE_RELEASE_DEBUG=false
WORKDIR /src
COPY . .
# The registry and target caches make rebuilds incremental; the binaries
# are copied out of the cache mount so the final stages can take them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p operator --bin mailroute \
 && cargo build --release --locked -p relay --features kube --bin mailroute-relay --example sink \
 && mkdir -p /out \
 && cp target/release/mailroute target/release/mailroute-relay target/release/examples/sink /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.source="https://github.com/mailroute/mailroute" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="mailroute"
USER 65532:65532

FROM runtime AS operator
LABEL org.opencontainers.image.title="mailroute-operator" \
      org.opencontainers.image.description="mailroute's operator and CLI: compiles AddressSpace, RecipientPolicy, MailContact and SmtpConnector objects into the published routing table"
COPY --from=build /out/mailroute /usr/local/bin/mailroute
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mailroute"]
CMD ["operator"]

FROM runtime AS sink
LABEL org.opencontainers.image.title="mailroute-e2e-sink" \
      org.opencontainers.image.description="A recording SMTP server for mailroute's end-to-end tests (one log line per message)"
COPY --from=build /out/sink /usr/local/bin/sink
EXPOSE 2525
ENTRYPOINT ["/usr/local/bin/sink"]
CMD ["sink", "0.0.0.0:2525"]

# Last, so a plain `docker build .` gives the relay.
FROM runtime AS relay
LABEL org.opencontainers.image.title="mailroute-relay" \
      org.opencontainers.image.description="mailroute's SMTP relay: routes every recipient by the published table, cut-through, no queue"
COPY --from=build /out/mailroute-relay /usr/local/bin/mailroute-relay
EXPOSE 2525 9090
ENTRYPOINT ["/usr/local/bin/mailroute-relay"]
