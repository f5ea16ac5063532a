#!/usr/bin/env bash
# Validates every Kubernetes manifest in deploy/k8s (and its components) against the API schemas,
# offline: kubernetes-validate (PyPI) ships the OpenAPI schemas of each Kubernetes release in the
# package, so nothing is downloaded at validation time. Strict: an unknown field is an error.
# Checked against the oldest and the newest release we support (KUBE_VERSIONS to change).
#
#   scripts/validate-manifests.sh
#
# Kinds without a bundled schema (Kustomization, Component, the Prometheus Operator's
# ServiceMonitor) are listed and checked for content by tests/tests/operations.rs; any other kind
# without a schema is an error.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBE_VERSIONS=${KUBE_VERSIONS:-"1.29.0 1.37.0"}
KV_VERSION=1.37.0
no_schema_ok='^(Kustomization|Component|ServiceMonitor)$'

kv=$(command -v kubernetes-validate || true)
if [ -z "$kv" ]; then
  venv=${PORTCULLIS_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis}/kubernetes-validate-$KV_VERSION
  if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv" 2>/dev/null || {
      apt-get update && apt-get install -y --no-install-recommends python3-venv
      python3 -m venv "$venv"
    }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
  fi
  kv=$venv/bin/kubernetes-validate
fi

mapfile -t files < <(find deploy/k8s -name '*.yaml' | sort)
[ ${#files[@]} -gt 0 ] || { echo "no manifests under deploy/k8s" >&2; exit 1; }
status=0
for v in $KUBE_VERSIONS; do
  out=$("$kv" --strict -k "$v" "${files[@]}" 2>&1) || status=1
  printf '%s\n' "$out" | grep -v '^INFO' || true
  # A kind with no schema is only a warning to the tool: fail on any we did not expect.
  while read -r kind; do
    [[ $kind =~ $no_schema_ok ]] || { echo "no schema for kind $kind (Kubernetes $v)" >&2; status=1; }
  done < <(printf '%s\n' "$out" | sed -n "s/.*Couldn't find schema for kind \([A-Za-z]*\) .*/\1/p")
  passed=$(printf '%s\n' "$out" | grep -c '^INFO .* passed' || true)
  echo "Kubernetes $v: $passed resource(s) valid"
done
[ $status -eq 0 ] && echo "manifests: ok" || echo "manifests: invalid" >&2
exit $status
