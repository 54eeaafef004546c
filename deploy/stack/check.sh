#!/usr/bin/env bash
# Against a running `make stack`: HTTPS on Caddy (its local CA, the HSTS header, HTTP
# redirected, /metrics kept private), a whole loan through https:// (`deni demo`: sign-ups,
# an STK top-up, a loan approved and paid out by B2C, an STK repayment; the sandbox calls back
# through Caddy), then the worker killed: DeniWorkerDown must fire in Alertmanager within the
# rule's time, and resolve once the worker is started again. Prints how long each step took.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STACK_DIR=${STACK_DIR:-$ROOT/var/stack}
BIN=${STACK_BIN:-$ROOT/.venv/bin}
STACK="$ROOT/deploy/stack/stack.sh"
# The rule (deploy/stack/rules.yml): `for: 30s`; then up to one scrape and one evaluation
# (5 s each, deploy/stack/prometheus.yml) to see it, and Prometheus's push to Alertmanager.
RULE_FOR_S=30
FIRE_WITHIN_S=$((RULE_FOR_S + 5 + 5 + 15))
RESOLVE_WITHIN_S=${RESOLVE_WITHIN_S:-60}

say() { echo "check: $*"; }
fail() {
  echo "check: FAILED: $*" >&2
  exit 1
}
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
# Requests an API process answered, Caddy's health checks left out.
access_lines() { grep '"deni.access"' "$STACK_DIR/log/$1.log" | grep -vc '"route": "/health"' || true; }

[ -s "$STACK_DIR/stack.env" ] || fail "no stack in $STACK_DIR: run make stack first"
# shellcheck disable=SC1091
. "$STACK_DIR/stack.env"
"$STACK" status >/dev/null || {
  "$STACK" status || true
  fail "the stack is not fully up (make stack)"
}
CA=$STACK_CADDY_ROOT
URL=$STACK_PUBLIC_URL
AM="http://127.0.0.1:$STACK_ALERTMANAGER_PORT"
PROM="http://127.0.0.1:$STACK_PROMETHEUS_PORT"

# 1. The edge.
headers=$(curl -fsS --cacert "$CA" -D - -o /dev/null "$URL/health") || fail "GET $URL/health"
grep -qi '^strict-transport-security: max-age=' <<<"$headers" || fail "no HSTS header"
say "HTTPS on Caddy with its local CA: $URL/health answers 200 with HSTS"
redirect=$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "http://localhost:$STACK_HTTP_PORT/app/")
[ "$redirect" = "308 $URL/app/" ] || fail "HTTP did not redirect to HTTPS: $redirect"
say "HTTP redirects: $redirect"
code=$(curl -sS --cacert "$CA" -o /dev/null -w '%{http_code}' "$URL/metrics")
[ "$code" = 404 ] || fail "/metrics answers $code through Caddy"
say "/metrics is not served publicly (404 through Caddy)"

# 2. A whole loan through https://, with the stack's settings (the demo reads the fake SMS
# outbox in the database), trusting Caddy's CA and nothing else.
before_1=$(access_lines api-1)
before_2=$(access_lines api-2)
started=$(now)
(cd "$STACK_DIR" && env -i PATH="$PATH" HOME="$STACK_DIR" LANG=C.UTF-8 SSL_CERT_FILE="$CA" \
  bash -c 'set -a; . ./deni.env; . ./secrets.env; set +a; exec "$@"' check \
  "$BIN/deni" demo --url "$URL") || fail "the loan through $URL did not complete"
say "a whole loan through $URL took $(since "$started")s"
served_1=$(($(access_lines api-1) - before_1))
served_2=$(($(access_lines api-2) - before_2))
say "requests served meanwhile: api-1 $served_1, api-2 $served_2 (health checks left out)"
[ "$served_1" -gt 0 ] && [ "$served_2" -gt 0 ] || fail "Caddy did not use both API processes"

# 3. The worker dies; the alert must fire, then resolve once it is back.
alert_state() {
  curl -fsS "$AM/api/v2/alerts?filter=alertname%3D%22DeniWorkerDown%22" | python3 -c '
import json, sys
states = [a["status"]["state"] for a in json.load(sys.stdin)]
print("active" if "active" in states else (states[0] if states else "none"))'
}
worker_up() {
  curl -fsS "$PROM/api/v1/query" --data-urlencode 'query=up{job="deni-worker"}' | python3 -c '
import json, sys
result = json.load(sys.stdin)["data"]["result"]
print(result[0]["value"][1] if result else "none")'
}
[ "$(worker_up)" = 1 ] || fail "Prometheus does not see the worker up before the test"
[ "$(alert_state)" = none ] || fail "DeniWorkerDown is already in Alertmanager"
pid=$(cat "$STACK_DIR/run/worker.pid")
kill -KILL "$pid"
killed=$(now)
say "worker (pid $pid) killed with SIGKILL"
deadline=$((SECONDS + FIRE_WITHIN_S))
seen_down=""
until [ "$(alert_state)" = active ]; do
  if [ -z "$seen_down" ] && [ "$(worker_up)" = 0 ]; then
    seen_down=1
    say "  Prometheus: up{job=\"deni-worker\"} == 0 after $(since "$killed")s"
  fi
  [ "$SECONDS" -lt "$deadline" ] || fail "DeniWorkerDown did not fire within ${FIRE_WITHIN_S}s"
  sleep 1
done
say "DeniWorkerDown active in Alertmanager $(since "$killed")s after the kill (rule: for ${RULE_FOR_S}s; bound ${FIRE_WITHIN_S}s)"

"$STACK" up >/dev/null
restarted=$(now)
say "worker started again (pid $(cat "$STACK_DIR/run/worker.pid"))"
deadline=$((SECONDS + RESOLVE_WITHIN_S))
until [ "$(alert_state)" = none ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "DeniWorkerDown did not resolve within ${RESOLVE_WITHIN_S}s"
  sleep 1
done
say "DeniWorkerDown resolved (gone from Alertmanager's active alerts) $(since "$restarted")s after the restart"
say "all good"
