#!/usr/bin/env bash
# The pinned Kubernetes control plane the tests, the demo and the benchmarks run on: etcd,
# kube-apiserver, kube-controller-manager and kubectl, built from the Go module proxy.
#
#   scripts/control-plane.sh build          build once into the cache; prints the bin dir
#   scripts/control-plane.sh bin            the bin dir (building it first if needed)
#   scripts/control-plane.sh up DIR [PID]   start all three on loopback, state in DIR;
#                                           prints DIR/admin.kubeconfig when ready; with PID,
#                                           everything stops and DIR is removed when that
#                                           process exits (SHIPSHAPE_KEEP_CONTROL_PLANE=1 keeps
#                                           DIR: logs, audit.log)
#   scripts/control-plane.sh down DIR       stop what `up DIR` started
#   scripts/control-plane.sh install ADMIN_KUBECONFIG OUT
#                                           install shipshape as the README says (CRDs and
#                                           chart from deploy/base, server-side) and write OUT,
#                                           a kubeconfig of the chart's ServiceAccount (a
#                                           TokenRequest token): the controller's own identity
#
# The one place naming the versions. KUBEBUILDER_ASSETS (envtest's convention: a directory
# with etcd, kube-apiserver and kubectl, as setup-envtest installs them) is used instead of
# building when set; without a kube-controller-manager there, namespaces never finish
# deleting (as in envtest). Cache: ${SHIPSHAPE_CACHE:-~/.cache/shipshape}/k8s-<version>/.
# K8S_VERSION=v1.34.4 builds and runs the oldest minor the README claims instead (README,
# "Supported Kubernetes versions").
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=v3.7.3
# The staging modules (k8s.io/api, k8s.io/client-go, ...) are published as v0.<minor>.<patch>.
K8S_STAGING_VERSION=v0${K8S_VERSION#v1}

cache_root=${SHIPSHAPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shipshape}
bin_dir=$cache_root/k8s-$K8S_VERSION/bin
log() { echo "control-plane: $*" >&2; }

# --- build -------------------------------------------------------------------------------

# Writes a wrapper module in $1 that requires module $2@$3 and replaces each of its
# local-path replaces (`X => ../X` or `./staging/src/X`) with X at version $4: `go install`
# refuses a module with replace directives, and its staging modules are required at v0.0.0.
wrapper_module() {
  local dir=$1 mod=$2 ver=$3 replace_ver=$4 gomod
  mkdir -p "$dir"
  (cd "$dir" && go mod init "shipshape.local/$(basename "$dir")" >/dev/null 2>&1)
  gomod=$(cd "$dir" && go mod download -json "$mod@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  python3 - "$gomod" "$replace_ver" >>"$dir/go.mod" <<'PY'
import re, sys
text, ver = open(sys.argv[1]).read(), sys.argv[2]
skip = {"k8s.io/sample-cli-plugin", "k8s.io/sample-controller"}  # not on the proxy; nothing needs them
mods = []
for m in re.finditer(r"^\s*(?:replace\s+)?(\S+)(?:\s+v\S+)?\s+=>\s+(\.\.?/\S*)\s*$", text, re.M):
    if m.group(1) not in skip:
        mods.append(m.group(1))
for mod in mods:
    print(f"replace {mod} => {mod} {ver}")
PY
}

build() {
  if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
    for b in etcd kube-apiserver kubectl; do
      [ -x "$KUBEBUILDER_ASSETS/$b" ] || { log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no $b"; exit 1; }
    done
    echo "$KUBEBUILDER_ASSETS"
    return
  fi
  if [ -f "$bin_dir/.complete" ]; then
    echo "$bin_dir"
    return
  fi
  command -v go >/dev/null || { log "Go is needed to build the control plane (or set KUBEBUILDER_ASSETS)"; exit 1; }
  mkdir -p "$cache_root"
  exec 9>"$cache_root/k8s-$K8S_VERSION.lock"
  flock 9
  if [ -f "$bin_dir/.complete" ]; then
    echo "$bin_dir"
    return
  fi
  local t0 work
  t0=$(date +%s)
  work=$(mktemp -d)
  build_work=$work
  # The Go build cache (~4 GB) is only needed for this build: the binaries are what is kept.
  trap 'chmod -R u+w "$build_work" 2>/dev/null; rm -rf "$build_work"' EXIT
  export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod GOCACHE=$work/gocache
  log "building Kubernetes $K8S_VERSION and etcd $ETCD_VERSION into $bin_dir (once; about 10 minutes on 2 cores)"
  mkdir -p "$bin_dir.part"
  local tags=selinux,notest,grpcnotrace
  local minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done

  wrapper_module "$work/k8s" k8s.io/kubernetes "$K8S_VERSION" "$K8S_STAGING_VERSION"
  (cd "$work/k8s" &&
    go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION" >/dev/null 2>&1 &&
    go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$bin_dir.part/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
  log "kube-apiserver, kube-controller-manager, kubectl built after $(($(date +%s) - t0)) s"

  wrapper_module "$work/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION"
  (cd "$work/etcd" &&
    go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 &&
    go build -trimpath -tags "$tags" -ldflags "-s -w" -o "$bin_dir.part/etcd" go.etcd.io/etcd/server/v3)
  log "etcd built after $(($(date +%s) - t0)) s"

  "$bin_dir.part/kube-apiserver" --version >/dev/null
  rm -rf "$bin_dir"
  mv "$bin_dir.part" "$bin_dir"
  echo "$K8S_VERSION etcd $ETCD_VERSION built in $(($(date +%s) - t0)) s on $(date -u +%FT%TZ)" >"$bin_dir/.complete"
  log "done in $(($(date +%s) - t0)) s: $(du -sh "$bin_dir" | cut -f1) of binaries"
  echo "$bin_dir"
}

# --- up / down ---------------------------------------------------------------------------

# A free port below Linux's ephemeral range (32768+), so no outgoing connection takes it
# between picking it and the server binding it.
free_port() {
  python3 -c '
import random, socket
while True:
    p = random.randint(20000, 32000); s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: s.close()'
}

pki() { # pki DIR: a CA, the serving cert for 127.0.0.1, an admin client cert, SA keys
  local d=$1
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=shipshape-test-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  cert() { # cert NAME SUBJECT EXTENSIONS: X.509 v3 (rustls, as kube-rs uses it, refuses v1)
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$d/$1.key" -out "$d/$1.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%b' "$3" >"$d/$1.ext"
    openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
      -extfile "$d/$1.ext" -out "$d/$1.crt" 2>/dev/null
  }
  cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
  cert admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth\n"
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
}

up() {
  local dir=${1:?usage: up DIR [PID]} watch=${2:-} bin t0
  t0=$(date +%s%N)
  bin=$(build)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  pki "$dir/pki"
  local etcd_port api_port
  etcd_port=$(free_port)
  api_port=$(free_port)
  cat >"$dir/audit-policy.yaml" <<'YAML'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
YAML
  : >"$dir/pids"
  "$bin/etcd" --name test --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls http://127.0.0.1:0 \
    --initial-advertise-peer-urls http://127.0.0.1:0 --initial-cluster test=http://127.0.0.1:0 \
    --unsafe-no-fsync --log-level warn >"$dir/etcd.log" 2>&1 &
  echo $! >>"$dir/pids"
  "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --endpoint-reconciler-type none \
    --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$dir/pki/sa.pub" \
    --service-account-signing-key-file "$dir/pki/sa.key" --service-cluster-ip-range 10.96.0.0/16 \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" --audit-log-format json \
    --profiling=false --v=0 >"$dir/kube-apiserver.log" 2>&1 &
  echo $! >>"$dir/pids"
  local ca admin_crt admin_key
  ca=$(base64 -w0 <"$dir/pki/ca.crt")
  admin_crt=$(base64 -w0 <"$dir/pki/admin.crt")
  admin_key=$(base64 -w0 <"$dir/pki/admin.key")
  cat >"$dir/admin.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
  - name: shipshape-test
    cluster: { server: "https://127.0.0.1:$api_port", certificate-authority-data: "$ca" }
users:
  - name: admin
    user: { client-certificate-data: "$admin_crt", client-key-data: "$admin_key" }
contexts:
  - name: admin
    context: { cluster: shipshape-test, user: admin, namespace: default }
current-context: admin
YAML
  if [ -n "$watch" ]; then
    # Everything stops with the process that asked for it (a test binary, the demo).
    (
      trap '' HUP
      while kill -0 "$watch" 2>/dev/null; do sleep 1; done
      down "$dir"
      [ "${SHIPSHAPE_KEEP_CONTROL_PLANE:-0}" = 1 ] || rm -rf "$dir"
    ) </dev/null >/dev/null 2>&1 &
  fi
  local ready=false
  for _ in $(seq 1 600); do
    if curl -fsS --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
      "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; then
      ready=true
      break
    fi
    while read -r p; do kill -0 "$p" 2>/dev/null || { log "a component exited:"; tail -n 20 "$dir"/*.log >&2; down "$dir"; exit 1; }; done <"$dir/pids"
    sleep 0.1
  done
  $ready || { log "kube-apiserver not ready after 60 s"; tail -n 20 "$dir"/*.log >&2; down "$dir"; exit 1; }
  if [ -x "$bin/kube-controller-manager" ]; then
    # Namespaces finalize, ownerReferences cascade, ServiceAccounts get tokens and the
    # kube-root-ca.crt ConfigMap: what a cluster does for the objects tests create.
    "$bin/kube-controller-manager" --kubeconfig "$dir/admin.kubeconfig" --leader-elect=false \
      --controllers namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller,clusterrole-aggregation-controller,root-ca-certificate-publisher-controller \
      --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
      --bind-address 127.0.0.1 --secure-port 0 --v=0 >"$dir/kube-controller-manager.log" 2>&1 &
    echo $! >>"$dir/pids"
  else
    log "no kube-controller-manager in $bin: namespaces will not finish deleting"
  fi
  echo "$bin" >"$dir/bin"
  log "ready in $((($(date +%s%N) - t0) / 1000000)) ms: https://127.0.0.1:$api_port ($dir)"
  echo "$dir/admin.kubeconfig"
}

down() {
  local dir=${1:?usage: down DIR}
  [ -f "$dir/pids" ] || return 0
  # kube-controller-manager and kube-apiserver before etcd.
  tac "$dir/pids" | while read -r p; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    alive=false
    while read -r p; do kill -0 "$p" 2>/dev/null && alive=true; done <"$dir/pids"
    $alive || break
    sleep 0.1
  done
  xargs kill -9 <"$dir/pids" 2>/dev/null || true
  rm -f "$dir/pids"
}

# --- install -----------------------------------------------------------------------------

install() {
  local admin=${1:?usage: install ADMIN_KUBECONFIG OUT} out=${2:?usage: install ADMIN_KUBECONFIG OUT} bin root
  bin=$(build)
  root=$(cd "$(dirname "$0")/.." && pwd)
  local k=("$bin/kubectl" --kubeconfig "$admin")
  "${k[@]}" apply --server-side --force-conflicts -k "$root/deploy/base" >/dev/null
  "${k[@]}" wait --for condition=established --timeout 60s \
    crd/environments.shipshape.dev crd/stackspecs.shipshape.dev crd/servicereleases.shipshape.dev >/dev/null
  local token server ca
  token=$("${k[@]}" create token shipshape -n shipshape --duration 48h)
  server=$("${k[@]}" config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.server}')
  ca=$("${k[@]}" config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  local tmp="$out.part.$$"
  cat >"$tmp" <<YAML
apiVersion: v1
kind: Config
clusters:
  - name: cluster
    cluster: { server: "$server", certificate-authority-data: "$ca" }
users:
  - name: shipshape
    user: { token: "$token" }
contexts:
  - name: shipshape
    context: { cluster: cluster, user: shipshape, namespace: shipshape }
current-context: shipshape
YAML
  chmod 600 "$tmp"
  mv "$tmp" "$out"
  echo "$out"
}

case "${1:-}" in
  build | bin) build ;;
  cache-dir) echo "$bin_dir" ;;
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  install) shift; install "$@" ;;
  version) echo "$K8S_VERSION etcd $ETCD_VERSION" ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
