#!/usr/bin/env bash
# Builds the binary the Dockerfile ships (scripts/release-build.sh) and checks what the
# image relies on, without a Docker engine:
#   - it starts: `--version` names the crate version, `crd` prints the three CRDs;
#   - it links only against libraries gcr.io/distroless/cc-debian12 has (glibc, libgcc)
#     and needs no newer glibc than Debian 12's 2.36;
#   - it runs as the image's user (65532) with nothing writable, with the chart's
#     ServiceAccount token against the real control plane (scripts/control-plane.sh):
#     /readyz answers and it takes the leader Lease.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SHIPSHAPE_RELEASE_BIN:-$(scripts/release-build.sh | tail -1)}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

out=$("$bin" --version)
[ "$out" = "shipshape $version" ] || { echo "--version printed '$out', want 'shipshape $version'"; exit 1; }
n=$("$bin" crd | grep -c '^kind: CustomResourceDefinition$')
[ "$n" = 3 ] || { echo "crd printed $n CRDs"; exit 1; }
diff <("$bin" crd) <(cat crds/*.yaml) >/dev/null || { echo "crd output differs from crds/"; exit 1; }

allowed="libc.so.6 libm.so.6 libgcc_s.so.1 ld-linux-x86-64.so.2 libpthread.so.0 libdl.so.2 librt.so.1"
for lib in $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
  case " $allowed " in *" $lib "*) ;; *) echo "links against $lib, which distroless/cc does not have"; exit 1 ;; esac
done
glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
[ "$(printf '%s\n2.36\n' "$glibc" | sort -V | tail -1)" = 2.36 ] || { echo "needs glibc $glibc > 2.36"; exit 1; }

if command -v setpriv >/dev/null; then
  work=$(mktemp -d); chmod 755 "$work"
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; scripts/control-plane.sh down "$work/cp" 2>/dev/null || true; rm -rf "$work"' EXIT
  port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  metrics=$(port)
  # The real control plane with shipshape installed as the README says; the binary runs with
  # the chart's ServiceAccount token, as in a pod.
  admin=$(scripts/control-plane.sh up "$work/cp" $$)
  scripts/control-plane.sh install "$admin" "$work/kubeconfig" >/dev/null
  chmod 644 "$work/kubeconfig"; cp "$bin" "$work/shipshape"; chmod 755 "$work/shipshape"
  (cd / && exec setpriv --reuid 65532 --regid 65532 --clear-groups env -i KUBECONFIG="$work/kubeconfig" POD_NAMESPACE=shipshape \
    AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x SHIPSHAPE_LOG_FORMAT=json \
    "$work/shipshape" controller --metrics-addr "127.0.0.1:$metrics") >"$work/controller.log" 2>&1 & pids+=($!)
  ok=false
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$metrics/readyz" >/dev/null 2>&1 && { ok=true; break; }; sleep 0.1; done
  $ok || { echo "the release binary, as uid 65532, did not become ready:"; cat "$work/controller.log"; exit 1; }
  # It leads: the Lease in its namespace names it.
  leader() { local m; m=$(curl -fs "http://127.0.0.1:$metrics/metrics" || true); grep -q '^shipshape_leader 1' <<<"$m"; }
  for _ in $(seq 100); do leader && break; sleep 0.1; done
  leader || { echo "the release binary did not take the Lease:"; cat "$work/controller.log"; exit 1; }
  # The dashboard (a user's command): how soon the same binary serves its page.
  dash=$(port)
  t0=$(date +%s%N)
  KUBECONFIG="$admin" "$work/shipshape" dashboard --port "$dash" >"$work/dashboard.log" 2>&1 & pids+=($!)
  ok=false
  for _ in $(seq 200); do curl -fs "http://127.0.0.1:$dash/" >/dev/null 2>&1 && { ok=true; break; }; sleep 0.01; done
  $ok || { echo "the dashboard did not serve:"; cat "$work/dashboard.log"; exit 1; }
  echo "dashboard: serving its page $(( ($(date +%s%N) - t0) / 1000000 )) ms after it was started (binary $(du -h "$bin" | cut -f1))"
  echo "release binary: ready and leading as uid 65532 on kube-apiserver $("$(scripts/control-plane.sh bin)/kubectl" --kubeconfig "$admin" version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') (json logs: $(head -c 120 "$work/controller.log"))"
fi
echo "release binary OK: $("$bin" --version), $(du -h "$bin" | cut -f1), links: $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')glibc >= $glibc"
