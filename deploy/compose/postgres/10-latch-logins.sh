#!/usr/bin/env bash
# Run by the postgres image once, when it initialises an empty data volume: the four logins
# latch's processes connect with, each with its password from the container's environment.
# `latch migrate` (the compose service `migrate`) then makes each a member of its group role
# (latch_app, latch_relayer, latch_operator, latch_deliverer); `latch migrate` alone would
# create them without a password, and the server's scram-sha-256 rule would refuse them.
#
# To change a password later: ALTER ROLE latch_api PASSWORD '...' (this script does not run
# again on an existing volume), and the same value in deploy/compose/.env.
set -euo pipefail

: "${LATCH_PG_API_PASSWORD:?}" "${LATCH_PG_RELAY_PASSWORD:?}" "${LATCH_PG_OPS_PASSWORD:?}" "${LATCH_PG_WORKER_PASSWORD:?}"

# The passwords reach SQL as psql variables (:'name' quotes them as literals), never pasted
# into the statement text.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v api="$LATCH_PG_API_PASSWORD" -v relay="$LATCH_PG_RELAY_PASSWORD" \
    -v ops="$LATCH_PG_OPS_PASSWORD" -v worker="$LATCH_PG_WORKER_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', login, password)
FROM (VALUES ('latch_api', :'api'), ('latch_relay', :'relay'),
             ('latch_ops', :'ops'), ('latch_worker', :'worker')) AS l (login, password)
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = login)
\gexec
SQL
