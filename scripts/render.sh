#!/usr/bin/env bash
# Regenerates what is derived from other files, or with --check fails when any is stale:
#   charts/shipshape/crds/*.yaml      <- crds/*.yaml (themselves from `shipshape crd`)
#   charts/shipshape/files/alerts.yaml, dashboard.json <- deploy/monitoring/
#   deploy/base/shipshape.yaml        <- helm template of charts/shipshape with its defaults
set -euo pipefail
cd "$(dirname "$0")/.."
check=false
[ "${1:-}" = "--check" ] && check=true
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Render from a copy of the chart that already holds the fresh copies.
cp -r charts/shipshape "$out/chart"
rm -f "$out"/chart/crds/*.yaml
mkdir -p "$out/chart/crds" "$out/chart/files" "$out/crds" "$out/files"
cp crds/*.yaml "$out/chart/crds/"
cp deploy/monitoring/alerts.yaml deploy/monitoring/dashboard.json "$out/chart/files/"
cp "$out"/chart/crds/*.yaml "$out/crds/"
cp "$out"/chart/files/* "$out/files/"
{
  echo "# Rendered by scripts/render.sh: helm template shipshape charts/shipshape --namespace shipshape --include-crds"
  echo "# Do not edit; change the chart and re-run scripts/render.sh (CI checks this file is current)."
  scripts/helm template shipshape "$out/chart" --namespace shipshape --include-crds
} >"$out/shipshape.yaml"

stale=0
sync() { # sync GENERATED TARGET
  if $check; then
    if ! diff -u "$2" "$1" >/dev/null 2>&1; then echo "stale: $2 (run scripts/render.sh)"; diff -u "$2" "$1" | head -20 || true; stale=1; fi
  else
    mkdir -p "$(dirname "$2")"; cp "$1" "$2"
  fi
}
for f in "$out"/crds/*.yaml; do sync "$f" "charts/shipshape/crds/$(basename "$f")"; done
if $check; then
  for f in charts/shipshape/crds/*.yaml; do [ -e "$out/crds/$(basename "$f")" ] || { echo "stale: $f has no source in crds/"; stale=1; }; done
fi
sync "$out/files/alerts.yaml" charts/shipshape/files/alerts.yaml
sync "$out/files/dashboard.json" charts/shipshape/files/dashboard.json
sync "$out/shipshape.yaml" deploy/base/shipshape.yaml
exit $stale
