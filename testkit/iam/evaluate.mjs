// The IAM evaluator of the AWS test proxy (testkit/src/iam.rs): one JSON object per line in,
// one per line out. @cloud-copilot/iam-simulate implements IAM's evaluation logic (every
// condition operator, wildcard-only actions, the context keys each action and resource type
// takes, S3 bucket ABAC); this file only feeds it.
//
//   {"id":1,"register":"deploy","policy":{...}}                  -> {"id":1,"ok":true}
//   {"id":2,"policies":["deploy"],"principal":"arn:aws:iam::1:role/shipshape",
//    "action":"ecs:UpdateService","resource":"arn:...","account":"1",
//    "context":{"aws:ResourceTag/k":"v"},"s3Abac":true}          -> {"id":2,"result":"Allowed"}
import { createInterface } from 'node:readline';
import { runSimulation, runUnsafeSimulation, isWildcardOnlyAction } from '@cloud-copilot/iam-simulate';

const policies = new Map();

async function evaluate(req) {
  const [service, action] = req.action.split(':');
  const wildcard = await isWildcardOnlyAction(service, action);
  const simulation = {
    request: {
      principal: req.principal,
      action: req.action,
      resource: { resource: wildcard ? '*' : req.resource, accountId: req.account },
      contextVariables: req.context ?? {},
    },
    identityPolicies: req.policies.map((name) => ({ name, policy: policies.get(name) })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    additionalSettings: { s3: { bucketAbacEnabled: !!req.s3Abac } },
  };
  // A KMS key's own policy must let IAM policies decide: the default key policy does
  // ("Default key policy", AWS KMS developer guide), and so do AWS managed keys for
  // callers in the account using them through their service.
  if (service === 'kms') {
    simulation.resourcePolicy = {
      Version: '2012-10-17',
      Statement: [{ Sid: 'EnableIAMPolicies', Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${req.account}:root` }, Action: 'kms:*', Resource: '*' }],
    };
  }
  const r = await runSimulation(simulation, {});
  // An ARN two resource types both match (Lambda's `function:NAME:QUALIFIER` is an alias or
  // a version): the simulator refuses to pick one. Both take the same condition keys here
  // (aws:ResourceTag, the function's tags), so evaluate it without the type check.
  if (r.resultType === 'error' && r.errors?.message === 'multiple.resource.types') {
    const result = runUnsafeSimulation(simulation, {});
    return { result, statements: [], unsafe: true };
  }
  if (r.resultType === 'error' || r.errors) {
    return { result: 'Error', detail: JSON.stringify(r.errors ?? r).slice(0, 500) };
  }
  const result = r.overallResult;
  const out = { result };
  const single = r.result ?? r.results?.[0];
  const ignored = single?.ignoredContextKeys ?? [];
  if (ignored.length) out.ignored = ignored;
  const allows = single?.analysis?.identityAnalysis?.allowStatements ?? [];
  out.statements = allows.map((s) => s.explain?.identifier ?? s.statement?.Sid).filter(Boolean);
  return out;
}

const rl = createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    return;
  }
  let out;
  try {
    if (req.register) {
      policies.set(req.register, req.policy);
      out = { ok: true };
    } else {
      out = await evaluate(req);
    }
  } catch (e) {
    out = { result: 'Error', detail: String(e?.message ?? e).slice(0, 500) };
  }
  process.stdout.write(JSON.stringify({ id: req.id, ...out }) + '\n');
});
