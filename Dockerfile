# Build: dependencies first (cached layer), then the crate.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && mkdir migrations && cargo build --release && rm -rf src migrations
COPY src src
COPY migrations migrations
RUN touch src/main.rs src/lib.rs && cargo build --release

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 communication
COPY --from=build /src/target/release/communication /usr/local/bin/communication
USER 10001
ENV COMMUNICATION_LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["communication"]
CMD ["serve"]
