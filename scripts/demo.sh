#!/usr/bin/env bash
# The newcomer's demo: a real Kubernetes control plane (etcd, kube-apiserver and
# kube-controller-manager of the pinned version, scripts/control-plane.sh; built once, about
# 10 minutes), a local AWS (moto, behind the project's AWS test proxy for ECS deployment
# dynamics), Prometheus when installed, and the shipshape controller running as the chart's
# ServiceAccount. kubectl applies the car-rental example (deploy/examples/car-rental.yaml);
# the release rolls forward to a second SHA, then a third SHA breaks its health and is
# rolled back automatically; then a Lambda function canaries at 5 % of its invocations and
# is rolled back when its CloudWatch alarm fires, the alias weights printed at each step;
# an ECS canary; and a staging stage that proves each SHA before production takes it.
# `shipshape dashboard` runs all along (its URL is printed); on a terminal the demo waits for
# Enter at the end so its buttons can be tried. Stops everything it started.
#
#   bash scripts/demo.sh                     # on a control plane of its own
#   bash scripts/demo.sh --existing-cluster  # on the cluster of $KUBECONFIG (kind, a test
#                                            # cluster): installs deploy/base there, runs the
#                                            # controller locally, deletes what it applied
set -euo pipefail
cd "$(dirname "$0")/.."
existing=false
[ "${1:-}" = "--existing-cluster" ] && existing=true

