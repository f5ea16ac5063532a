#!/usr/bin/env bash
# A fleet on one machine: 3 replicas of the real server behind nginx (round-robin upstream), one
# shared config folder and one shared plugins folder, under load from wrk. While the load runs, a
# config edit and then a plugin swap are made the safe way (write a new file, rename it over), and
# each replica's `GET /api/admin/status` is polled until it serves the new config hash / plugin
# hash. Prints the convergence time of every replica and the request and failure counts, and
# exits 1 if any request failed or any replica took longer than 1 s to converge.
#
#   bench/fleet.sh                    # debug build (PROFILE=release for the release one)
#   DURATION=12 CONNECTIONS=16 bench/fleet.sh
#
# Everything listens on 127.0.0.1; wrk stops after DURATION seconds. Needs nginx and wrk
# (Debian's packages: apt-get install nginx wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-debug}
DURATION=${DURATION:-12}
CONNECTIONS=${CONNECTIONS:-16}
REPLICAS=3
LIMIT_MS=${LIMIT_MS:-1000}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v wrk >/dev/null && [ -x "$NGINX" ] || { echo "needs nginx and wrk: apt-get install nginx wrk" >&2; exit 1; }

if [ "$PROFILE" = release ]; then flag=--release; else flag=; fi
cargo build $flag -p portcullis -p portcullis-plugin-jwt >&2
bin=target/$PROFILE/portcullis
jwt=target/$PROFILE/libportcullis_plugin_jwt.so

