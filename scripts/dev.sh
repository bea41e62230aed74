#!/usr/bin/env bash
# Local quick start without Docker: starts PostgreSQL, Redis and RabbitMQ if they are not
# running (installing them from the OS packages with apt-get first when they are missing, as
# .ci/run does), creates the database, and runs `communication all` (intake and a worker in one
# process) with a demo tenant `demo` whose `system` providers deliver to the console, and an
# API key for that tenant (kept in .dev-api-key) to sign in to the dashboard. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 1; done
  echo "service on port $1 did not come up" >&2; return 1
}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

# Installs Debian/Ubuntu packages (as root, or through sudo).
install_packages() {
  command -v apt-get >/dev/null || { echo "$* missing and no apt-get here: install them first" >&2; exit 1; }
  log "installing $* from the OS packages"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! port_open 5432; then
  if ! { command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1; }; then
    install_packages postgresql
    # A fresh cluster asks a password on 127.0.0.1; this local one trusts it, as the tests
    # and the commands below expect (user postgres, no password).
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      $sudo sed -i -E 's#^(host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1/32|::1/128)[[:space:]]+)[a-z0-9-]+#\1trust#' "$hba"
    done
  fi
  log "starting PostgreSQL"
  $sudo pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  wait_port 5432
fi
if ! port_open 6379; then
  command -v redis-server >/dev/null || install_packages redis-server
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_port 6379
fi
if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null || install_packages rabbitmq-server
  log "starting RabbitMQ"
  $sudo rabbitmq-server -detached
  wait_port 5672
  for _ in $(seq 1 60); do $sudo rabbitmqctl await_startup >/dev/null 2>&1 && break; sleep 1; done
fi
command -v psql >/dev/null || install_packages postgresql-client
command -v curl >/dev/null || install_packages curl

DB=${COMMUNICATION_DEV_DB:-communication}
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" >/dev/null

export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable}
KEY_FILE=.dev-encryption-secret
[ -f "$KEY_FILE" ] || cargo run --quiet -- keys generate > "$KEY_FILE"
export ENCRYPTION_SECRET=${ENCRYPTION_SECRET:-$(cat "$KEY_FILE")}
export COMMUNICATION_SERVICE_TOKEN=${COMMUNICATION_SERVICE_TOKEN:-dev-service-token-change-me}
export COMMUNICATION_LISTEN_ADDR=${COMMUNICATION_LISTEN_ADDR:-127.0.0.1:8080}
BASE="http://$COMMUNICATION_LISTEN_ADDR"

# The dashboard's files (dashboard/dist), which a debug build serves from disk. Built with the
# machine's Node.js and npm from the committed lockfile; without npm, /dashboard/ says how.
if command -v npm >/dev/null; then
  if [ ! -f dashboard/dist/index.html ] \
     || [ -n "$(find dashboard/src dashboard/index.html dashboard/package-lock.json -newer dashboard/dist/index.html 2>/dev/null | head -1)" ]; then
    echo "building the dashboard (npm ci && npm run build in dashboard/)"
    (cd dashboard && npm ci --no-audit --no-fund --silent && npm run build --silent >/dev/null)
  fi
else
  echo "npm not found: /dashboard/ will say how to build the dashboard (Node.js 20 and npm)"
fi

cargo build --quiet
./target/debug/communication all &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID' INT TERM
for _ in $(seq 1 60); do curl -fs "$BASE/healthz" >/dev/null && break; sleep 0.5; done
for channel in sms email; do
  curl -s -o /dev/null -X POST "$BASE/v1/providers" \
    -H "Authorization: Bearer $COMMUNICATION_SERVICE_TOKEN" -H "X-Tenant-Id: demo" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"console-$channel\",\"channel\":\"$channel\",\"kind\":\"system\",\"config\":{\"behavior\":\"deliver\"}}"
done

# The demo tenant's API key: reused while it still signs in, else a new one (shown once by
# `api-key create`, so it is kept in .dev-api-key).
API_KEY_FILE=.dev-api-key
if ! { [ -s "$API_KEY_FILE" ] \
       && curl -fs -o /dev/null "$BASE/v1/messages?limit=1" -H "Authorization: Bearer $(cat "$API_KEY_FILE")"; }; then
  ./target/debug/communication api-key create --tenant demo --name dev.sh > "$API_KEY_FILE" 2>/dev/null
fi

cat <<INFO

communication is up on $BASE
  tenant:        demo
  service token: $COMMUNICATION_SERVICE_TOKEN   (with X-Tenant-Id: demo)
  API key:       $(cat "$API_KEY_FILE")   (tenant demo; also in $API_KEY_FILE)
  dashboard:     $BASE/dashboard/   (sign in with the API key)

INFO
wait $PID
