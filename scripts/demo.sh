#!/usr/bin/env bash
# The newcomer's demo: a local Kubernetes API (the project's test API server), a local AWS
# (moto, behind the project's AWS test proxy for ECS deployment dynamics), Prometheus when
# installed, and the shipshape controller. kubectl applies a car-rental stack and release;
# the release rolls forward to a second SHA, then a third SHA breaks its health and is
# rolled back automatically. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$(date +%s%N)
now_ms() { echo $(( ($(date +%s%N) - t0) / 1000000 )); }
step() { local ms; ms=$(now_ms); printf '\n\033[1m[%3d.%01ds] %s\033[0m\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 150); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "timed out waiting for $1"; return 1; }
wait_for() { # wait_for SECONDS JSONPATH VALUE: a release field reaches a value
  local deadline=$(( $(date +%s) + $1 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    [ "$(kubectl get release backend -n car-rental -o jsonpath="$2" 2>/dev/null)" = "$3" ] && return 0
    sleep 0.3
  done
  echo "timed out waiting for $2 = $3"; ./target/debug/shipshape status -n car-rental; tail -20 "$work/controller.log"; return 1
}

step "Building shipshape and the local stand-ins"
cargo build -q --bin shipshape --example devcluster --example demostack
if ! command -v moto_server >/dev/null; then
  step "Installing the AWS emulator (pip install 'moto[server]')"
  pip install -q 'moto[server]'
fi
have_prometheus=false
if command -v prometheus >/dev/null; then have_prometheus=true; fi

step "Starting moto + AWS proxy, the test API server, $($have_prometheus && echo 'Prometheus, ')and the controller"
moto_port=$(free_port); proxy_port=$(free_port); app_port=$(free_port); api_port=$(free_port); prom_port=$(free_port); metrics_port=$(free_port)
moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$moto_port/moto-api/"
./target/debug/examples/demostack --moto "http://127.0.0.1:$moto_port" --proxy-addr "127.0.0.1:$proxy_port" --exporter-addr "127.0.0.1:$app_port" >"$work/stack.log" 2>&1 & pids+=($!)
./target/debug/examples/devcluster --addr "127.0.0.1:$api_port" --kubeconfig "$work/kubeconfig" >"$work/api.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$api_port/version"
wait_http "http://127.0.0.1:$app_port/metrics"
if $have_prometheus; then
  cat >"$work/prometheus.yml" <<YAML
global: { scrape_interval: 1s }
scrape_configs:
  - job_name: car-rental
    static_configs: [{ targets: ['127.0.0.1:$app_port'] }]
YAML
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 & pids+=($!)
  wait_http "http://127.0.0.1:$prom_port/-/ready"
else
  echo "  Prometheus is not installed (apt-get install prometheus): health is judged on ECS deployments only,"
  echo "  and the demo breaks the third release's ECS deployment instead of its error rate."
fi
export KUBECONFIG="$work/kubeconfig" AWS_ENDPOINT_URL="http://127.0.0.1:$proxy_port" \
  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=eu-west-1
./target/debug/shipshape controller --metrics-addr "127.0.0.1:$metrics_port" >"$work/controller.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$metrics_port/readyz"
curl -fs -XPOST "127.0.0.1:$app_port/error-rate?service=backend&rate=0" >/dev/null

# Fargate services need a subnet and a security group that exist in (emulated) EC2.
read -r subnet sg < <(python3 - <<'PY'
import os, boto3
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="eu-west-1")
vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="eu-west-1a")["Subnet"]["SubnetId"]
sg = ec2.create_security_group(GroupName="car-rental", Description="demo", VpcId=vpc)["GroupId"]
print(subnet, sg)
PY
)

health=""; analysis=""
if $have_prometheus; then
  health="  health: { prometheus: { url: \"http://127.0.0.1:$prom_port\" } }"
  analysis='  rollout:
    progressDeadline: 2m
    analysis:
      warmup: 3s
      interval: 2s
      successfulRuns: 2
      failureLimit: 1
      queries:
        - name: error-rate
          prometheus: sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{service="{{service}}"}[5s]))
          max: 0.01'
