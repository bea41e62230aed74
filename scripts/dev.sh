#!/usr/bin/env bash
# Local quick start without Docker: starts PostgreSQL, Redis and RabbitMQ from the OS packages
# if they are not running, creates the database, and runs `communication all` (intake and a
# worker in one process) with a demo tenant `demo` whose `system` providers deliver to the
# console. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 1; done; return 1; }

port_open 5432 || { pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start; wait_port 5432; }
port_open 6379 || { redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no; wait_port 6379; }
port_open 5672 || { rabbitmq-server -detached; wait_port 5672; }

DB=${COMMUNICATION_DEV_DB:-communication}
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" >/dev/null

export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable}
KEY_FILE=.dev-encryption-secret
[ -f "$KEY_FILE" ] || cargo run --quiet -- keys generate > "$KEY_FILE"
export ENCRYPTION_SECRET=${ENCRYPTION_SECRET:-$(cat "$KEY_FILE")}
export COMMUNICATION_SERVICE_TOKEN=${COMMUNICATION_SERVICE_TOKEN:-dev-service-token-change-me}
export COMMUNICATION_LISTEN_ADDR=${COMMUNICATION_LISTEN_ADDR:-127.0.0.1:8080}

cargo build --quiet
./target/debug/communication all &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID' INT TERM
for _ in $(seq 1 60); do curl -fs "http://$COMMUNICATION_LISTEN_ADDR/healthz" >/dev/null && break; sleep 0.5; done
for channel in sms email; do
  curl -s -o /dev/null -X POST "http://$COMMUNICATION_LISTEN_ADDR/v1/providers" \
    -H "Authorization: Bearer $COMMUNICATION_SERVICE_TOKEN" -H "X-Tenant-Id: demo" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"console-$channel\",\"channel\":\"$channel\",\"kind\":\"system\",\"config\":{\"behavior\":\"deliver\"}}"
done
echo "communication is up on http://$COMMUNICATION_LISTEN_ADDR (tenant 'demo', token \$COMMUNICATION_SERVICE_TOKEN=$COMMUNICATION_SERVICE_TOKEN)"
wait $PID
