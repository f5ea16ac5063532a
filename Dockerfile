# syntax=docker/dockerfile:1
# Portcullis: the server and every shipped plugin, on debian-slim, as a non-root user.
#
#   docker build -t portcullis .
#   docker run --rm -p 4111:4111 portcullis          # the default config, development secret
#   docker run --rm -p 4111:4111 -v $PWD/my-config:/etc/portcullis portcullis
#
# The config is read from /etc/portcullis/portcullis.yaml (mount a folder there, as the
# Kubernetes manifests in deploy/k8s do, so that edits reload live); plugins from
# /usr/lib/portcullis/plugins unless the config's `plugins.dir` says otherwise.

# --- build -------------------------------------------------------------------------------------
# Same Debian release as the runtime image, so the binary and the plugins find the same glibc.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# `cargo build --release` builds the default members: the server and the shipped plugins.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && mkdir -p /out/plugins \
 && cp target/release/portcullis /out/ \
 && cp target/release/libportcullis_plugin_*.so /out/plugins/ \
 && (cd /out/plugins && sha256sum *.so > ../plugins.sha256)

# --- run ---------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: identity providers are reached over https and verified against the system roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 portcullis \
 && useradd --system --uid 10001 --gid portcullis --home-dir /var/lib/portcullis \
      --shell /usr/sbin/nologin portcullis \
 && install -d -o portcullis -g portcullis /var/lib/portcullis /etc/portcullis
COPY --from=build /out/portcullis /usr/local/bin/portcullis
COPY --from=build /out/plugins/ /usr/lib/portcullis/plugins/
# The plugins' SHA-256, for the config's `plugins.allow` (scripts/pin-plugins.sh --image reads it).
COPY --from=build /out/plugins.sha256 /usr/lib/portcullis/plugins.sha256
COPY config/portcullis.yaml /etc/portcullis/portcullis.yaml
# The default config reads these: listen on every interface, plugins from the image.
ENV PORTCULLIS_HOST=0.0.0.0 \
    PORTCULLIS_PLUGINS_DIR=/usr/lib/portcullis/plugins \
    PORTCULLIS_STATE_DIR=/var/lib/portcullis \
    PORTCULLIS_CONFIG=/etc/portcullis/portcullis.yaml \
    PORTCULLIS_LOG_FORMAT=json
USER 10001:10001
EXPOSE 4111
# For plain Docker; Kubernetes ignores it and uses the probes in deploy/k8s. No curl in the
# image: `portcullis probe` reads the port and host from the same config as the server
# (PORTCULLIS_CONFIG, or the port from PORT, else 4111) and asks for /health.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/portcullis", "probe", "--timeout", "3s"]
# SIGTERM drains in-flight requests (up to 30 s) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve"]
