#!/usr/bin/env bash
# The API keeps its own contract: Schemathesis, a property-based tester, generates requests from
# /openapi.json (valid and invalid bodies, every declared answer, undeclared methods, missing
# auth) and checks every answer against the spec with all its checks on. Zero failures passes.
#
#   scripts/api-contract.sh            # the release build (cargo build --release)
#   scripts/api-contract.sh --debug    # the debug build `scripts/test.sh` made (what CI runs)
#
# The server runs on 127.0.0.1 and a free port, with a jwt provider (a random secret made for
# the run), the query and cookie token sources on, and the admin API open to `role: admin`; the
# tester sends an admin token minted by `portcullis token`. Forward auth stays off (its operation
# answers the documented 404). Schemathesis is installed from PyPI
# into target/api-contract-venv (pinned below). Extra arguments after the profile go to `st run`
# (e.g. `--max-examples 20`, `--seed 1`).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5

profile=release
if [ "${1:-}" = "--debug" ]; then
  profile=debug
  shift
fi

venv=target/api-contract-venv
if ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ "$profile" = release ]; then
  cargo build --release -p portcullis -p portcullis-plugin-jwt
else
  cargo build -p portcullis -p portcullis-plugin-jwt
fi
bin="target/$profile/portcullis"

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/plugins"
cp "target/$profile/libportcullis_plugin_jwt.so" "$work/plugins/"
cat >"$work/portcullis.yaml" <<'YAML'
version: 1
server:
  host: 127.0.0.1
  port: 0
  build: { swagger_ui: true, openapi_docs: true, api_req_logs: false }
plugins:
  dir: plugins
providers:
  - name: contract
    plugin: jwt
    config:
      secret: ${CONTRACT_SECRET}
      algorithms: [HS256]
auth:
  protected: ["/api/*"]
  public: ["/health"]
  token: { query: access_token, cookie: session }
  rules:
    - path: /api/admin/*
      condition: "user.role == 'admin'"
      allow: true
    - path: /api/admin/*
      allow: false
    - path: /api/*
      allow: true
YAML

CONTRACT_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export CONTRACT_SECRET
token=$("$bin" token --config "$work/portcullis.yaml" --sub api-contract --claim role=admin --ttl 2h)

PORTCULLIS_STATE_DIR="$work/state" "$bin" serve --config "$work/portcullis.yaml" --no-watch \
  >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
url=
for _ in $(seq 1 300); do
  url=$(sed -n 's/^portcullis listening on //p' "$work/stdout")
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  cat "$work/stderr" >&2
  echo "the server did not start" >&2
  exit 1
fi

status=0
# Run in the scratch folder: Schemathesis keeps its replay files in `.schemathesis/` there.
st="$PWD/$venv/bin/st"
(cd "$work" && "$st" run "$url/openapi.json" \
  --checks all \
  --header "Authorization: Bearer $token" \
  --workers 2 \
  --suppress-health-check too_slow \
  "$@") || status=$?

kill -0 "$server_pid" 2>/dev/null || { cat "$work/stderr" >&2; echo "the server died during the run" >&2; exit 1; }
if [ "$status" -ne 0 ]; then
  echo "api contract: Schemathesis found failures (exit $status); the server's log follows" >&2
  tail -n 50 "$work/stderr" >&2
  exit "$status"
fi
echo "api contract: no failures"
