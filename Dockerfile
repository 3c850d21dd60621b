# syntax=docker/dockerfile:1
# stratus container image: Debian 12, two stages.
#
#   docker build -t stratus .                       (amd64 only: the deny guards need Hyperscan)
#   docker run --rm -p 127.0.0.1:8080:8080 -e STRATUS_MASTER_KEY=$(openssl rand -hex 24) stratus
#
# The build stage compiles llama.cpp (scripts/build-llama: the source pinned by checksum in the
# npm package node-llama-cpp, CPU backend) and the gateway, and makes the demo model. The
# runtime stage has only the shared libraries the binary links, ca-certificates and curl (the
# HEALTHCHECK), and runs as an unprivileged user. docs/deploy.md has the details;
# scripts/verify-packaging builds this file with buildah/podman and starts the result.

ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
        build-essential pkg-config cmake git ca-certificates nodejs npm \
        libevent-dev libcurl4-openssl-dev libjansson-dev libyaml-dev libssl-dev zlib1g-dev \
        libsqlite3-dev libpq-dev libhiredis-dev libpcre2-dev libhyperscan-dev \
        libhttp-parser-dev libjsmn-dev libnghttp2-dev \
 && rm -rf /var/lib/apt/lists/*
# llama.cpp first: it changes far less often than the gateway, so this layer stays cached.
# STRATUS_CACHE puts it under /opt/stratus; the runtime stage copies it to the same path,
# where the binary's rpath looks.
ENV STRATUS_CACHE=/opt/stratus
WORKDIR /src
COPY scripts/build-llama scripts/build-llama
RUN scripts/build-llama && rm -rf /root/.npm
COPY Makefile VERSION ./
COPY config config
COPY tools tools
COPY src src
RUN make -j"$(nproc)" all models \
 && mkdir -p /out/usr/local/bin /out/usr/share/stratus/models /out/etc/stratus /out/opt/stratus \
 && install -m 0755 build/stratus /out/usr/local/bin/stratus \
 && install -m 0644 build/models/tiny.gguf /out/usr/share/stratus/models/tiny.gguf \
 && install -m 0644 config/prices.yaml /out/etc/stratus/prices.yaml \
 && cp -a /opt/stratus/llama-* /out/opt/stratus/ \
 && rm -rf /out/opt/stratus/llama-*/include /out/opt/stratus/llama-*/lib/cmake \
           /out/opt/stratus/llama-*/lib/pkgconfig /out/opt/stratus/llama-*/bin
COPY deploy/docker/stratus.yaml /out/etc/stratus/stratus.yaml

FROM ${DEBIAN_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# Exactly the libraries `ldd build/stratus` names (plus libgomp for llama.cpp's CPU backend);
# the RUN after COPY below fails the build if one is missing.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
        ca-certificates curl tini \
        libevent-2.1-7 libevent-pthreads-2.1-7 libcurl4 libjansson4 libyaml-0-2 libssl3 \
        libsqlite3-0 libpq5 libhiredis0.14 libnghttp2-14 libpcre2-8-0 libhyperscan5 \
        libhttp-parser2.9 zlib1g libgomp1 libstdc++6 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && groupadd --system --gid 10001 stratus \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/stratus --no-create-home \
        --shell /usr/sbin/nologin stratus \
 && install -d -o stratus -g stratus -m 0750 /var/lib/stratus
COPY --from=build /out/ /
RUN ! ldd /usr/local/bin/stratus | grep 'not found' \
 && stratus --version \
 && STRATUS_MASTER_KEY=only-for-the-build-time-check stratus check --config /etc/stratus/stratus.yaml

USER 10001:10001
WORKDIR /var/lib/stratus
ENV TMPDIR=/tmp
EXPOSE 8080
STOPSIGNAL SIGTERM
# /health is 200 while the process serves; readiness (/ready) is the orchestrator's business.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "--max-time", "2", "-o", "/dev/null", "http://127.0.0.1:8080/health"]
# tini as PID 1: it forwards SIGTERM/SIGHUP to the gateway and reaps. Needed, not just tidy:
# an engine worker exits at once when its parent is PID 1 (src/engine/supervisor.c takes
# that for "the gateway already died"), so the gateway itself must not be PID 1.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/stratus"]
CMD ["serve", "--config", "/etc/stratus/stratus.yaml"]
