# A stand-in for postgres:16 where no registry answers: Debian bookworm's PostgreSQL 15 on
# the base `just local-bases` makes. It honours what the compose file gives the official
# image: POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB on first start, data under
# /var/lib/postgresql/data, pg_isready for the healthcheck, a fast clean stop on SIGTERM.
ARG LOCAL_BASE=iq-local-base:bookworm
FROM ${LOCAL_BASE}
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH="/usr/lib/postgresql/15/bin:$PATH" PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]