work=$(mktemp -d /tmp/portcullis-fleet.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work"/{config,plugins,secrets,nginx/tmp}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The shared plugins folder holds the jwt plugin; the swap brings a byte-different build of it
# (the same library with bytes appended: a new SHA-256, a new library to map).
cp "$jwt" "$work/plugins/libportcullis_plugin_jwt.so"
cp "$jwt" "$work/jwt-next.so" && printf 'fleet-swap' >> "$work/jwt-next.so"
old_hash=$(sha256sum "$work/plugins/libportcullis_plugin_jwt.so" | cut -d' ' -f1)
new_hash=$(sha256sum "$work/jwt-next.so" | cut -d' ' -f1)
openssl rand -hex 32 > "$work/secrets/jwt-secret" 2>/dev/null || python3 -c 'import secrets; print(secrets.token_hex(32))' > "$work/secrets/jwt-secret"

# The shared config: no port (each replica takes its own from PORT), only pinned plugins, the
# secret as a file, the admin API open to admins only.
config() { # $1: the allow list, $2: the authorization cache
  cat <<YAML
version: 1
server:
  host: 127.0.0.1
plugins:
  dir: $work/plugins
  allow: [$1]
providers:
  - name: main
    plugin: jwt
    authorization_cache: $2
    config:
      secret: \${file:$work/secrets/jwt-secret}
      algorithms: [HS256]
auth:
  protected: ["/api/*"]
  rules:
    - path: /api/admin/*
      providers: [main]
      condition: "has(user.role) && user.role == 'admin'"
      allow: true
    - path: /api/admin/*
      allow: false
    - path: /api/*
      allow: true
YAML
}
replace() { cp "$1" "$2.tmp~" && mv -f "$2.tmp~" "$2"; }  # the safe way: a new file renamed over
config "$old_hash" 30s > "$work/config/portcullis.yaml"
token=$("$bin" token --config "$work/config/portcullis.yaml" --sub ops --claim role=admin --ttl 10m)

ports=()
for i in $(seq 1 $REPLICAS); do
  port=$(free_port); ports+=("$port")
  PORT=$port PORTCULLIS_STATE_DIR="$work/state$i" PORTCULLIS_LOG=warn \
    "$bin" serve --config "$work/config/portcullis.yaml" >"$work/replica$i.out" 2>"$work/replica$i.log" &
  pids+=($!)
done
for i in $(seq 1 $REPLICAS); do
  for _ in $(seq 1 300); do
    grep -q "listening on" "$work/replica$i.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "listening on" "$work/replica$i.out" || { echo "replica $i did not start:" >&2; cat "$work/replica$i.log" >&2; exit 1; }
done

# nginx: round-robin over the replicas; a failed attempt is NOT retried on another replica
# (proxy_next_upstream off), so every failure of a replica reaches the client and is counted.
nport=$(free_port)
servers=$(for p in "${ports[@]}"; do printf '        server 127.0.0.1:%s;\n' "$p"; done)
cat > "$work/nginx/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    log_format fleet '\$status \$upstream_addr';
    access_log $work/nginx/access.log fleet;
    client_body_temp_path $work/nginx/tmp;
    proxy_temp_path $work/nginx/tmp;
    fastcgi_temp_path $work/nginx/tmp;
    uwsgi_temp_path $work/nginx/tmp;
    scgi_temp_path $work/nginx/tmp;
    upstream portcullis {
$servers
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$nport;
        location / {
            proxy_pass http://portcullis;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream off;
        }
    }
}
NGINX
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
for _ in $(seq 1 100); do
  curl_ok=$(python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$nport/health').status==200 else 1)" 2>/dev/null && echo y || true)
  [ -n "$curl_ok" ] && break; sleep 0.1
done

# Polls every replica's status until `want` holds; prints each replica's time since `t0`.
converge() { # $1: label, $2: t0 (epoch seconds, float), $3: python predicate on the status `s`
  python3 - "$1" "$2" "$3" "$token" "${ports[@]}" <<'PY'
import json, sys, time, urllib.request
label, t0, pred, token, ports = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
done, worst = {}, 0.0
deadline = t0 + 10
while len(done) < len(ports) and time.time() < deadline:
    for i, p in enumerate(ports):
        if i in done:
            continue
        req = urllib.request.Request(f"http://127.0.0.1:{p}/api/admin/status",
                                     headers={"Authorization": f"Bearer {token}"})
        try:
            s = json.load(urllib.request.urlopen(req, timeout=2))
        except Exception:
            continue
        if eval(pred, {"s": s}):
            done[i] = (time.time() - t0) * 1000
    time.sleep(0.005)
cells = [f"replica {i+1}: {done[i]:.0f} ms" if i in done else f"replica {i+1}: NOT converged"
         for i in range(len(ports))]
print(f"{label}: " + ", ".join(cells))
import os
sys.exit(0 if len(done) == len(ports) and max(done.values()) <= float(os.environ['LIMIT']) else 1)
PY
}

echo "fleet: $REPLICAS replicas (${ports[*]}) behind nginx :$nport, $PROFILE build, wrk -t2 -c$CONNECTIONS -d${DURATION}s" >&2
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -H "Authorization: Bearer $token" \
  "http://127.0.0.1:$nport/api/auth/me" > "$work/wrk.txt" &
wrk_pid=$!
pids+=($wrk_pid)
sleep 3
status=0

# 1. A config edit: allow the next plugin's hash (before the file exists) and change a setting.
config "$old_hash, $new_hash" 10s > "$work/edit.yaml"
want=$(sha256sum "$work/edit.yaml" | cut -d' ' -f1)
t0=$(date +%s.%N); replace "$work/edit.yaml" "$work/config/portcullis.yaml"
LIMIT=$LIMIT_MS converge "config edit" "$t0" "s['config_hash'] == '$want'" || status=1
sleep 2

# 2. A plugin swap: the new build renamed over the old file.
t0=$(date +%s.%N); replace "$work/jwt-next.so" "$work/plugins/libportcullis_plugin_jwt.so"
LIMIT=$LIMIT_MS converge "plugin swap" "$t0" "any(f['sha256'] == '$new_hash' for f in s['files']) and not any(f['sha256'] == '$old_hash' for f in s['files'])" || status=1

wait "$wrk_pid" || status=1
total=$(wc -l < "$work/nginx/access.log")
failed=$(awk '$1 != 200' "$work/nginx/access.log" | wc -l)
echo "requests: $total through nginx, failed (not 200): $failed"
awk '{n[$2]++} END {for (u in n) printf "  %s: %d\n", u, n[u]}' "$work/nginx/access.log" | sort
grep -E "Requests/sec|Socket errors|Non-2xx|Latency" "$work/wrk.txt" | sed 's/^/  wrk: /'
if grep -q "Socket errors\|Non-2xx" "$work/wrk.txt"; then status=1; fi
[ "$failed" -eq 0 ] && [ "$total" -gt 0 ] || status=1
for i in $(seq 1 $REPLICAS); do
  grep -iE "error|reload rejected" "$work/replica$i.log" | head -3 | sed "s/^/  replica $i log: /" || true
done
[ $status -eq 0 ] && echo "fleet: converged, 0 failed" || echo "fleet: FAILED" >&2
exit $status