fi
manifest() { # manifest SHA: the car-rental example with demo-speed analysis and this machine's network
  cat <<YAML
apiVersion: v1
kind: Namespace
metadata: { name: car-rental }
---
apiVersion: shipshape.dev/v1alpha1
kind: Environment
metadata: { name: prod }
spec:
  region: eu-west-1
  accountId: "123456789012"
  ecsCluster: { name: car-rental-prod, create: true, capacityProviders: [FARGATE] }
  network: { subnets: [$subnet], securityGroups: [$sg], assignPublicIp: false }
  allowedNamespaces: [car-rental]
  tags: { Project: car-rental }
$health
---
apiVersion: shipshape.dev/v1alpha1
kind: StackSpec
metadata: { name: data, namespace: car-rental }
spec:
  environment: prod
  outputs: car-rental-data
  databases:
    - { name: car-rental-db, engine: postgres, engineVersion: "16.4", instanceClass: db.t4g.micro, allocatedStorageGiB: 20 }
  buckets:
    - { name: car-rental-uploads-prod, versioning: true, lifecycle: [{ prefix: tmp/, expireDays: 7 }] }
---
apiVersion: shipshape.dev/v1alpha1
kind: ServiceRelease
metadata: { name: backend, namespace: car-rental }
spec:
  environment: prod
  stack: data
  image: { repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/car-rental-backend, gitSha: "$1" }
  task: { cpu: 512, memory: 1024, port: 3000, env: { NODE_ENV: production } }
  replicas: 2
$analysis
YAML
}

step "kubectl apply: Environment, StackSpec (Postgres + bucket) and ServiceRelease backend@3f9c2a1d"
manifest 3f9c2a1d | kubectl apply -f -
wait_for 90 '{.status.phase}' Healthy
kubectl get env,stack,release -A
echo "  outputs injected into the task: $(kubectl get cm car-rental-data -n car-rental -o jsonpath='{.data}' | cut -c1-110)..."

step "Roll forward: gitSha 3f9c2a1d -> 7b41e0c2"
start=$(now_ms)
manifest 7b41e0c2 | kubectl apply -f - >/dev/null
wait_for 60 '{.status.stableSha}' 7b41e0c2
echo "  promoted in $(( ($(now_ms) - start) / 1000 ))s (ECS deployment completed$($have_prometheus && echo ', 2 passing analysis rounds'))"
./target/debug/shipshape status -n car-rental

if $have_prometheus; then
  step "Break it: 9d0e5f11 serves 25% errors (the exporter's error rate goes up as it deploys)"
  curl -fs -XPOST "127.0.0.1:$app_port/error-rate?service=backend&rate=0.25" >/dev/null
else
  step "Break it: 9d0e5f11's ECS deployment fails (3 tasks do not start)"
  curl -fs -XPOST "127.0.0.1:$proxy_port/__proxy/ecs/fail-next" -d '{"service":"backend","failedTasks":3}' >/dev/null
fi
start=$(now_ms)
manifest 9d0e5f11 | kubectl apply -f - >/dev/null
wait_for 90 '{.status.phase}' RolledBack
echo "  rolled back automatically $(( ($(now_ms) - start) / 1000 ))s after the apply; the service runs 7b41e0c2's task definition again"
./target/debug/shipshape status -n car-rental
kubectl get release backend -n car-rental -o jsonpath='  Stalled: {.status.conditions[?(@.type=="Stalled")].reason}: {.status.conditions[?(@.type=="Stalled")].message}{"\n"}'
echo "  history:"
kubectl get release backend -n car-rental -o jsonpath='{range .status.history[*]}    {.sha}  {.outcome}  {.reason}{"\n"}{end}'

step "The controller's metrics"
curl -s "http://127.0.0.1:$metrics_port/metrics" | grep -E '^shipshape_(rollouts_total|rollbacks_total|rollback_seconds_(sum|count)|leader)[ {]|^shipshape_release_phase.*RolledBack' | sed 's/^/  /'

step "Done; stopping everything the demo started"
