# A stand-in for python:3.11-slim where no registry answers (this project's own test
# machines): Debian bookworm's Python 3.11 on a base made locally by `just local-bases`
# (debootstrap --variant=minbase, then docker import). Never used where the official
# image can be pulled. The host's CA bundle comes in as ca.crt: behind a TLS-inspecting
# proxy, apt, pip and uv inside builds trust what the host trusts.
ARG LOCAL_BASE=iq-local-base:bookworm
FROM ${LOCAL_BASE}
COPY ca.crt /usr/local/share/ca-certificates/host-ca.crt
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        python3 python3-venv python3-pip python-is-python3 ca-certificates \
    && update-ca-certificates && rm -rf /var/lib/apt/lists/*
# python:3.11-slim lets pip install globally and uv use the system's certificates.
ENV PIP_BREAK_SYSTEM_PACKAGES=1 UV_NATIVE_TLS=1 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
