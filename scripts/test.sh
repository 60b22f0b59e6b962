#!/usr/bin/env bash
# The tests, on a fresh machine (the Rust and Go toolchains, Python and Node are all it
# needs): installs what the tests use when it is missing — moto (pip), the IAM policy
# evaluator (npm), Prometheus and promtool, Lua 5.1, curl, openssl, Chromium and chromedriver (apt) —, builds the pinned Kubernetes control plane the first
# time (scripts/control-plane.sh: etcd, kube-apiserver, kube-controller-manager and kubectl
# from the Go module proxy, about 10 minutes on 2 cores, cached in ~/.cache/shipshape), then
# runs `cargo test` with the pinned kubectl first on PATH.
#
#   scripts/test.sh                       # the whole suite
#   scripts/test.sh --test release_e2e    # arguments go to cargo test
#   scripts/test.sh --setup               # only the set-up
#
# KUBEBUILDER_ASSETS (a directory with etcd, kube-apiserver, kubectl) replaces the build;
# SHIPSHAPE_E2E_KUBECONFIG runs the suite against an existing cluster instead.
set -euo pipefail
cd "$(dirname "$0")/.."
setup_only=false
if [ "${1:-}" = "--setup" ]; then setup_only=true; shift; fi
say() { echo "test.sh: $*" >&2; }

if ! command -v moto_server >/dev/null 2>&1; then
  say "installing moto (pip install 'moto[server]')"
  pip install --quiet 'moto[server]'
fi
# The IAM policy evaluator the AWS test proxy asks about every request (testkit/src/iam.rs):
# @cloud-copilot/iam-simulate, pinned in testkit/iam/package-lock.json.
if [ ! -d testkit/iam/node_modules/@cloud-copilot/iam-simulate ]; then
  say "installing the IAM policy evaluator (npm ci in testkit/iam)"
  (cd testkit/iam && npm ci --no-audit --no-fund --loglevel=error)
fi
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v lua5.1 >/dev/null 2>&1 || missing+=(lua5.1)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
# The dashboard's end-to-end test drives headless Chromium over WebDriver.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (apt-get)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bin=$(scripts/control-plane.sh build)
export PATH="$bin:$PATH"
say "kubectl $(kubectl version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])') ($bin)," \
  "moto $(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null)," \
  "$(prometheus --version 2>&1 | head -1 | cut -d' ' -f1-3), $(lua5.1 -v 2>&1 | cut -d' ' -f1-2)"
$setup_only && exit 0
exec cargo test "$@"
