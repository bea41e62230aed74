# The tenants' dashboard: a static build (dashboard/dist) that the release binary embeds.
FROM node:20-bookworm-slim AS dashboard
WORKDIR /dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY dashboard/ ./
RUN npm run build

# Build: dependencies first (a cached layer that only Cargo.toml/Cargo.lock invalidate), then
# the crate. The runtime image is Debian slim with CA roots, running as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src migrations && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin communication \
    && rm -rf src migrations
COPY src src
COPY migrations migrations
COPY --from=dashboard /dashboard/dist dashboard/dist
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin communication

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin communication
COPY --from=build /src/target/release/communication /usr/local/bin/communication
USER 10001:10001
# serve: the HTTP API. worker: health and metrics when COMMUNICATION_WORKER_METRICS_ADDR is set.
ENV COMMUNICATION_LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080 9090
ENTRYPOINT ["communication"]
CMD ["serve"]
