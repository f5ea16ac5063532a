#!/usr/bin/env bash
# Load benchmark (issue #6): what authentication through a run-time-loaded plugin costs per request.
#
#   bench/run.sh                      # all scenarios, side by side, ROUNDS rounds
#   DURATION=5 ROUNDS=3 CONNECTIONS=10 TOKENS=20000 bench/run.sh
#   SKIP_BUILD=1 bench/run.sh         # reuse the release binaries already built
#   SCENARIOS="s1 s2 s4" bench/run.sh # a subset (of s1..s9, s5d, c50, rss)
#   DURATION=1 PASSES=4 bench/run.sh  # each round goes over the scenarios 4 times, 1 s each
#
# Installs wrk (Debian) when missing, builds the release binaries, starts a local JWKS and a local
# WorkOS (bench helper `portcullis-bench`, on 127.0.0.1), then starts one server per scenario, all
# pinned to CPU 1, and loads them in turn with wrk (one thread, pinned to CPU 0), DURATION seconds
# each, ROUNDS times, the order rotating every round:
#   s1 public route              GET /health, public (the baseline)
#   s2 jwt, RS256 static key     GET /health made protected, the same token every time
#   s3 jwt, JWKS URL             as s2, keys from the local JWKS
#   s4 s2 without the plugin     the same verification compiled into the host (feature bench-direct)
#   s5 a new token every request as s2, cycling through TOKENS distinct tokens
#   s5d s5 without the plugin    s5 on the s4 build: the price of the plugin ABI when nothing is cached
#   s6 workos                    the workos plugin against the local WorkOS (JWKS + memberships)
#   s7 s2 while reloading        the config file is rewritten every 200 ms
#   s8 s2 + one middleware       s2 with a no-op request middleware plugin on the path
#                                (header-policy with an empty config: it lets everything through)
#   s9 embedded, with auth       examples/embedded-app (Portcullis as a library in a Poem program)
#                                with s2's provider: GET /api/notes and s2's token
#   s9p embedded, no auth        the same server: GET /api/public/notes, public in the same YAML,
#                                no token (the same kind of handler: a list of notes, empty here)
#   c50 s2's server under 50 connections (its p99)
# and, in front of an upstream (nginx answering `200 ok`, pinned with wrk: the same on every side):
#   up  the upstream alone         GET /api/x straight to it
#   p1  nginx proxy_pass, no auth  nginx (one worker, keep-alive to the upstream) in front of it:
#                                  the baseline a proxied route is held to
#   p2  Portcullis route, JWT      a `routes:` entry with s2's provider and token, to the upstream
#   p3  nginx + /forward-auth      nginx `auth_request` to Portcullis's /forward-auth, then
#                                  proxy_pass (two hops; nginx and Portcullis share the server's core)
#   p4  Portcullis route, public   p2's route with requires_auth: false (no token)
#   fa  /forward-auth alone        p3's Portcullis asked directly, as nginx asks it (compare with s2)
#   s0  nginx `return 200`         nginx (one worker) answering on the server's core with no work at all:
#                                  the fastest answer any server gives here, so the ceiling of s5
#                                  (a server doing nothing but the verify: 1 / (1/s0 + 1/verify);
#                                  the report gives it, and the same with s1 for this server)
# then the idle RSS of a server with every shipped plugin loaded. Right after each s5 slice,
# `openssl speed rsa2048` gives the machine's raw verify rate on the server's core. Ratios are
# computed within a round and the median over rounds is printed. Loopback only; everything it starts it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
PASSES=${PASSES:-1}
CONNECTIONS=${CONNECTIONS:-10}
TOKENS=${TOKENS:-20000}
WORK=${WORK:-$ROOT/target/bench}
BASE_PORT=${BASE_PORT:-18100}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
REL=$ROOT/target/release
SCENARIOS=${SCENARIOS:-s0 s1 s2 s3 s4 s5 s5d s6 s7 s8 s9 c50 up p1 p2 p3 p4 fa rss}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# The proxy scenarios need nginx (Debian's package): the upstream and the baselines.
NEEDS=(wrk)
for sc in s0 up p1 p2 p3 p4 fa; do want "$sc" && NEEDS+=(nginx) && break; done
for tool in "${NEEDS[@]}"; do
  if command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ]; then continue; fi
  if [ "$(id -u)" = 0 ]; then
    apt-get update && apt-get install -y "$tool"
  else
    echo "$tool is missing: sudo apt-get install -y $tool" >&2
    exit 1
  fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release
  cargo build --release -p portcullis-tests --bin portcullis-bench
  cargo build --release -p portcullis --features bench-direct --bin portcullis-direct
  cargo build --release -p embedded-app
