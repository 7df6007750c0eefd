# mailroute's container images, one target per program:
#
#   docker build --target operator -t mailroute-operator:0.1.0 .   mailroute (operator, CLI)
#   docker build --target relay    -t mailroute-relay:0.1.0 .      mailroute-relay
#   docker build --target sink     -t mailroute-sink:0.1.0 .       a recording SMTP server (tests, demo)
#
# Build arguments (docs/install.md, "Images"):
#   BUILD_IMAGE    where the binaries are built: a Rust image on Debian bookworm
#   RUNTIME_IMAGE  what they run on: distroless cc-debian12 (glibc, libgcc_s,
#                  CA certificates; no shell), or images/base.sh's offline copy
#   BINARIES       compile (default): cargo builds them in BUILD_IMAGE;
#                  prebuilt: take target/image-bin/ from the build context,
#                  built on a Debian bookworm host (images/build.sh does it);
#                  BUILD_IMAGE then only needs a shell.
# Nothing else is fetched from a registry, and it builds with the classic
# builder as well as BuildKit.

ARG BUILD_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
ARG BINARIES=compile
# Symbols stay (readable backtraces), debug info goes: about 20 MB per
# binary instead of 120 MB.
ENV CARGO_PROFILE_RELEASE_DEBUG=false
WORKDIR /src
COPY . .
RUN set -eu; mkdir -p /out; \
    if [ "$BINARIES" = prebuilt ]; then \
      cp target/image-bin/mailroute target/image-bin/mailroute-relay target/image-bin/sink /out/; \
    else \
      cargo build --release --locked -p operator --bin mailroute -p relay --bin mailroute-relay --example sink; \
      cp target/release/mailroute target/release/mailroute-relay target/release/examples/sink /out/; \
    fi

FROM ${RUNTIME_IMAGE} AS runtime
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
LABEL org.opencontainers.image.title="mailroute-sink" \
      org.opencontainers.image.description="A recording SMTP server for mailroute's demo and end-to-end tests (one log line per message)"
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
