#!/usr/bin/env bash
# Instructions per request (issue #6): a deterministic figure to compare two builds with, where
# requests/s on a shared machine moves by ±15 % from one minute to the next.
#
#   bench/instructions.sh s2                     # the release server, scenario s2
#   bench/instructions.sh s1 s2 s5               # several scenarios
#   BIN=/tmp/portcullis-before bench/instructions.sh s2   # another build of the server
#   DURATION=5 bench/instructions.sh s5
#   bench/instructions.sh p2 p4 fa              # proxied routes (the upstream nginx is started)
#
# Runs the server of a scenario of bench/run.sh (its config and plugins, from target/bench/servers,
# so run bench/run.sh once first) under valgrind's callgrind with instrumentation off, warms it up
# for 2 s, then counts the instructions the server executes while wrk loads it for DURATION
# seconds, and divides by the requests wrk completed. User-space instructions only: the kernel's
# share (about 5 µs a request here) is not in it. Installs valgrind (Debian) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-4}
CONNECTIONS=${CONNECTIONS:-10}
PORT=${PORT:-18350}
BIN=${BIN:-$ROOT/target/release/portcullis}
WORK=${WORK:-$ROOT/target/bench}
[ $# -gt 0 ] || { echo "usage: bench/instructions.sh SCENARIO... (s1 s2 s3 s5 s6)" >&2; exit 2; }
for tool in valgrind wrk; do
  if ! command -v "$tool" >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update && apt-get install -y "$tool"
    else
      echo "$tool is missing: sudo apt-get install -y $tool" >&2
      exit 1
    fi
  fi
done

UPSTREAM_PID=
trap '[ -n "$UPSTREAM_PID" ] && kill "$UPSTREAM_PID" 2>/dev/null' EXIT
for sc in "$@"; do
  src=$WORK/servers/$sc
  [ -f "$src/config.yaml" ] || { echo "no $src/config.yaml: run bench/run.sh first" >&2; exit 1; }
  # A proxied route's upstream (bench/run.sh's nginx answering `200 ok`), started when not up.
  up=$(sed -n 's|.*upstream: http://127.0.0.1:\([0-9]*\).*|\1|p' "$src/config.yaml")
  if [ -n "$up" ] && [ -z "$UPSTREAM_PID" ] && ! curl -s -o /dev/null "http://127.0.0.1:${up%%$'\n'*}/"; then
    nginx_dir=$WORK/nginx/up
    "$(command -v nginx || echo /usr/sbin/nginx)" -p "$nginx_dir" -e "$nginx_dir/error.log" \
      -c "$nginx_dir/nginx.conf" >/dev/null 2>&1 &
    UPSTREAM_PID=$!
    sleep 0.5
  fi
  dir=$(mktemp -d)
  cp -r "$src/plugins" "$dir/"
  sed "s/^  port: .*/  port: $PORT/" "$src/config.yaml" >"$dir/config.yaml"
  (cd "$dir" && PORTCULLIS_LOG=warn exec valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$dir/callgrind.out" "$BIN" serve --config config.yaml >server.log 2>&1) &
  pid=$!
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break
    sleep 0.2
  done
  args=()
  case $sc in
    s1) ;;
    s3) args=(-H "Authorization: Bearer $(cat "$WORK/mocks/token_jwks")") ;;
    s5 | s5d) args=(-- "$WORK/mocks/tokens.txt") ;;
    s6) args=(-H "Authorization: Bearer $(cat "$WORK/mocks/token_workos")") ;;
    p4) ;;
    fa) args=(-H "Authorization: Bearer $(cat "$WORK/mocks/token_static")" -H 'X-Original-URI: /api/x'
      -H 'X-Original-Method: GET' -H 'X-Forwarded-Host: app.test') ;;
    *) args=(-H "Authorization: Bearer $(cat "$WORK/mocks/token_static")") ;;
  esac
  case $sc in
    p2 | p4) url="http://127.0.0.1:$PORT/api/x" ;;
    fa) url="http://127.0.0.1:$PORT/forward-auth" ;;
    *) url="http://127.0.0.1:$PORT/health" ;;
  esac
  # s5's tokens are read from the start of the file by every wrk run: warmed up with them, the
  # server would answer the first part of the measured run from its cache. One other token warms
  # it up instead.
  warm=("${args[@]}")
  case $sc in
    s5 | s5d) warm=(-H "Authorization: Bearer $(cat "$WORK/mocks/token_static")") ;;
  esac
  wrk -t1 -c"$CONNECTIONS" -d2s -s bench/wrk.lua "$url" "${warm[@]}" >/dev/null
  callgrind_control -i on "$pid" >/dev/null 2>&1
  result=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s bench/wrk.lua "$url" "${args[@]}" | grep '^RESULT')
  callgrind_control -i off "$pid" >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  requests=$(echo "$result" | grep -o 'requests=[0-9]*' | cut -d= -f2)
  # The dump made while the load ran is the largest file. (sed and awk read to the end: with
  # pipefail, a reader that stops early would fail the pipeline.)
  out=$(ls -S "$dir"/callgrind.out* | sed -n 1p)
  total=$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ && !n {gsub(",", "", $1); print $1; n = 1}')
  echo "$sc $(basename "$BIN"): $((total / requests)) instructions per request ($requests requests, profile $out)"
done
