#!/usr/bin/env bash
# The newcomer's demo: a local Kubernetes API (the project's test API server), a local AWS
# (moto) and the shipshape controller; kubectl applies the car-rental example and you watch
# the controller create and guard its ECS cluster. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$(date +%s%N)
step() { local ms=$(( ($(date +%s%N) - t0) / 1000000 )); printf '\n\033[1m[%3d.%01ds] %s\033[0m\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "timed out waiting for $1"; return 1; }

step "Building shipshape and the local API server"
cargo build -q --bin shipshape --example devcluster
if ! command -v moto_server >/dev/null; then
  step "Installing the AWS emulator (pip install 'moto[server]')"
  pip install -q 'moto[server]'
fi

step "Starting moto (AWS), the test API server (Kubernetes) and the controller"
moto_port=$(free_port); api_port=$(free_port); metrics_port=$(free_port)
moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 & pids+=($!)
./target/debug/examples/devcluster --addr "127.0.0.1:$api_port" --kubeconfig "$work/kubeconfig" >"$work/api.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$moto_port/moto-api/"
wait_http "http://127.0.0.1:$api_port/version"
export KUBECONFIG="$work/kubeconfig" AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" \
  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=eu-west-1
./target/debug/shipshape controller --metrics-addr "127.0.0.1:$metrics_port" >"$work/controller.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$metrics_port/readyz"
aws_ecs() { python3 - "$@" <<'PY'
import os, sys, boto3
ecs = boto3.client("ecs", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="eu-west-1")
if sys.argv[1] == "show":
    c = ecs.describe_clusters(clusters=["car-rental-prod"], include=["TAGS"])["clusters"][0]
    print(f"  {c['clusterName']}  {c['status']}  capacity={c['capacityProviders']}")
    print("  tags: " + ", ".join(f"{t['key']}={t['value']}" for t in sorted(c["tags"], key=lambda t: t["key"])))
elif sys.argv[1] == "tamper":
    arn = ecs.describe_clusters(clusters=["car-rental-prod"])["clusters"][0]["clusterArn"]
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "Project", "value": "tampered"}])
PY
}

step "kubectl apply -f deploy/examples/car-rental.yaml"
kubectl apply -f deploy/examples/car-rental.yaml
kubectl wait --for=condition=Ready environment/prod --timeout=60s >/dev/null
step "kubectl get env   (the controller created the ECS cluster)"
kubectl get env
step "The cluster in (emulated) AWS"
aws_ecs show

step "Someone changes a tag by hand; shipshape puts it back (drift interval set to 3s here)"
kubectl patch env prod --type merge -p '{"spec":{"driftInterval":"3s"}}' >/dev/null
aws_ecs tamper
aws_ecs show
for _ in $(seq 1 60); do aws_ecs show | grep -q 'Project=car-rental,' && break; sleep 0.5; done
aws_ecs show
kubectl get events | grep -E 'REASON|DriftCorrected' | sed 's/^/  /'

step "Tenancy: a StackSpec from a namespace prod does not allow is Stalled, with no AWS call"
kubectl apply -f - <<'YAML' >/dev/null
apiVersion: v1
kind: Namespace
metadata: { name: intruder }
---
apiVersion: shipshape.dev/v1alpha1
kind: StackSpec
metadata: { name: sneaky, namespace: intruder }
spec: { environment: prod, buckets: [{ name: sneaky-bucket-demo }] }
YAML
for _ in $(seq 1 50); do [ "$(kubectl get stack sneaky -n intruder -o jsonpath='{.status.conditions[?(@.type=="Stalled")].status}')" = True ] && break; sleep 0.2; done
kubectl get stack -A
kubectl get stack sneaky -n intruder -o jsonpath='  {.status.conditions[?(@.type=="Stalled")].reason}: {.status.conditions[?(@.type=="Stalled")].message}{"\n"}'

step "The release: accepted by the Environment; rollouts arrive in the next version"
kubectl get release -n car-rental
kubectl get release backend -n car-rental -o jsonpath='  {.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}{"\n"}'

step "The controller's metrics (curl /metrics)"
curl -s "http://127.0.0.1:$metrics_port/metrics" | grep -E '^shipshape_(aws_requests_total|drift_corrections_total|leader|reconcile_total)' | sed 's/^/  /'

step "Done; stopping everything the demo started"