fi

mkdir -p "$WORK"
RESULTS=$WORK/results.tsv
: >"$RESULTS"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# --- local identity-provider servers ------------------------------------------------------------
MOCKS=$WORK/mocks
mkdir -p "$MOCKS"
rm -f "$MOCKS/ready"
taskset -c "$LOAD_CPU" "$REL/portcullis-bench" mocks "$MOCKS" "$TOKENS" >"$WORK/mocks.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 1200); do [ -f "$MOCKS/ready" ] && break; sleep 0.1; done
[ -f "$MOCKS/ready" ] || { echo "bench helper did not start:" >&2; cat "$WORK/mocks.log" >&2; exit 1; }
PEM=$(sed 's/^/          /' "$MOCKS/public.pem")
JWKS_URL=$(cat "$MOCKS/jwks_url")
WORKOS_BASE=$(cat "$MOCKS/workos_base")
TOKEN=$(cat "$MOCKS/token_static")
TOKEN_JWKS=$(cat "$MOCKS/token_jwks")
TOKEN_WORKOS=$(cat "$MOCKS/token_workos")
ISSUER=https://bench.portcullis.test

# --- configs ------------------------------------------------------------------------------------
# $1 port, $2 providers block, $3 "public" to leave /health public ("embedded": /health and the
# embedded app's /api/public/*), $4 extra comment line
config() {
  local auth
  if [ "$3" = public ]; then
    auth='  protected: ["/api/*"]
  public: ["/health"]'
  elif [ "$3" = embedded ]; then
    auth='  protected: ["/api/*"]
  public: ["/health", "/api/public/*"]'
  else
    auth='  protected: ["/api/*", "/health"]
  public: []'
  fi
  cat <<EOF
# ${4:-bench}
version: 1
server:
  host: 127.0.0.1
  port: $1
  build: { api_req_logs: false, swagger_ui: false, openapi_docs: false }
plugins:
  dir: plugins
providers:
$2
auth:
$auth
  rules:
    - path: /api/admin/*
      condition: "user.role == 'admin'"
      allow: true
    - path: /api/admin/*
      allow: false
    - path: /health
      allow: true
    - path: /api/*
      allow: true
EOF
}
JWT_STATIC="  - name: jwt
    plugin: jwt
    config:
      algorithms: [RS256]
      issuer: [\"$ISSUER\"]
      audience: [api]
      public_keys:
        - |
$PEM"
JWT_JWKS="  - name: jwks
    plugin: jwt
    dangerous: { allow_http: true }
    config:
      algorithms: [RS256]
      issuer: [\"$ISSUER\"]
      audience: [api]
      jwks_url: \"$JWKS_URL\""
JWT_MIDDLEWARE="$JWT_STATIC
middleware:
  - name: noop
    plugin: header-policy
    path: /health
    config: {}"
WORKOS="  - name: workos
    plugin: workos
    dangerous: { allow_http: true }
    config:
      api_key: sk_test_workos_0123456789abcdef
      client_id: client_01HXYZ123456789ABCDEFGHIJ
      api_base: \"$WORKOS_BASE\""

# --- servers ------------------------------------------------------------------------------------
SERVER_PID=
# $1 name, $2 port, $3 binary, $4 config text, $5.. plugin crate names
start_server() {
  local name=$1 port=$2 bin=$3 cfg=$4
  shift 4
  local dir=$WORK/servers/$name
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" || true)" != 000 ]; then
    echo "port $port is already in use: set BASE_PORT" >&2
    exit 1
  fi
  rm -rf "$dir" && mkdir -p "$dir/plugins"
  for p in "$@"; do cp "$REL/lib$p.so" "$dir/plugins/"; done
  printf '%s\n' "$cfg" >"$dir/config.yaml"
  # The embedded example takes the config as the server does, without a subcommand.
  local sub=(serve)
  [ "$(basename "$bin")" = embedded-app ] && sub=()
  (cd "$dir" && PORTCULLIS_LOG=warn exec taskset -c "$SERVER_CPU" "$bin" "${sub[@]}" --config config.yaml >server.log 2>&1) &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 1 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" || true)
    [ "$code" != 000 ] && return 0
    sleep 0.1
  done
  echo "server $name did not start:" >&2
  cat "$dir/server.log" >&2
  exit 1
}
stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}
expect_200() { # $1 url, $2 token
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" "$1")
  [ "$code" = 200 ] || { echo "expected 200 from $1, got $code" >&2; exit 1; }
}
# $1 round, $2 scenario, $3 url, $4 connections, rest: wrk arguments
load() {
  local round=$1 sc=$2 url=$3 conns=$4
  shift 4
  local out
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 5s -s bench/wrk.lua "$url" "$@" | grep '^RESULT')
  local rss
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
  echo -e "$round\t$sc\t$out rss_kib=$rss" >>"$RESULTS"
  printf 'round %s %-4s %s rss=%s KiB\n' "$round" "$sc" "${out#RESULT }" "$rss"
}

URL=/health
# Every load scenario gets its own server, all started up front (an idle server costs nothing),
# then the scenarios take turns: in each round each one is loaded for DURATION seconds, and the
# order rotates from round to round. A ratio compares slices of one round, seconds apart, so a slow
# spell on the shared machine weighs on both sides of it rather than on one scenario.
declare -A PORT_OF SPID_OF
# $1 scenario, $2 port offset, $3 binary, $4 providers block, $5 public|protected, $6 token to check
# ("" for none), then plugin crate names.
boot() {
  local sc=$1 port=$((BASE_PORT + $2)) bin=$3 providers=$4 mode=$5 token=$6
  shift 6
  start_server "$sc" "$port" "$bin" "$(config "$port" "$providers" "$mode")" "$@"
  if [ -n "$token" ]; then expect_200 "http://127.0.0.1:$port$URL" "$token"; fi
  PORT_OF[$sc]=$port
  SPID_OF[$sc]=$SERVER_PID
}
ORDER=()
if want s1; then boot s1 1 "$REL/portcullis" "$JWT_STATIC" public "" portcullis_plugin_jwt; ORDER+=(s1); fi
if want s2 || want c50; then boot s2 2 "$REL/portcullis" "$JWT_STATIC" protected "$TOKEN" portcullis_plugin_jwt; fi
want s2 && ORDER+=(s2)
if want s3; then boot s3 3 "$REL/portcullis" "$JWT_JWKS" protected "$TOKEN_JWKS" portcullis_plugin_jwt; ORDER+=(s3); fi
if want s4; then boot s4 4 "$REL/portcullis-direct" "$JWT_STATIC" protected "$TOKEN" portcullis_plugin_jwt; ORDER+=(s4); fi
if want s5; then boot s5 5 "$REL/portcullis" "$JWT_STATIC" protected "" portcullis_plugin_jwt; ORDER+=(s5); fi
if want s5d; then boot s5d 8 "$REL/portcullis-direct" "$JWT_STATIC" protected "" portcullis_plugin_jwt; ORDER+=(s5d); fi
if want s6; then boot s6 6 "$REL/portcullis" "$WORKOS" protected "$TOKEN_WORKOS" portcullis_plugin_workos; ORDER+=(s6); fi
if want s7; then boot s7 7 "$REL/portcullis" "$JWT_STATIC" protected "$TOKEN" portcullis_plugin_jwt; ORDER+=(s7); fi
if want s8; then boot s8 10 "$REL/portcullis" "$JWT_MIDDLEWARE" protected "$TOKEN" portcullis_plugin_jwt portcullis_plugin_header_policy; ORDER+=(s8); fi
if want s9; then
  # One server for both: the same process, routes and handlers; only the YAML's verdict differs.
  boot s9 11 "$REL/embedded-app" "$JWT_STATIC" embedded "" portcullis_plugin_jwt
  expect_200 "http://127.0.0.1:${PORT_OF[s9]}/api/notes" "$TOKEN"
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT_OF[s9]}/api/public/notes")
  [ "$code" = 200 ] || { echo "expected 200 from /api/public/notes without a token, got $code" >&2; exit 1; }
  PORT_OF[s9p]=${PORT_OF[s9]}
  SPID_OF[s9p]=${SPID_OF[s9]}
  ORDER+=(s9 s9p)
fi
want c50 && ORDER+=(c50)

# --- proxy scenarios ----------------------------------------------------------------------------
# $1 name, $2 port, $3 cpu, $4 the `http` block's servers: nginx with one worker on one core.
start_nginx() {
  local name=$1 port=$2 cpu=$3 servers=$4
  local dir=$WORK/nginx/$name
  rm -rf "$dir" && mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<NGINX_CONF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    fastcgi_temp_path $dir/tmp;
    uwsgi_temp_path $dir/tmp;
    scgi_temp_path $dir/tmp;
$servers
}
NGINX_CONF
  taskset -c "$cpu" "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >/dev/null 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)" != 000 ] && return 0
    sleep 0.1
  done
  echo "nginx $name did not start:" >&2
  cat "$dir/error.log" >&2
  exit 1
}
# A keep-alive pool to a backend (without one, nginx opens a connection per request).
pool() { # $1 name, $2 port
  echo "    upstream $1 { server 127.0.0.1:$2; keepalive 64; }"
}
PROXY_TO_APP='proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://app;'
if want up || want p1 || want p2 || want p3 || want p4 || want fa; then
  UP=$((BASE_PORT + 20))
  start_nginx up "$UP" "$LOAD_CPU" "    server { listen 127.0.0.1:$UP; location / { return 200 \"ok\\n\"; } }"
  PORT_OF[up]=$UP
  SPID_OF[up]=$SERVER_PID
  want up && ORDER+=(up)
  ROUTE="routes:
  - path: /api/*
    upstream: http://127.0.0.1:$UP"
fi
if want s0; then
  P0=$((BASE_PORT + 26))
  start_nginx s0 "$P0" "$SERVER_CPU" "    server { listen 127.0.0.1:$P0; location / { return 200 \"ok\\n\"; } }"
  PORT_OF[s0]=$P0
  SPID_OF[s0]=$SERVER_PID
  ORDER+=(s0)
fi
if want p1; then
  P1=$((BASE_PORT + 21))
  start_nginx p1 "$P1" "$SERVER_CPU" "$(pool app "$UP")
    server { listen 127.0.0.1:$P1; location / { $PROXY_TO_APP } }"
  PORT_OF[p1]=$P1
  SPID_OF[p1]=$SERVER_PID
  ORDER+=(p1)
fi
if want p2; then
  port=$((BASE_PORT + 22))
  start_server p2 "$port" "$REL/portcullis" "$(config "$port" "$JWT_STATIC" public)
$ROUTE" portcullis_plugin_jwt
  expect_200 "http://127.0.0.1:$port/api/x" "$TOKEN"
  PORT_OF[p2]=$port
  SPID_OF[p2]=$SERVER_PID
  ORDER+=(p2)
fi
if want p4; then
  port=$((BASE_PORT + 24))
  start_server p4 "$port" "$REL/portcullis" "$(config "$port" "$JWT_STATIC" public)
$ROUTE
    requires_auth: false" portcullis_plugin_jwt
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/x")
  [ "$code" = 200 ] || { echo "expected 200 from the public route, got $code" >&2; exit 1; }
  PORT_OF[p4]=$port
  SPID_OF[p4]=$SERVER_PID
  ORDER+=(p4)
fi
if want p3 || want fa; then
  port=$((BASE_PORT + 23))
  start_server fa "$port" "$REL/portcullis" "$(config "$port" "$JWT_STATIC" public)
gateway:
  forward_auth: nginx" portcullis_plugin_jwt
  PORT_OF[fa]=$port
  SPID_OF[fa]=$SERVER_PID
  want fa && ORDER+=(fa)
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    -H 'X-Original-URI: /api/x' -H 'X-Original-Method: GET' -H 'X-Forwarded-Host: app.test' "http://127.0.0.1:$port/forward-auth")
  [ "$code" = 200 ] || { echo "expected 200 from /forward-auth, got $code" >&2; exit 1; }
  if want p3; then
    P3=$((BASE_PORT + 25))
    # The locations `docs/config.md` gives for `forward_auth: nginx`, with keep-alive pools.
    start_nginx p3 "$P3" "$SERVER_CPU" "$(pool app "$UP")
$(pool portcullis "$port")
    server {
        listen 127.0.0.1:$P3;
        location / {
            auth_request /_portcullis;
            auth_request_set \$portcullis_user \$upstream_http_x_user_id;
            proxy_set_header X-User-Id \$portcullis_user;
            $PROXY_TO_APP
        }
        location = /_portcullis {
            internal;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_pass http://portcullis/forward-auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header X-Original-Method \$request_method;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }"
    expect_200 "http://127.0.0.1:$P3/api/x" "$TOKEN"
    PORT_OF[p3]=$P3
    SPID_OF[p3]=$SERVER_PID
    ORDER+=(p3)
  fi
fi

# The machine's raw RSA-2048 verify rate on the server's core (OpenSSL 3 prints verify/s last).
verify_rate() {
  taskset -c "$SERVER_CPU" openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {print $NF}'
}

# $1 round, $2 scenario, $3 pass: one slice of load.
slice() {
  local r=$1 sc=$2 pass=$3
  local url="http://127.0.0.1:${PORT_OF[$sc]:-${PORT_OF[s2]}}$URL"
  SERVER_PID=${SPID_OF[$sc]:-${SPID_OF[s2]}}
  case $sc in
    s1) load "$r" s1 "$url" "$CONNECTIONS" ;;
    s2 | s4 | s8) load "$r" "$sc" "$url" "$CONNECTIONS" -H "Authorization: Bearer $TOKEN" ;;
    s3) load "$r" s3 "$url" "$CONNECTIONS" -H "Authorization: Bearer $TOKEN_JWKS" ;;
    s5)
      load "$r" s5 "$url" "$CONNECTIONS" -- "$MOCKS/tokens.txt"
      # The machine's raw verify rate right after (once a round), on the server's core: a slow
      # spell weighs on both sides of the ratio, as for the other scenarios.
      [ "$pass" = "$PASSES" ] || return 0
      local v
      v=$(verify_rate)
      echo -e "$r\topenssl\tverify_per_s=$v" >>"$RESULTS"
      echo "round $r openssl speed rsa2048: $v verify/s (one core)"
      ;;
    s5d) load "$r" s5d "$url" "$CONNECTIONS" -- "$MOCKS/tokens.txt" ;;
    s6) load "$r" s6 "$url" "$CONNECTIONS" -H "Authorization: Bearer $TOKEN_WORKOS" ;;
    s9) load "$r" s9 "http://127.0.0.1:${PORT_OF[s9]}/api/notes" "$CONNECTIONS" -H "Authorization: Bearer $TOKEN" ;;
    s9p) load "$r" s9p "http://127.0.0.1:${PORT_OF[s9p]}/api/public/notes" "$CONNECTIONS" ;;
    s0) load "$r" s0 "http://127.0.0.1:${PORT_OF[s0]}/health" "$CONNECTIONS" ;;
    up | p1 | p4) load "$r" "$sc" "http://127.0.0.1:${PORT_OF[$sc]}/api/x" "$CONNECTIONS" ;;
    p2 | p3) load "$r" "$sc" "http://127.0.0.1:${PORT_OF[$sc]}/api/x" "$CONNECTIONS" -H "Authorization: Bearer $TOKEN" ;;
    fa) load "$r" fa "http://127.0.0.1:${PORT_OF[fa]}/forward-auth" "$CONNECTIONS" -H "Authorization: Bearer $TOKEN" \
      -H 'X-Original-URI: /api/x' -H 'X-Original-Method: GET' -H 'X-Forwarded-Host: app.test' ;;
    # s2's server under 50 connections, for its p99.
    c50) load "$r" c50 "$url" 50 -H "Authorization: Bearer $TOKEN" ;;
    s7)
      # As s2 while the config file is rewritten every 200 ms (each write is a new config).
      local p7=${PORT_OF[s7]} dir=$WORK/servers/s7 gen0 gen1 writer
      gen0=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$p7/api/admin/status" | grep -o '"generation":[0-9]*' | cut -d: -f2)
      (
        # Five writes a second for the slice's length (bash's SECONDS is too coarse for 1 s).
        k=0
        for _ in $(seq 1 $((DURATION * 5))); do
          k=$((k + 1))
          config "$p7" "$JWT_STATIC" protected "reload $r.$pass.$k" >"$dir/config.tmp"
          mv "$dir/config.tmp" "$dir/config.yaml"
          sleep 0.2
        done
        echo $k >"$dir/writes"
      ) &
      writer=$!
      load "$r" s7 "$url" "$CONNECTIONS" -H "Authorization: Bearer $TOKEN"
      wait $writer
      sleep 0.5
      gen1=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$p7/api/admin/status" | grep -o '"generation":[0-9]*' | cut -d: -f2)
      echo -e "$r\ts7-reloads\twrites=$(cat "$dir/writes") applied=$((gen1 - gen0))" >>"$RESULTS"
      echo "round $r s7   config writes $(cat "$dir/writes"), reloads applied $((gen1 - gen0))"
      ;;
  esac
}

# With PASSES > 1 a round goes over the scenarios that many times: each scenario's share of the
# round is spread over all of it, and a slow spell of a few seconds weighs on every scenario
# rather than on the one or two it falls on. The report adds a round's slices up per scenario.
n=${#ORDER[@]}
for r in $(seq 1 "$ROUNDS"); do
  for pass in $(seq 1 "$PASSES"); do
    for i in $(seq 0 $((n - 1))); do
      slice "$r" "${ORDER[$(((i + r - 1) % n))]}" "$pass"
    done
  done
done
for sc in "${!SPID_OF[@]}"; do kill "${SPID_OF[$sc]}" 2>/dev/null || true; done
for sc in "${!SPID_OF[@]}"; do wait "${SPID_OF[$sc]}" 2>/dev/null || true; done

# Idle RSS with every shipped plugin loaded and three providers built.
if want rss; then
ALL="$JWT_STATIC
$JWT_JWKS
$WORKOS"
start_server rss $((BASE_PORT + 9)) "$REL/portcullis" "$(config $((BASE_PORT + 9)) "$ALL" protected)" \
  portcullis_plugin_jwt portcullis_plugin_workos portcullis_plugin_clerk portcullis_plugin_auth0 \
  portcullis_plugin_firebase portcullis_plugin_oidc
expect_200 "http://127.0.0.1:$((BASE_PORT + 9))$URL" "$TOKEN"
expect_200 "http://127.0.0.1:$((BASE_PORT + 9))$URL" "$TOKEN_JWKS"
expect_200 "http://127.0.0.1:$((BASE_PORT + 9))$URL" "$TOKEN_WORKOS"
sleep 2
RSS=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
echo -e "-\trss\tidle_rss_kib=$RSS" >>"$RESULTS"
echo "idle RSS, 6 plugins loaded, 3 providers: $RSS KiB"
stop_server
fi


python3 bench/report.py "$RESULTS"
