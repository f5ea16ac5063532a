#!/usr/bin/env bash
# Proves that /swagger-ui renders with no internet: starts the server on the default config,
# loads the page in headless Chromium with every host but loopback unreachable, checks that the
# operations are in the rendered DOM, and saves a screenshot to docs/swagger-ui.png.
#
#   scripts/swagger-check.sh            # the release build (cargo build --release)
#   scripts/swagger-check.sh --debug    # the debug build `scripts/test.sh` made (what CI runs)
#
# Installs Debian's `chromium` when it is missing (about 80 s on the CI image).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
[ "${1:-}" = "--debug" ] && profile=debug

browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  apt-get update && apt-get install -y chromium
  browser=$(command -v chromium)
fi

if [ "$profile" = release ]; then
  cargo build --release
else
  cargo build
fi

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The default config, on 127.0.0.1 and a free port (PORT=0), state in a scratch folder.
PORT=0 PORTCULLIS_HOST=127.0.0.1 PORTCULLIS_STATE_DIR="$work/state" \
  PORTCULLIS_PLUGINS_DIR="../target/$profile" \
  "target/$profile/portcullis" serve --config config/portcullis.yaml --no-watch \
  >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
url=
for _ in $(seq 1 300); do
  url=$(sed -n 's/^portcullis listening on //p' "$work/stdout")
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/stderr" >&2; echo "the server did not start" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/stderr" >&2; echo "the server did not start" >&2; exit 1; }

# No internet for the page: names resolve to nothing, and anything else goes to a dead proxy.
# Loopback is reached directly.
flags=(--headless --disable-gpu --hide-scrollbars --no-first-run
       --user-data-dir="$work/profile"
       --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
       --proxy-server="http://127.0.0.1:9"
       --virtual-time-budget=15000 --window-size=1280,1400)
[ "$(id -u)" = 0 ] && flags+=(--no-sandbox)

"$browser" "${flags[@]}" --dump-dom "$url/swagger-ui" >"$work/dom.html" 2>"$work/chromium.log" || {
  cat "$work/chromium.log" >&2; echo "chromium failed" >&2; exit 1; }

ops=$(grep -o 'class="opblock opblock-[a-z]*' "$work/dom.html" | wc -l)
if [ "$ops" -lt 3 ] || ! grep -q '/api/auth/me' "$work/dom.html"; then
  echo "swagger-ui did not render its operations offline ($ops operations found)" >&2
  exit 1
fi

"$browser" "${flags[@]}" --screenshot="$PWD/docs/swagger-ui.png" "$url/swagger-ui" \
  >>"$work/chromium.log" 2>&1 || { cat "$work/chromium.log" >&2; echo "screenshot failed" >&2; exit 1; }
[ -s docs/swagger-ui.png ] || { echo "no screenshot written" >&2; exit 1; }
echo "swagger-ui renders offline: $ops operations, /api/auth/me among them; screenshot in docs/swagger-ui.png"
