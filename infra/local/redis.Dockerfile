# A stand-in for redis:7 where no registry answers: Debian bookworm's redis-server (7.0) on
# the base `just local-bases` makes. Same command, config path and data directory as the
# official image, so the compose file runs either unchanged.
ARG LOCAL_BASE=iq-local-base:bookworm
FROM ${LOCAL_BASE}
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data /usr/local/etc/redis && chown redis:redis /data
USER redis
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
