# imagequeue — every command you need. Run with `uv run just <recipe>`.

set dotenv-load := false

# Under `uv run just …` the project's environment is active already: run its python
# directly. A second `uv run` in between would be one more process that swallows a Ctrl-C
# arriving while it starts (uv eats SIGINT from the moment it installs its handler, and
# the child it has not spawned yet never sees it). Plain `just …` still goes through uv.
py := if env("VIRTUAL_ENV", "") != "" { "python" } else { "uv run python" }

# Show the recipes.
default:
    @just --list

# Run the whole service locally on embedded defaults (private Redis when none answers).
# Ctrl-C reaches just too; [continue] and exec let the stack's own exit status stand (0 after
# a clean stop) instead of just's "interrupted" (130) or the shell's death by SIGINT.
[continue]
up *ARGS:
    exec {{py}} -m imagequeue_api.up {{ARGS}}

# One worker process (WORKER_CONCURRENCY slots) against REDIS_URL.
[continue]
worker:
    exec {{py}} -m imagequeue_worker run

# N worker processes on this host (each WORKER_CONCURRENCY slots), all on REDIS_URL.
[continue]
scale N:
    exec {{py}} -m imagequeue_worker run --processes {{N}}

# Webhook delivery processes (WEBHOOK_CONCURRENCY slots each), on REDIS_URL.
[continue]
webhooks N="1":
    exec {{py}} -m imagequeue_worker webhooks --processes {{N}}

# The HTTP API and dashboard (API_HOST:API_PORT, API_PROCESSES processes).
[continue]
api:
    exec {{py}} -m imagequeue_api serve

# The cleanup schedule (taskiq scheduler).
[continue]
scheduler:
    exec {{py}} -m imagequeue_worker scheduler

# The stub AI server (all five protocols, fault injection, /stub/stats); --help for options.
[continue]
stub-ai *ARGS:
    exec {{py}} -m loadtest.stub_ai {{ARGS}}

# Remove finished jobs past retention now.
clean:
    uv run imagequeue-worker clean

# Lint and type-check everything.
lint:
    uv run ruff check .
    uv run ruff format --check .
    uv run mypy packages tests bench loadtest

# Format the code.
fmt:
    uv run ruff format .
    uv run ruff check --fix .

# Lint, type-check, then the whole test suite on real Redis (a private one if needed);
# without arguments, the engine's own tests once more on a private Redis Cluster after it.
test *ARGS: lint
    uv run pytest {{ARGS}}
    {{ if ARGS == "" { "TEST_REDIS_CLUSTER=1 uv run pytest -q tests/common" } else { "" } }}

# Redis restarted under load as an operator would: 10 s away, default lease, 90 s after.
chaos-restart *ARGS:
    IQ_RESTART_OUTAGE_S=10 IQ_RESTART_WATCH_S=90 uv run pytest --timeout 400 tests/integration/test_redis_restarts.py {{ARGS}}

# The engine's own tests on a private 3-primary Redis Cluster (loopback).
test-cluster *ARGS:
    TEST_REDIS_CLUSTER=1 uv run pytest tests/common {{ARGS}}

# Sentinel failover under 200 POST/s, with and without the replica acknowledgement.
bench-failover *ARGS:
    uv run python -m bench.failover {{ARGS}}

# Engine benchmark: our broker against stock taskiq-redis, one JSON line.
bench-engine *ARGS:
    uv run python -m bench.engine {{ARGS}}

# Pipeline benchmark: images through workers, the stub AI server and SQLite, one JSON line.
bench-pipeline *ARGS:
    uv run python -m bench.pipeline {{ARGS}}

# ETA benchmark: the ETA answered at creation against the real time, per tier, one JSON line.
bench-eta *ARGS:
    uv run python -m bench.eta {{ARGS}}

# API benchmark: POST /api/v1/characters at 1000 connections with wrk, one JSON line.
bench-api *ARGS:
    uv run python -m bench.api {{ARGS}}

# schemathesis, every check, against a live API for --max-time seconds (300), one JSON line.
fuzz *ARGS:
    uv run python -m bench.fuzz {{ARGS}}

# Login throttling: bursts of wrong dashboard passwords against a real API, one JSON line.
bench-logins *ARGS:
    uv run python -m bench.logins {{ARGS}}

# The load test: 1000 users through the whole stack, checks and reports (--help for options).
loadtest *ARGS:
    uv run python -m loadtest.run {{ARGS}}

# Build the image, start infra/docker-compose.yml, run the seed's flow through its port, kill
# a worker, SIGTERM a busy one, restart Redis, scale workers 3 -> 6 -> 1; one JSON line (needs
# dockerd; minutes).
compose-test *ARGS:
    uv run python -m loadtest.compose {{ARGS}}

# The seed's three servers: three compose projects (infra/server.yml) on one Redis and one
# PostgreSQL; one server killed under load; one JSON line (needs dockerd; minutes).
compose-servers:
    uv run python -m loadtest.compose.servers

# Where no container registry answers (#17): a Debian bookworm base made with debootstrap,
# and on it a Python 3.11 stand-in for python:3.11-slim; then the image built on it.
# Needs root, dockerd and debootstrap (apt-get install docker.io debootstrap).
local-bases MIRROR="http://deb.debian.org/debian":
    #!/usr/bin/env bash
    set -euo pipefail
    if ! docker image inspect iq-local-base:bookworm >/dev/null 2>&1; then
        root="$(mktemp -d /var/tmp/iq-base.XXXXXX)"
        debootstrap --variant=minbase bookworm "$root" "{{MIRROR}}"
        tar -C "$root" -c . | docker import - iq-local-base:bookworm
        rm -rf "$root"
    fi
    context="$(mktemp -d)"
    cp /etc/ssl/certs/ca-certificates.crt "$context/ca.crt"
    docker build --network host -t iq-local-python:3.11 -f infra/local/python.Dockerfile "$context"
    rm -rf "$context"
    docker build --network host -t iq-local-redis:7 -f infra/local/redis.Dockerfile infra/local
    docker build --network host -t iq-local-postgres:15 -f infra/local/postgres.Dockerfile infra/local
    docker build --network host --build-arg PYTHON_IMAGE=iq-local-python:3.11 \
        -f infra/Dockerfile -t imagequeue:latest .
    docker image ls --format '{{{{.Repository}}:{{{{.Tag}} {{{{.Size}}' | grep -E '^(iq-local|imagequeue)'

