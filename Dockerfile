# Redis with the presence module, data in the /data volume.
#
#   docker build -t presence . && docker run -p 127.0.0.1:6379:6379 -v presence-data:/data presence
#
# By default the module is built in a Rust stage (rust:1-bookworm) and served by the official
# Redis image (redis:7.0-bookworm). Every base is a build argument, so the same file builds where
# those images cannot be pulled (scripts/docker.sh does that: a Debian base made locally, the module
# built on the host):
#   BUILD_IMAGE    the Rust toolchain image of the `built` stage
#   RUNTIME_IMAGE  the image that serves; Debian's redis-server is installed when it has none
#   MODULE         `built` (compile in the Rust stage) or `prebuilt` (take
#                  target/release/libpresence.so from the build context)
# Settings: container arguments are module arguments (`docker run presence timeout 30000`), and
# so is every PRESENCE_<NAME> variable (`-e PRESENCE_MAX_DEVICES=8` is `max-devices 8`);
# REDIS_ARGS adds server options (`-e REDIS_ARGS="--port 6380"`). Needs BuildKit (Docker 23 and
# later use it by default; DOCKER_BUILDKIT=1 before that), which builds only the stages used.
ARG BUILD_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=redis:7.0-bookworm
ARG MODULE=built

FROM ${BUILD_IMAGE} AS built
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked && cp target/release/libpresence.so /libpresence.so

FROM scratch AS prebuilt
COPY target/release/libpresence.so /libpresence.so

FROM ${MODULE} AS module

FROM ${RUNTIME_IMAGE}
RUN if ! command -v redis-server >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends redis-server \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=module /libpresence.so /usr/local/lib/redis/modules/libpresence.so
COPY redis.conf.example /usr/local/etc/redis/redis.conf
COPY scripts/docker-entrypoint.sh /usr/local/bin/presence-entrypoint
RUN mkdir -p /data
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/presence-entrypoint"]
