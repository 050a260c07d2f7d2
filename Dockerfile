# Builds the muster binary; compose.yaml runs it beside Postgres.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p muster

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/muster muster
COPY --from=build /src/target/release/muster /usr/local/bin/muster
USER muster
EXPOSE 8080
ENTRYPOINT ["muster"]
CMD ["serve"]
