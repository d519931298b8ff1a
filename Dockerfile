# syntax=docker/dockerfile:1
# One image with every sendfleet binary: dispatcher, sender-worker, callback-ingest,
# mock-provider, and the operator CLI sendfleet. Pick the process with the container
# command.
#
#   docker build -t sendfleet:local .
#   docker run --rm sendfleet:local sender-worker --help

FROM rust:1-bookworm AS build
WORKDIR /src
# aws-lc-rs (rustls' crypto provider) builds C code; cmake and clang make that reliable.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# The commit sendfleet_build_info reports (.git is not in the build context):
#   docker build --build-arg SENDFLEET_GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
ARG SENDFLEET_GIT_COMMIT=unknown
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p sendfleet-dispatcher -p sendfleet-sender-worker \
      -p sendfleet-callback-ingest -p sendfleet-mock-provider -p sendfleet-cli \
 && mkdir -p /out \
 && cp target/release/dispatcher target/release/sender-worker \
       target/release/callback-ingest target/release/mock-provider target/release/sendfleet /out/

FROM debian:bookworm-slim AS runtime
# ca-certificates: provider APIs are HTTPS; tini: PID 1 that forwards SIGTERM so the
# services drain in-flight work and exit 0.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sendfleet
COPY --from=build /out/ /usr/local/bin/
COPY config/sendfleet.example.toml /etc/sendfleet/sendfleet.example.toml
USER 10001:10001
ENV SENDFLEET_CONFIG=/etc/sendfleet/sendfleet.toml
EXPOSE 9101 9102 9103 9200
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["sender-worker"]