t0=$(date +%s%N)
now_ms() { echo $(( ($(date +%s%N) - t0) / 1000000 )); }
step() { local ms; ms=$(now_ms); printf '\n\033[1m[%3d.%01ds] %s\033[0m\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"; }
work=$(mktemp -d)
mkdir -p "$work/overlay"
pids=()
applied=false
admin=""
cleanup() {
  if $existing && $applied; then
    # The controller is still running: its finalizers let the objects go, the release and
    # the stack before the Environment their cleanup needs.
    kubectl --kubeconfig "$admin" delete servicerelease,stackspec --all -n car-rental --wait=true --timeout=60s >/dev/null 2>&1 || true
    kubectl --kubeconfig "$admin" delete -k "$work/overlay" --wait=true --timeout=60s >/dev/null 2>&1 || true
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  $existing || scripts/control-plane.sh down "$work/cp" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# Ports below Linux's ephemeral range (32768+), so no outgoing connection takes one between
# picking it and the server binding it.
free_ports() { python3 -c '
import random, socket, sys
ports = []
while len(ports) < int(sys.argv[1]):
    p = random.randint(20000, 32000); s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        if p not in ports: ports.append(p)
    except OSError: pass
    finally: s.close()
print(*ports)' "$1"; }
wait_http() { for _ in $(seq 1 150); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "timed out waiting for $1"; tail -n 5 "$work"/*.log; return 1; }
wait_for() { # wait_for SECONDS JSONPATH VALUE [RELEASE]: a release field (of backend) reaches a value
  local deadline=$(( $(date +%s) + $1 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    [ "$(kubectl get release "${4:-backend}" -n car-rental -o jsonpath="$2" 2>/dev/null)" = "$3" ] && return 0
    sleep 0.3
  done
  echo "timed out waiting for $2 = $3"; ./target/debug/shipshape status -n car-rental; tail -20 "$work/controller.log"; return 1
}

step "Building shipshape and the local stand-ins$([ -f "$(scripts/control-plane.sh cache-dir)/.complete" ] || $existing || echo ' (and, this once, the Kubernetes control plane: about 5 min)')"
cargo build -q --bin shipshape --example demostack
# The pinned kubectl, for the demo and for you (built with the control plane).
PATH="$(scripts/control-plane.sh bin):$PATH"
built_ms=$(now_ms)
echo "  built in $((built_ms / 1000))s"
if ! command -v moto_server >/dev/null; then
  step "Installing the AWS emulator (pip install 'moto[server]')"
  pip install -q 'moto[server]'
fi
if [ ! -d testkit/iam/node_modules/@cloud-copilot/iam-simulate ]; then
  step "Installing the IAM policy evaluator the AWS proxy checks every request with (npm ci in testkit/iam)"
  (cd testkit/iam && npm ci --no-audit --no-fund --loglevel=error)
fi
have_prometheus=false
if [ "${DEMO_NO_PROMETHEUS:-0}" != 1 ] && command -v prometheus >/dev/null; then have_prometheus=true; fi

if $existing; then
  admin=${KUBECONFIG:-$HOME/.kube/config}
  step "Using the cluster of $admin ($(kubectl --kubeconfig "$admin" config current-context))"
else
  step "Starting Kubernetes $(scripts/control-plane.sh version | cut -d' ' -f1): etcd, kube-apiserver, kube-controller-manager on loopback"
  admin=$(scripts/control-plane.sh up "$work/cp" $$)
  echo "  ready; kubeconfig $admin"
fi
echo "  installing shipshape as the README says: kubectl apply --server-side -k deploy/base (CRDs, ServiceAccount, RBAC)"
scripts/control-plane.sh install "$admin" "$work/shipshape.kubeconfig" >/dev/null
echo "  the controller runs as $(kubectl --kubeconfig "$work/shipshape.kubeconfig" auth whoami -o jsonpath='{.status.userInfo.username}') (a token from the TokenRequest API)"

step "Starting moto + AWS proxy, $($have_prometheus && echo 'Prometheus, ')and the controller"
read -r moto_port proxy_port app_port prom_port metrics_port dash_port < <(free_ports 6)
python3 testkit/moto_server.py -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$moto_port/moto-api/"
./target/debug/examples/demostack --moto "http://127.0.0.1:$moto_port" --proxy-addr "127.0.0.1:$proxy_port" --exporter-addr "127.0.0.1:$app_port" >"$work/stack.log" 2>&1 & pids+=($!)
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
export MOTO_URL="http://127.0.0.1:$moto_port"
export AWS_ENDPOINT_URL="http://127.0.0.1:$proxy_port" AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=eu-west-1
KUBECONFIG="$work/shipshape.kubeconfig" ./target/debug/shipshape controller --metrics-addr "127.0.0.1:$metrics_port" \
  --lease-namespace shipshape >"$work/controller.log" 2>&1 & pids+=($!)
# You (kubectl, shipshape status) act as the cluster's admin; the controller as itself.
export KUBECONFIG="$admin"
wait_http "http://127.0.0.1:$metrics_port/readyz"
# The dashboard, as you: every release, each rollout's steps and measurements live, the buttons.
./target/debug/shipshape dashboard --port "$dash_port" >"$work/dashboard.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$dash_port/"
echo "  open http://127.0.0.1:$dash_port/ to watch it all in the dashboard (shipshape dashboard)"
curl -fs -XPOST "127.0.0.1:$app_port/error-rate?service=backend&rate=0" >/dev/null

# Fargate services need a subnet and a security group that exist in (emulated) EC2.
read -r subnet sg < <(python3 - <<'PY'
import os, boto3
ec2 = boto3.client("ec2", endpoint_url=os.environ["MOTO_URL"], region_name="eu-west-1")
vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="eu-west-1a")["Subnet"]["SubnetId"]
sg = ec2.create_security_group(GroupName="car-rental", Description="demo", VpcId=vpc)["GroupId"]
print(subnet, sg)
PY
)

# The car-rental example as it is in deploy/examples, with a kustomize overlay for this
# machine: the emulated network, the local Prometheus, and demo-speed analysis (seconds
# instead of minutes; the queries' rate windows shortened to match).
cp deploy/examples/car-rental.yaml "$work/overlay/"
{
  echo "resources: [car-rental.yaml]"
  echo "patches:"
  echo "  - target: { kind: Environment, name: prod }"
  echo "    patch: |-"
  echo "      - { op: replace, path: /spec/network, value: { subnets: [$subnet], securityGroups: [$sg], assignPublicIp: false } }"
  if $have_prometheus; then
    echo "      - { op: replace, path: /spec/health/prometheus/url, value: \"http://127.0.0.1:$prom_port\" }"
  else
    echo "      - { op: remove, path: /spec/health }"
  fi
  echo "  - target: { kind: ServiceRelease, name: backend }"
  echo "    patch: |-"
  echo "      - { op: replace, path: /spec/rollout/progressDeadline, value: 2m }"
  if $have_prometheus; then
    echo "      - { op: replace, path: /spec/rollout/analysis/warmup, value: 3s }"
    echo "      - { op: replace, path: /spec/rollout/analysis/interval, value: 2s }"
    echo "      - { op: replace, path: /spec/rollout/analysis/successfulRuns, value: 2 }"
    for i in 0 1; do
      q=$(grep -E '^ +prometheus: ' deploy/examples/car-rental.yaml | sed -n "$((i + 1))p" | sed -e 's/^ *prometheus: //' -e 's/\[1m\]/[5s]/g')
      echo "      - op: replace"
      echo "        path: /spec/rollout/analysis/queries/$i/prometheus"
      echo "        value: '$q'"
    done
  else
    echo "      - { op: remove, path: /spec/rollout/analysis }"
  fi
} >"$work/overlay/kustomization.yaml"
release() { kubectl get release backend -n car-rental -o jsonpath="$1"; }
set_sha() { kubectl patch release backend -n car-rental --type merge -p "{\"spec\":{\"image\":{\"gitSha\":\"$1\"}}}" >/dev/null; }

step "kubectl apply -k: deploy/examples/car-rental.yaml (Environment, StackSpec: Postgres + uploads bucket, ServiceRelease backend@3f9c2a1d)"
echo "  overlay for this machine: local network$($have_prometheus && echo ', local Prometheus, analysis warmup 3s / interval 2s / 2 passing rounds')"
start=$(now_ms)
kubectl apply -k "$work/overlay" | sed 's/^/  /'
applied=true
wait_for 90 '{.status.phase}' Healthy
echo "  Healthy in $(( ($(now_ms) - start) / 1000 ))s: ECS cluster, RDS instance, S3 bucket, task definition and Fargate service created"
kubectl get env,stack,release -A | sed 's/^/  /'
echo "  StackSpec outputs (ConfigMap car-rental-data, injected into the task): $(kubectl get cm car-rental-data -n car-rental -o jsonpath='{.data}' | cut -c1-100)..."

step "Roll forward: gitSha 3f9c2a1d -> 7b41e0c2 (kubectl patch, as a GitOps commit would)"
start=$(now_ms)
set_sha 7b41e0c2
wait_for 60 '{.status.stableSha}' 7b41e0c2
echo "  promoted in $(( ($(now_ms) - start) / 1000 ))s: ECS deployment COMPLETED$($have_prometheus && echo ', then 2 passing rounds of error-rate and p99 latency')"
./target/debug/shipshape status -n car-rental | sed 's/^/  /'

if $have_prometheus; then
  step "Break it: 9d0e5f11 serves 25% errors"
  curl -fs -XPOST "127.0.0.1:$app_port/error-rate?service=backend&rate=0.25" >/dev/null
else
  step "Break it: 9d0e5f11's ECS deployment fails (3 tasks do not start)"
  curl -fs -XPOST "127.0.0.1:$proxy_port/__proxy/ecs/fail-next" -d '{"service":"backend","failedTasks":3}' >/dev/null
fi
start=$(now_ms)
set_sha 9d0e5f11
wait_for 90 '{.status.phase}' RolledBack
echo "  rolled back automatically $(( ($(now_ms) - start) / 1000 ))s after the change; the service runs 7b41e0c2's task definition again"
./target/debug/shipshape status -n car-rental | sed 's/^/  /'
echo "  $(release '{.status.conditions[?(@.type=="Stalled")].reason}'): $(release '{.status.conditions[?(@.type=="Stalled")].message}')"
echo "  history:"
release '{range .status.history[*]}    {.sha}  {.outcome}  {.reason}{"\n"}{end}'
echo "  events:"
kubectl get events -n car-rental -o jsonpath='{range .items[?(@.involvedObject.name=="backend")]}    {.type}  {.reason}  {.message}{"\n"}{end}' | tail -4 | cut -c1-150
echo "  the dashboard (http://127.0.0.1:$dash_port/#/r/car-rental/backend) shows it from its own watch:"
curl -fs "http://127.0.0.1:$dash_port/api/releases/car-rental/backend" >"$work/dashboard-backend.json"
python3 - "$work/dashboard-backend.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
seen = p["rollouts"][-1] if p["rollouts"] else {"measurements": []}
fails = [m for m in seen["measurements"] if m["verdict"] == "Fail"]
print("    %s, %d measurements of its last rollout (%d failing), %d Events" % (p["row"]["phase"], len(seen["measurements"]), len(fails), len(p["events"])))
PY

step "A migration that fails: 5c6d7e8f's npm run db:migrate exits 1 (the proxy's task model scripts it)"
curl -fs -XPOST "127.0.0.1:$proxy_port/__proxy/ecs/task-script" \
  -d '{"command":"npm run db:migrate","exitCode":1,"lines":["query failed: ALTER TABLE \"cars\" ADD \"plate\" varchar","QueryFailedError: column \"plate\" of relation \"cars\" already exists"]}' >/dev/null
serving=$(release '{.status.taskDefinitionArn}')
start=$(now_ms)
set_sha 5c6d7e8f
wait_for 60 '{.status.phase}' Failed
curl -fs -XPOST "127.0.0.1:$proxy_port/__proxy/ecs/task-script" -d '{"command":"npm run db:migrate","exitCode":0}' >/dev/null
echo "  failed $(( ($(now_ms) - start) / 1000 ))s after the change, before any traffic moved; the service still runs ${serving##*/}:"
kubectl get release backend -n car-rental | sed 's/^/  /'
echo "  $(release '{.status.conditions[?(@.type=="Stalled")].message}' | cut -c1-400)"

step "An irreversible migration: a4b5c6d7 drops a column (snapshot first), then fails its analysis"
curl -fs -XPOST "127.0.0.1:$app_port/error-rate?service=backend&rate=0" >/dev/null
# Without Prometheus there is no analysis: the new revision's ECS deployment fails instead.
$have_prometheus || curl -fs -XPOST "127.0.0.1:$proxy_port/__proxy/ecs/fail-next" -d '{"service":"backend","failedTasks":3}' >/dev/null
start=$(now_ms)
kubectl patch release backend -n car-rental --type json -p '[
  {"op":"replace","path":"/spec/image/gitSha","value":"a4b5c6d7"},
  {"op":"replace","path":"/spec/rollout/preDeploy/0","value":{"name":"migrate","command":["npm","run","db:migrate"],"snapshot":"car-rental-db","irreversible":true}}]' >/dev/null
if $have_prometheus; then
  wait_for 60 '{.status.phase}' Analyzing
  echo "  snapshot $(release '{.status.rollout.preDeploy[0].snapshot}') taken, then the migration exited $(release '{.status.rollout.preDeploy[0].exitCode}'); traffic on a4b5c6d7"
  curl -fs -XPOST "127.0.0.1:$app_port/error-rate?service=backend&rate=0.25" >/dev/null
  echo "  a4b5c6d7 now serves 25% errors"
fi
wait_for 60 '{.status.conditions[?(@.type=="Stalled")].reason}' RollbackUnsafe
echo "  held $(( ($(now_ms) - start) / 1000 ))s after the change, not rolled back (the old code may not read the migrated database):"
kubectl get release backend -n car-rental | sed 's/^/  /'
echo "  $(release '{.status.conditions[?(@.type=="Stalled")].message}' | cut -c1-400)"
echo "  a person decides: shipshape rollback backend -n car-rental"
./target/debug/shipshape rollback backend -n car-rental | sed 's/^/  /'
wait_for 60 '{.status.phase}' RolledBack
curl -fs -XPOST "127.0.0.1:$app_port/error-rate?service=backend&rate=0" >/dev/null
echo "  rolled back to $(release '{.status.stableSha}') by hand"

step "A canary on Lambda: the bookings API, 5 % of the invocations on the new version first"
# The function's build pipeline as moto sees it: an execution role, a zip per SHA in S3, and a
# CloudWatch alarm on its errors (moto never evaluates alarms; the demo sets its state).
python3 - <<'PY'
import os, boto3
moto = os.environ["MOTO_URL"]
kw = dict(endpoint_url=moto, region_name="eu-west-1")
boto3.client("iam", **kw).create_role(RoleName="bookings", Path="/shipshape/lambda/", AssumeRolePolicyDocument="{}")
s3 = boto3.client("s3", **kw)
s3.create_bucket(Bucket="car-rental-builds", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
for sha in ["a1b2c3d", "b2c3d4e", "c3d4e5f"]:
    s3.put_object(Bucket="car-rental-builds", Key=f"bookings/{sha}.zip", Body=b"zip")
cw = boto3.client("cloudwatch", **kw)
cw.put_metric_alarm(AlarmName="bookings-errors", MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum",
                    Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
cw.set_alarm_state(AlarmName="bookings-errors", StateValue="OK", StateReason="demo")
PY
bookings() { # bookings SHA: the release as a team would write it
  cat <<YAML | kubectl apply -f - >/dev/null
apiVersion: shipshape.dev/v1alpha1
kind: ServiceRelease
metadata: { name: bookings, namespace: car-rental }
spec:
  environment: prod
  image: { gitSha: $1 }
  function:
    s3: { bucket: car-rental-builds, key: "bookings/{{sha}}.zip" }
    runtime: nodejs20.x
    handler: index.handler
    roleArn: arn:aws:iam::123456789012:role/shipshape/lambda/bookings
  rollout:
    strategy: { canary: { percent: 5, bake: 4s } }
    analysis: { warmup: 1s, interval: 1s, successfulRuns: 2, failureLimit: 0, cloudwatchAlarms: [bookings-errors] }
YAML
}
wait_bookings() { wait_for "$1" "$2" "$3" bookings; }
alias_weights() { # what `aws lambda get-alias --function-name bookings --name live` shows
  python3 -c '
import os, boto3
a = boto3.client("lambda", endpoint_url=os.environ["MOTO_URL"], region_name="eu-west-1").get_alias(FunctionName="bookings", Name="live")
w = (a.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
shares = ", ".join(f"{round(p * 100)}% on version {v}" for v, p in w.items())
v = a["FunctionVersion"]
print(f"  alias live -> version {v}" + (f", {shares}" if shares else ", no weights (0% on any other version)"))'
}
bookings a1b2c3d
wait_bookings 60 '{.status.phase}' Healthy
echo "  a1b2c3d Healthy (a first version takes all the traffic: nothing stable to compare with)"
alias_weights
bookings b2c3d4e
wait_bookings 30 '{.status.rollout.weight}' 5
echo "  b2c3d4e at step $(kubectl get release bookings -n car-rental -o jsonpath='{.status.rollout.stepText}'), judged on the CloudWatch alarm bookings-errors (OK):"
alias_weights
wait_bookings 60 '{.status.stableSha}' b2c3d4e
echo "  promoted after the bake and 2 passing rounds:"
alias_weights
bookings c3d4e5f
wait_bookings 30 '{.status.rollout.weight}' 5
echo "  c3d4e5f at 5 %:"
alias_weights
start=$(now_ms)
python3 -c 'import os, boto3; boto3.client("cloudwatch", endpoint_url=os.environ["MOTO_URL"], region_name="eu-west-1").set_alarm_state(AlarmName="bookings-errors", StateValue="ALARM", StateReason="5xx above threshold")'
echo "  the alarm bookings-errors goes to ALARM"
wait_bookings 60 '{.status.phase}' RolledBack
echo "  rolled back $(( ($(now_ms) - start) / 1000 ))s later, in one UpdateAlias call:"
alias_weights
kubectl get release -n car-rental | sed 's/^/  /'

step "A canary on ECS: pricing behind a load balancer, ECS's own CANARY deployment paused at 5 % while shipshape judges it"
# The load balancer a team sets up for ECS canary deployments: two target groups and a
# listener rule whose weighted forward ECS moves between them (moto's ELBv2).
read -r blue green rule < <(python3 - <<'PY'
import os, boto3
kw = dict(endpoint_url=os.environ["MOTO_URL"], region_name="eu-west-1")
ec2, elb = boto3.client("ec2", **kw), boto3.client("elbv2", **kw)
vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"] for i, az in enumerate(["eu-west-1a", "eu-west-1b"])]
lb = elb.create_load_balancer(Name="pricing", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
tgs = [elb.create_target_group(Name=f"pricing-{c}", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"] for c in ("blue", "green")]
listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])["Listeners"][0]["ListenerArn"]
fwd = {"TargetGroups": [{"TargetGroupArn": tgs[0], "Weight": 100}, {"TargetGroupArn": tgs[1], "Weight": 0}]}
rule = elb.create_rule(ListenerArn=listener, Priority=1, Conditions=[{"Field": "path-pattern", "Values": ["/*"]}], Actions=[{"Type": "forward", "ForwardConfig": fwd}])["Rules"][0]["RuleArn"]
cw = boto3.client("cloudwatch", **kw)
cw.put_metric_alarm(AlarmName="pricing-errors", MetricName="HTTPCode_Target_5XX_Count", Namespace="AWS/ApplicationELB", Statistic="Sum",
                    Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
cw.set_alarm_state(AlarmName="pricing-errors", StateValue="OK", StateReason="demo")
print(tgs[0], tgs[1], rule)
PY
)
if $have_prometheus; then
  curl -fs -XPOST "127.0.0.1:$app_port/error-rate?service=pricing&rate=0" >/dev/null
  judge='queries: [{ name: error-rate, max: 0.05, prometheus: "sum(rate(http_requests_total{service=\"{{service}}\",code=~\"5..\"}[5s])) / sum(rate(http_requests_total{service=\"{{service}}\"}[5s]))" }]'
else
  judge='cloudwatchAlarms: [pricing-errors]'
fi
pricing() { # pricing SHA
  cat <<YAML | kubectl apply -f - >/dev/null
apiVersion: shipshape.dev/v1alpha1
kind: ServiceRelease
metadata: { name: pricing, namespace: car-rental }
spec:
  environment: prod
  image: { repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/pricing, gitSha: $1 }
  task: { cpu: 256, memory: 512, port: 8080 }
  replicas: 2
  loadBalancer:
    targetGroupArn: $blue
    alternateTargetGroupArn: $green
    productionListenerRule: $rule
    roleArn: arn:aws:iam::123456789012:role/shipshape/ecs/ecsInfrastructureRoleForLoadBalancers
  rollout:
    strategy: { canary: { percent: 5, bake: 4s } }
    analysis: { warmup: 1s, interval: 1s, successfulRuns: 2, failureLimit: 0, $judge }
YAML
}
rule_weights() { # what `aws elbv2 describe-rules` shows for the production listener rule
  RULE="$rule" BLUE="$blue" python3 -c '
import os, boto3
r = boto3.client("elbv2", endpoint_url=os.environ["MOTO_URL"], region_name="eu-west-1").describe_rules(RuleArns=[os.environ["RULE"]])["Rules"][0]
groups = r["Actions"][0]["ForwardConfig"]["TargetGroups"]
print("  listener rule: " + ", ".join(("blue " if g["TargetGroupArn"] == os.environ["BLUE"] else "green ") + str(g["Weight"]) + "%" for g in groups))'
}
wait_pricing() { wait_for "$1" "$2" "$3" pricing; }
pricing d4e5f6a
wait_pricing 60 '{.status.phase}' Healthy
echo "  d4e5f6a Healthy (a first version: straight to the production target group)"
rule_weights
pricing e5f6a7b
wait_pricing 30 '{.status.rollout.weight}' 5
echo "  e5f6a7b: ECS shifted 5 % and paused at $(kubectl get release pricing -n car-rental -o jsonpath='{.status.rollout.stage}') (step $(kubectl get release pricing -n car-rental -o jsonpath='{.status.rollout.stepText}')); shipshape judges it through the bake:"
rule_weights
wait_pricing 60 '{.status.stableSha}' e5f6a7b
echo "  promoted: CONTINUE at each pause, all of the traffic on the green group"
rule_weights
pricing f6a7b8c
wait_pricing 30 '{.status.rollout.weight}' 5
echo "  f6a7b8c at 5 %:"
rule_weights
start=$(now_ms)
if $have_prometheus; then
  curl -fs -XPOST "127.0.0.1:$app_port/error-rate?service=pricing&rate=0.25" >/dev/null
  echo "  f6a7b8c serves 25% errors"
else
  python3 -c 'import os, boto3; boto3.client("cloudwatch", endpoint_url=os.environ["MOTO_URL"], region_name="eu-west-1").set_alarm_state(AlarmName="pricing-errors", StateValue="ALARM", StateReason="5xx")'
  echo "  the alarm pricing-errors goes to ALARM"
fi
wait_pricing 60 '{.status.phase}' RolledBack
echo "  rolled back $(( ($(now_ms) - start) / 1000 ))s later: ContinueServiceDeployment ROLLBACK at the pause, ECS moved the traffic back at once:"
rule_weights
kubectl get release -n car-rental | sed 's/^/  /'

step "Staging before production: backend-staging proves each SHA (soak 5s) before backend takes it"
if $have_prometheus; then
  curl -fs -XPOST "127.0.0.1:$app_port/error-rate?service=backend-staging&rate=0" >/dev/null
  curl -fs -XPOST "127.0.0.1:$app_port/error-rate?service=backend&rate=0" >/dev/null
  judge='queries: [{ name: error-rate, max: 0.05, prometheus: "sum(rate(http_requests_total{service=\"{{service}}\",code=~\"5..\"}[5s])) / sum(rate(http_requests_total{service=\"{{service}}\"}[5s]))" }]'
else
  judge=''
fi
staging() { # staging SHA: the staging stage of the back end (same repository, its own service)
  cat <<YAML | kubectl apply -f - >/dev/null
apiVersion: shipshape.dev/v1alpha1
kind: ServiceRelease
metadata: { name: backend-staging, namespace: car-rental }
spec:
  environment: prod
  image: { repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/car-rental-backend, gitSha: $1 }
  task: { cpu: 256, memory: 512, port: 3000, env: { NODE_ENV: staging } }
  replicas: 1
  rollout:
    analysis: { warmup: 1s, interval: 1s, successfulRuns: 2, failureLimit: 0, $judge }
YAML
}
both() { # one GitOps commit: the same SHA for staging and production
  staging "$1"
  kubectl patch release backend -n car-rental --type merge \
    -p "{\"spec\":{\"image\":{\"gitSha\":\"$1\"},\"promotion\":{\"from\":{\"name\":\"backend-staging\"},\"soak\":\"5s\"}}}" >/dev/null
}
start=$(now_ms)
both e1f2a3b4
wait_for 30 '{.status.waiting.reason}' WaitingForUpstream
echo "  backend (production) waits: $(release '{.status.waiting.message}' | cut -c1-160)"
wait_for 60 '{.status.stableSha}' e1f2a3b4 backend-staging
echo "  staging promoted e1f2a3b4 after $(( ($(now_ms) - start) / 1000 ))s; production: $(release '{.status.waiting.message}' | cut -c1-160)"
wait_for 90 '{.status.stableSha}' e1f2a3b4
echo "  production promoted e1f2a3b4 $(( ($(now_ms) - start) / 1000 ))s after the commit, once staging's soak had ended"
if $have_prometheus; then
  curl -fs -XPOST "127.0.0.1:$app_port/error-rate?service=backend-staging&rate=0.25" >/dev/null
  echo "  next commit, f0e1d2c3: it serves 25% errors in staging"
else
  curl -fs -XPOST "127.0.0.1:$proxy_port/__proxy/ecs/fail-next" -d '{"service":"backend-staging","failedTasks":3}' >/dev/null
  echo "  next commit, f0e1d2c3: its ECS deployment fails in staging"
fi
both f0e1d2c3
wait_for 90 '{.status.phase}' RolledBack backend-staging
wait_for 30 '{.status.waiting.reason}' UpstreamRejected
echo "  staging rolled f0e1d2c3 back; production refuses it and keeps e1f2a3b4:"
echo "  $(release '{.status.waiting.message}' | cut -c1-300)"
./target/debug/shipshape status --pipeline -n car-rental | sed 's/^/  /'

step "AWS events: kubectl patch environment prod with events: {} (shipshape creates an SQS queue and an EventBridge rule)"
kubectl patch environment prod --type merge -p '{"spec":{"events":{}}}' >/dev/null
flowing() { kubectl get environment prod -o jsonpath='{.status.conditions[?(@.type=="EventsFlowing")].status}'; }
for _ in $(seq 1 120); do [ "$(flowing)" = True ] && break; sleep 0.5; done
echo "  EventsFlowing=$(flowing): $(kubectl get environment prod -o jsonpath='{.status.conditions[?(@.type=="EventsFlowing")].message}')"
ecs_as_admin() { curl -fs -XPOST "127.0.0.1:$proxy_port/" -H "authorization: AWS4-HMAC-SHA256 Credential=test/20260101/eu-west-1/ecs/aws4_request, SignedHeaders=host, Signature=x" \
  -H 'content-type: application/x-amz-json-1.1' -H "x-amz-target: AmazonEC2ContainerServiceV20141113.$1" -d "$2"; }
desired() { ecs_as_admin DescribeServices '{"cluster":"car-rental-prod","services":["backend"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["services"][0]["desiredCount"])'; }
before=$(desired)
echo "  someone scales backend from $before to 9 tasks by hand (UpdateService; CloudTrail records it, EventBridge delivers it)..."
t_hand=$(now_ms)
ecs_as_admin UpdateService '{"cluster":"car-rental-prod","service":"backend","desiredCount":9}' >/dev/null
for _ in $(seq 1 300); do [ "$(desired)" = "$before" ] && break; sleep 0.1; done
echo "  ...and shipshape put it back to $(desired) tasks $(( $(now_ms) - t_hand )) ms later (without events: at the next drift read, up to 60 s)"
curl -s "http://127.0.0.1:$metrics_port/metrics" | grep -E '^shipshape_aws_(events_total|events_flowing|event_wakes_total)' | sed 's/^/  /'

step "The controller's metrics"
curl -s "http://127.0.0.1:$metrics_port/metrics" | grep -E '^shipshape_(rollouts_total|rollbacks_total|rollback_seconds_(sum|count)|leader)[ {]|^shipshape_release_phase.*RolledBack' | sed 's/^/  /'
echo "  (dashboards and alerts over these: deploy/monitoring/)"

step "Least privilege: every AWS request the controller made, checked by the AWS proxy"
calls=$(curl -s "127.0.0.1:$proxy_port/__proxy/calls" | python3 -c 'import json,sys; print(sum(1 for c in json.load(sys.stdin) if c.get("access_key") == "demo"))')
refused=$(curl -s "127.0.0.1:$proxy_port/__proxy/violations" | python3 -c 'import json,sys; v=json.load(sys.stdin); [print("  REFUSED", x["operation"], x["reason"], file=sys.stderr) for x in v]; print(len(v))')
echo "  $calls requests, each valid for AWS's API model and allowed by deploy/iam-policy.json in a real IAM evaluator: $refused refused"
[ "$refused" = 0 ]

if [ -t 0 ] && [ "${SHIPSHAPE_DEMO_HOLD:-1}" != 0 ]; then
  step "The dashboard stays at http://127.0.0.1:$dash_port/ (press its buttons: roll back, pause, retry…); Enter stops everything"
  read -r _
fi
step "Done in $(( ($(now_ms) - built_ms) / 1000 ))s after the build; stopping everything the demo started"
