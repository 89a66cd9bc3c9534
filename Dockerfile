# syntax=docker/dockerfile:1
# payroute image: `docker build -t payroute:0.1.0 .`
# The default (last) stage is distroless (no shell, uid 65532). `--target slim` builds a
# Debian-slim variant with a shell and /bin/sleep, for the chart's classic sidecar mode with
# `sidecar.preStop.type=exec` on clusters older than the kubelet's sleep handler.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin payroute \
 && install -D -m 0755 target/release/payroute /out/payroute \
 && mkdir -p /out/data

FROM debian:bookworm-slim AS slim
RUN groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /out/payroute /usr/local/bin/payroute
COPY --from=build --chown=65532:65532 /out/data /var/lib/payroute
ENV PAYROUTE_CONFIG=/etc/payroute/rules/routes.yaml \
    PAYROUTE_DATA_DIR=/var/lib/payroute
EXPOSE 8700 8701 8702
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/payroute"]
CMD ["serve"]

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/payroute /usr/local/bin/payroute
COPY --from=build --chown=65532:65532 /out/data /var/lib/payroute
ENV PAYROUTE_CONFIG=/etc/payroute/rules/routes.yaml \
    PAYROUTE_DATA_DIR=/var/lib/payroute
# 8700: unified API (loopback by default: PAYROUTE_API_LISTEN), 8701: notifications, 8702: admin.
EXPOSE 8700 8701 8702
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/payroute"]
CMD ["serve"]
