#!/usr/bin/env bash
# Pins the plugins an image ships in the production ConfigMap's `plugins.allow`: rewrites the
# list between the `BEGIN plugins.allow` and `END plugins.allow` lines of deploy/k8s/configmap.yaml
# with the SHA-256 of each plugin (what `portcullis plugin inspect FILE` prints as `sha256`).
#
#   scripts/pin-plugins.sh --image portcullis:0.2.0   # the image's own list (Dockerfile writes it)
#   scripts/pin-plugins.sh target/release             # the libportcullis_plugin_*.so in a folder
#   scripts/pin-plugins.sh --check target/release     # exit 1 if the ConfigMap pins other hashes
#
# To add a plugin to a running fleet, keep the old hashes and add the new one (docs/operations.md).
set -euo pipefail
cd "$(dirname "$0")/.."
configmap=deploy/k8s/configmap.yaml
check=false
if [ "${1:-}" = --check ]; then check=true; shift; fi
case "${1:-}" in
  --image)
    [ -n "${2:-}" ] || { echo "usage: $0 --image IMAGE" >&2; exit 2; }
    list=$(docker run --rm --entrypoint cat "$2" /usr/lib/portcullis/plugins.sha256)
    ;;
  "" | -h | --help)
    sed -n '2,10p' "$0" >&2; exit 2
    ;;
  *)
    shopt -s nullglob
    # The SDK's derive is a proc macro: a workspace-wide build leaves its library in the same
    # folder, and it is no plugin.
    files=()
    for f in "$1"/libportcullis_plugin_*.so; do
      case $f in */libportcullis_plugin_api_derive.so) ;; *) files+=("$(basename "$f")") ;; esac
    done
    [ ${#files[@]} -gt 0 ] || { echo "no libportcullis_plugin_*.so in $1" >&2; exit 1; }
    list=$(cd "$1" && sha256sum "${files[@]}")
    ;;
esac
block=$(printf '%s\n' "$list" | sort -k2 | awk 'NF == 2 && length($1) == 64 {
  name = $2; sub(/^\*/, "", name); printf "        - %s   # %s\n", $1, name }')
[ -n "$block" ] || { echo "no plugin hashes found" >&2; exit 1; }
current=$(awk '/# END plugins.allow/ {p = 0} p; /# BEGIN plugins.allow/ {p = 1}' "$configmap")
if $check; then
  if [ "$current" = "$block" ]; then echo "$configmap pins these plugins"; exit 0; fi
  echo "$configmap pins other plugins; run $0 without --check" >&2
  diff <(printf '%s\n' "$current") <(printf '%s\n' "$block") >&2 || true
  exit 1
fi
tmp=$(mktemp)
awk -v block="$block" '
  /# END plugins.allow/ {skip = 0}
  !skip {print}
  /# BEGIN plugins.allow/ {print block; skip = 1}
' "$configmap" > "$tmp"
cat "$tmp" > "$configmap" && rm -f "$tmp"
printf '%s\n' "$block"
