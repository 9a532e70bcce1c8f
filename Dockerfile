# Builds the presence module and runs it in the official Redis 7.0 image.
#   docker build -t presence . && docker run -p 6379:6379 presence
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked

FROM redis:7.0-bookworm
COPY --from=build /src/target/release/libpresence.so /usr/local/lib/redis/modules/libpresence.so
COPY redis.conf.example /usr/local/etc/redis/redis.conf
EXPOSE 6379
CMD ["redis-server", "/usr/local/etc/redis/redis.conf", \
     "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", \
     "--loadmodule", "/usr/local/lib/redis/modules/libpresence.so"]
