// shipshape dashboard: one page, no dependencies. Everything shown comes from the cluster
// (names, messages, log lines): it is written as text, never as markup (see esc).
"use strict";

const state = {
  rows: new Map(),          // "ns/name" -> release row
  sort: { key: "namespace", asc: true },
  filter: { text: "", phase: "", ns: "" },
  page: null,               // the release page's data when one is open
  errors: [],
};

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const main = () => $("#main");

function age(iso) {
  if (!iso) return "-";
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  if (s < 120) return s + "s";
  if (s < 7200) return Math.floor(s / 60) + "m";
  if (s < 172800) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}
const when = (iso) => (iso ? `<span class="when" title="${esc(iso)}">${esc(age(iso))} ago</span>` : "");
const phase = (p) => `<span class="phase ${esc(p)}">${esc(p || "-")}</span>`;
const num = (v) => (typeof v === "number" ? String(Number(v.toPrecision(4))) : String(v ?? ""));
const short = (sha) => (sha ? esc(String(sha).slice(0, 12)) : "-");

function notice(text, kind) {
  const n = $("#notice");
  if (!text) { n.hidden = true; return; }
  n.hidden = false;
  n.className = kind || "";
  n.textContent = text;
}

async function getJson(path) {
  const r = await fetch(path, { headers: { accept: "application/json" } });
  if (!r.ok) throw new Error(await r.text());
  return r.json();
}

// ---- routing -------------------------------------------------------------------------------

function route() {
  const h = location.hash.replace(/^#/, "") || "/";
  const parts = h.split("/").filter(Boolean).map(decodeURIComponent);
  document.querySelectorAll("header nav a").forEach((a) => a.classList.remove("active"));
  const nav = (n) => { const a = $(`header nav a[data-nav="${n}"]`); if (a) a.classList.add("active"); };
  state.page = null;
  if (parts[0] === "r" && parts.length === 3) return showRelease(parts[1], parts[2]);
  if (parts[0] === "environments") { nav("environments"); return showEnvironments(); }
  if (parts[0] === "stacks") { nav("stacks"); return showStacks(); }
  if (parts[0] === "pipeline") { nav("pipeline"); return showPipeline(); }
  nav("releases");
  return showList();
}

// ---- the releases list ---------------------------------------------------------------------

const COLUMNS = [
  ["namespace", "Namespace"], ["name", "Name"], ["target", "Target"], ["phase", "Phase"], ["sha", "SHA"],
  ["stableSha", "Stable"], ["step", "Step / weight"], ["upstream", "Stage"], ["reason", "Reason"], ["created", "Age"],
];

async function loadReleases() {
  const data = await getJson("/api/releases");
  state.rows = new Map(data.releases.map((r) => [`${r.namespace}/${r.name}`, r]));
  state.errors = data.errors || [];
}

function showList() {
  main().innerHTML = `
    <h1>Releases</h1>
    <div class="toolbar">
      <input id="search" type="search" placeholder="Search name, SHA, environment…" value="${esc(state.filter.text)}">
      <select id="phase-filter"><option value="">every phase</option></select>
      <select id="ns-filter"><option value="">every namespace</option></select>
      <span class="count" id="count"></span>
    </div>
    <table id="releases"><thead><tr>${COLUMNS.map(([k, t]) => `<th class="sort" data-key="${k}">${t}</th>`).join("")}</tr></thead><tbody></tbody></table>`;
  $("#search").addEventListener("input", (e) => { state.filter.text = e.target.value; renderList(); });
  $("#phase-filter").addEventListener("change", (e) => { state.filter.phase = e.target.value; renderList(); });
  $("#ns-filter").addEventListener("change", (e) => { state.filter.ns = e.target.value; renderList(); });
  document.querySelectorAll("#releases th.sort").forEach((th) => th.addEventListener("click", () => {
    const k = th.dataset.key;
    state.sort = { key: k, asc: state.sort.key === k ? !state.sort.asc : true };
    renderList();
  }));
  $("#releases tbody").addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-key]");
    if (tr) location.hash = "#/r/" + tr.dataset.key.split("/").map(encodeURIComponent).join("/");
  });
  renderList();
}

function options(select, values, chosen) {
  const first = select.options[0].outerHTML;
  select.innerHTML = first + values.map((v) => `<option${v === chosen ? " selected" : ""}>${esc(v)}</option>`).join("");
}

// How long the list took (read by the benchmark: benches/dashboard.rs).
const timings = (window.shipshapeTimings = { firstList: null, lastRenderMs: null, renders: 0, lastEvent: null, lastRender: null });

function renderList() {
  const tbody = $("#releases tbody");
  if (!tbody) return;
  const t0 = performance.now();
  const rows = [...state.rows.values()];
  options($("#phase-filter"), [...new Set(rows.map((r) => r.phase))].sort(), state.filter.phase);
  options($("#ns-filter"), [...new Set(rows.map((r) => r.namespace))].sort(), state.filter.ns);
  const text = state.filter.text.toLowerCase();
  const shown = rows.filter((r) =>
    (!state.filter.phase || r.phase === state.filter.phase) &&
    (!state.filter.ns || r.namespace === state.filter.ns) &&
    (!text || [r.namespace, r.name, r.sha, r.stableSha, r.environment, r.phase].some((v) => String(v ?? "").toLowerCase().includes(text))));
  const { key, asc } = state.sort;
  const val = (r) => (key === "created" ? -Date.parse(r.created || 0) : String(r[key] ?? ""));
  shown.sort((a, b) => { const x = val(a), y = val(b); return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1) || (a.name < b.name ? -1 : 1); });
  document.querySelectorAll("#releases th").forEach((th) => {
    th.classList.toggle("sorted", th.dataset.key === key);
    th.classList.toggle("asc", th.dataset.key === key && asc);
  });
  const html = new Array(shown.length);
  for (let i = 0; i < shown.length; i++) {
    const r = shown[i];
    const step = [r.step ? "step " + r.step : "", r.weight != null ? r.weight + "%" : ""].filter(Boolean).join(" · ") || "-";
    const stage = r.upstream ? "from " + r.upstream : "";
    const reason = r.waiting || r.reason || "";
    html[i] = `<tr class="row" data-key="${esc(r.namespace + "/" + r.name)}"><td>${esc(r.namespace)}</td><td class="name">${esc(r.name)}</td><td>${esc(r.target)}</td><td class="phase-cell">${phase(r.phase)}</td><td class="mono">${short(r.sha)}</td><td class="mono">${short(r.stableSha)}</td><td>${esc(step)}</td><td>${esc(stage)}</td><td>${esc(reason)}</td><td>${esc(age(r.created))}</td></tr>`;
  }
  tbody.innerHTML = html.join("");
  $("#count").textContent = `${shown.length} of ${rows.length}`;
  timings.renders += 1;
  timings.lastRenderMs = performance.now() - t0;
  timings.lastRender = Date.now();
  if (timings.firstList === null && rows.length) timings.firstList = performance.now();
  if (state.errors.length) notice(state.errors.join("\n"), "error");
}

// ---- one release ---------------------------------------------------------------------------

async function showRelease(ns, name) {
  main().innerHTML = `<p class="muted">loading ${esc(ns)}/${esc(name)}…</p>`;
  await refreshRelease(ns, name);
}

async function refreshRelease(ns, name) {
  let page;
  try {
    page = await getJson(`/api/releases/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`);
  } catch (e) {
    main().innerHTML = `<p class="fail">${esc(e.message)}</p>`;
    return;
  }
  if (location.hash !== `#/r/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`) return;
  state.page = { ns, name, data: page };
  renderRelease(page);
}

function consoleLinks(rel, env) {
  const st = rel.status || {}, ro = st.rollout || {};
  const region = env ? env.region : null;
  const links = [];
  const link = (label, value, href) => links.push(`<div class="card"><div class="k">${esc(label)}</div><div class="mono">${href && region ? `<a target="_blank" rel="noopener noreferrer" href="${esc(href)}">${esc(value)}</a>` : esc(value)}</div></div>`);
  const base = region ? `https://${region}.console.aws.amazon.com` : "";
  if (rel.spec.function) {
    const fn = rel.spec.service || rel.metadata.name;
    link("Lambda function", fn, `${base}/lambda/home?region=${region}#/functions/${encodeURIComponent(fn)}`);
    if (st.functionVersionArn) link("Function version", st.functionVersionArn, `${base}/lambda/home?region=${region}#/functions/${encodeURIComponent(fn)}/versions/${encodeURIComponent(st.functionVersionArn.split(":").pop())}`);
    if (st.stableFunctionVersionArn) link("Stable version", st.stableFunctionVersionArn);
  } else {
    const svc = rel.spec.service || rel.metadata.name, cluster = env ? env.cluster : "";
    link("ECS service", `${cluster}/${svc}`, `${base}/ecs/v2/clusters/${encodeURIComponent(cluster)}/services/${encodeURIComponent(svc)}/health?region=${region}`);
    const td = ro.taskDefinitionArn || st.taskDefinitionArn;
    if (td) { const fam = td.split("/").pop().split(":"); link("Task definition", td, `${base}/ecs/v2/task-definitions/${encodeURIComponent(fam[0])}/${encodeURIComponent(fam[1] || "")}/containers?region=${region}`); }
    if (st.stableTaskDefinitionArn) link("Stable task definition", st.stableTaskDefinitionArn);
    if (ro.serviceDeploymentArn || ro.deploymentId) link("Deployment", ro.serviceDeploymentArn || ro.deploymentId);
  }
  if (env) link("Environment", `${env.name} · ${env.account || "any account"} · ${env.region}`, null);
  return links.join("");
}

function queryLimits(rel) {
  const qs = (((rel.spec.rollout || {}).analysis || {}).queries || []);
  const out = {};
  for (const q of qs) out[q.name] = { min: q.min, max: q.max };
  return out;
}

function chart(name, points, limits) {
  const vals = points.filter((p) => p.value != null);
  const lim = limits || {};
  const ys = vals.map((p) => p.value).concat([lim.min, lim.max].filter((v) => v != null));
  if (!ys.length) return `<div class="chart"><b>${esc(name)}</b> <span class="muted">no data yet</span></div>`;
  const t0 = Date.parse(points[0].at), t1 = Math.max(t0 + 1000, Date.parse(points[points.length - 1].at));
  let lo = Math.min(...ys), hi = Math.max(...ys);
  if (hi === lo) { hi += 1; lo -= 1; }
  const W = 1000, H = 150, pad = 8;
  const x = (t) => pad + ((Date.parse(t) - t0) / (t1 - t0)) * (W - 2 * pad);
  const y = (v) => H - pad - ((v - lo) / (hi - lo)) * (H - 2 * pad);
  const line = vals.map((p) => `${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
  const dots = vals.map((p) => `<circle cx="${x(p.at).toFixed(1)}" cy="${y(p.value).toFixed(1)}" r="3" fill="${p.verdict === "Fail" ? "#c62828" : "#1c64d1"}"><title>${esc(p.at)}: ${esc(num(p.value))} (${esc(p.verdict)})</title></circle>`).join("");
  const rule = (v, label) => (v == null ? "" : `<line x1="0" x2="${W}" y1="${y(v)}" y2="${y(v)}" stroke="#c62828" stroke-dasharray="4 3"/><text x="${W - 4}" y="${y(v) - 3}" text-anchor="end" font-size="10" fill="#c62828">${label} ${esc(v)}</text>`);
  return `<div class="chart" data-query="${esc(name)}"><b>${esc(name)}</b> <span class="muted">${vals.length} measurements · ${esc(num(Math.min(...vals.map((p) => p.value))))} … ${esc(num(Math.max(...vals.map((p) => p.value))))}</span>
    <svg viewBox="0 0 ${W} ${H}"><polyline fill="none" stroke="#1c64d1" stroke-width="1.5" points="${line}"/>${rule(lim.max, "max")}${rule(lim.min, "min")}${dots}</svg></div>`;
}

function rounds(measurements, limits) {
  // One analysis round: the measurements taken at one instant.
  const by = new Map();
  for (const m of measurements) { if (!by.has(m.at)) by.set(m.at, []); by.get(m.at).push(m); }
  return [...by.entries()].map(([at, ms]) => {
    const bad = ms.some((m) => m.verdict === "Fail");
    const cells = ms.map((m) => {
      const l = limits[m.query] || {};
      const bound = [l.min != null ? "≥ " + l.min : "", l.max != null ? "≤ " + l.max : ""].filter(Boolean).join(", ");
      return `<span class="${m.verdict === "Fail" ? "fail" : m.verdict === "Pass" ? "pass" : "muted"}">${esc(m.query)}${m.series ? " " + esc(m.series) : ""} = ${m.value == null ? "no data" : esc(num(m.value))}${bound ? " (" + esc(bound) + ")" : ""} ${esc(m.verdict)}</span>`;
    }).join("; ");
    return `<li class="${bad ? "fail" : "pass"}">analysis round ${when(at)}<br>${cells}</li>`;
  });
}

function renderRelease(page) {
  const rel = page.release, st = rel.status || {}, ro = st.rollout, row = page.row;
  const cond = (t) => (st.conditions || []).find((c) => c.type === t);
  const stalled = cond("Stalled"), ready = cond("Ready"), rec = cond("Reconciling");
  const limits = queryLimits(rel);
  const seen = (page.rollouts || []);
  const last = seen[seen.length - 1];
  const measurements = (ro && last && last.sha === ro.sha) || (!ro && last) ? last.measurements : (ro ? ro.measurements || [] : []);
  const steps = [];
  if (ro || last) {
    const started = ro ? ro.startedAt : last.startedAt;
    steps.push(`<li class="pass">rollout of <span class="mono">${short(ro ? ro.sha : last.sha)}</span> started ${when(started)}</li>`);
  }
  const pre = ro ? ro.preDeploy || [] : ((st.history || [])[0] || {}).preDeploy || [];
  for (const p of pre) {
    const cls = p.phase === "Succeeded" ? "pass" : p.phase === "Failed" ? "fail" : "run";
    steps.push(`<li class="${cls}">step before traffic <b>${esc(p.name)}</b>: ${esc(p.phase)}${p.exitCode != null ? " (exit " + esc(p.exitCode) + ")" : ""}${p.reason ? " — " + esc(p.reason) : ""}${p.snapshot ? " · snapshot " + esc(p.snapshot) : ""} ${when(p.finishedAt || p.startedAt)}${(p.logTail || []).length ? `<pre class="logs">${esc(p.logTail.join("\n"))}</pre>` : ""}</li>`);
  }
  if (ro) {
    for (const s of ro.passedSteps || []) steps.push(`<li class="${s.result === "Passed" ? "pass" : "fail"}">traffic step ${esc(s.step)}: ${esc(s.weight)}% — ${esc(s.result)} ${when(s.finishedAt)}</li>`);
    if (ro.weight != null || ro.stepText) steps.push(`<li class="run">now: ${ro.stepText ? "step " + esc(ro.stepText) + " · " : ""}${ro.weight != null ? esc(ro.weight) + "% of the traffic" : ""}${ro.stage ? " · ECS " + esc(ro.stage) : ""}${ro.held ? " · held: " + esc(ro.held) : ""}</li>`);
  }
  steps.push(...rounds(measurements, limits));
  const done = (st.history || [])[0];
  if (!ro && done && last && done.sha === last.sha) {
    const ok = done.outcome === "Promoted";
    steps.push(`<li class="${ok ? "pass" : "fail"}">${esc(done.outcome)}${done.reason ? ": " + esc(done.reason) : ""} ${when(done.finishedAt)}</li>`);
  }
  if (st.rollback) steps.push(`<li class="fail">rollback (${esc(st.rollback.trigger)}) ${when(st.rollback.requestedAt)}: ${esc(st.rollback.reason)}${st.rollback.error ? " — " + esc(st.rollback.error) : ""}</li>`);
  const verdictCls = stalled && stalled.status === "True" ? "bad" : ready && ready.status === "True" ? "good" : "";
  const verdictText = stalled && stalled.status === "True" ? `${stalled.reason}: ${stalled.message}` : rec && rec.status === "True" ? `${rec.reason}: ${rec.message}` : ready ? `${ready.reason}: ${ready.message}` : "not reconciled yet";
  const byQuery = new Map();
  for (const m of measurements) { const k = m.query + (m.series ? " " + m.series : ""); if (!byQuery.has(k)) byQuery.set(k, []); byQuery.get(k).push(m); }
  const charts = [...byQuery.entries()].map(([k, pts]) => chart(k, pts, limits[pts[0].query])).join("");
  const manual = ((rel.spec.promotion || {}).approval) === "Manual";
  const paused = rel.spec.paused || (rel.metadata.annotations || {})["shipshape.dev/paused"] === "true";
  const history = (st.history || []).map((h) => `<tr><td class="mono">${short(h.sha)}</td><td>${phase(h.outcome)}</td><td>${esc(h.reason)}</td><td>${esc((h.steps || []).map((s) => s.weight + "% " + s.result).join(", "))}</td><td>${when(h.startedAt)}</td><td>${when(h.finishedAt)}</td></tr>`).join("");
  const events = (page.events || []).map((e) => `<tr><td class="${e.type_ === "Warning" ? "fail" : ""}">${esc(e.type_)}</td><td>${esc(e.reason)}</td><td class="event-message">${esc(e.message)}</td><td>${esc(e.count)}</td><td>${when(e.last)}</td></tr>`).join("");
  const waiting = st.waiting ? `<div class="verdict">${esc(st.waiting.reason)}: ${esc(st.waiting.message)}${st.waiting.until ? " — until " + esc(st.waiting.until) : ""}</div>` : "";
  main().innerHTML = `
    <p class="muted"><a href="#/">Releases</a> / ${esc(row.namespace)}</p>
    <h1 id="title">${esc(row.name)} ${phase(row.phase)}</h1>
    <div class="cards">
      <div class="card"><div class="k">SHA</div><div class="mono" id="sha">${esc(row.sha)}</div></div>
      <div class="card"><div class="k">Stable SHA</div><div class="mono">${esc(row.stableSha || "-")}</div></div>
      <div class="card"><div class="k">Target</div><div>${esc(row.target)} in ${esc(row.environment)}</div></div>
      ${row.upstream ? `<div class="card"><div class="k">Promoted from</div><div><a href="#/r/${esc(row.upstream)}">${esc(row.upstream)}</a></div></div>` : ""}
      ${page.downstream.length ? `<div class="card"><div class="k">Promotes to</div><div>${page.downstream.map((d) => `<a href="#/r/${esc(d)}">${esc(d)}</a>`).join(", ")}</div></div>` : ""}
    </div>
    <div class="actions">
      <button data-action="promote">Promote</button>
      <button data-action="rollback" class="danger">Roll back</button>
      ${paused ? `<button data-action="resume">Resume</button>` : `<button data-action="pause">Pause</button>`}
      <button data-action="retry">Retry</button>
      ${manual ? `<button data-action="approve">Approve ${short(row.sha)}</button>` : ""}
    </div>
    <h2>Verdict</h2>
    <div class="verdict ${verdictCls}" id="verdict">${esc(verdictText)}</div>
    ${waiting}
    <h2>Rollout</h2>
    <ul class="timeline" id="timeline">${steps.join("") || "<li>no rollout yet</li>"}</ul>
    <h2>Measurements</h2>
    <div id="charts">${charts || '<p class="muted">no measurements in this rollout (the dashboard keeps those it saw while running)</p>'}</div>
    <h2>AWS</h2>
    <div class="cards">${consoleLinks(rel, page.environment)}</div>
    <h2>History</h2>
    <table><thead><tr><th>SHA</th><th>Outcome</th><th>Reason</th><th>Steps</th><th>Started</th><th>Finished</th></tr></thead><tbody>${history}</tbody></table>
    <h2>Events</h2>
    <table id="events"><thead><tr><th>Type</th><th>Reason</th><th>Message</th><th>Count</th><th>Last</th></tr></thead><tbody>${events}</tbody></table>`;
  document.querySelectorAll("button[data-action]").forEach((b) => b.addEventListener("click", () => action(row.namespace, row.name, b.dataset.action, row.sha)));
}

function confirmRollback(text) {
  return new Promise((resolve) => {
    const m = $("#confirm");
    $("#confirm-text").textContent = text;
    m.hidden = false;
    const done = (v) => { m.hidden = true; $("#confirm-yes").onclick = null; $("#confirm-no").onclick = null; resolve(v); };
    $("#confirm-yes").onclick = () => done(true);
    $("#confirm-no").onclick = () => done(false);
  });
}

async function action(ns, name, what, sha) {
  if (what === "rollback" && !(await confirmRollback(`Roll ${ns}/${name} back to its stable SHA now?`))) return;
  const r = await fetch(`/api/releases/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/${what}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-shipshape-dashboard": "1" },
    body: JSON.stringify(what === "approve" ? { sha } : {}),
  });
  let msg;
  try { msg = (await r.json()).message; } catch (_) { msg = r.statusText; }
  notice(r.ok ? msg : `refused (${r.status}): ${msg}`, r.ok ? "ok" : "error");
}

// ---- Environments, StackSpecs, promotion paths ---------------------------------------------

async function showEnvironments() {
  const data = await getJson("/api/environments");
  main().innerHTML = `<h1>Environments</h1><table id="environments"><thead><tr><th>Name</th><th>Account</th><th>Region</th><th>Cluster</th><th>Freeze</th><th>Windows</th><th>Blackouts</th><th>Namespaces</th><th>Ready</th></tr></thead><tbody>${
    data.environments.map((e) => `<tr><td>${esc(e.name)}</td><td class="mono">${esc(e.account || "-")}</td><td>${esc(e.region)}</td><td>${esc(e.cluster)}</td><td>${e.freeze ? "frozen" : "-"}</td><td>${esc(e.windows.join("; ") || "-")}</td><td>${esc(e.blackouts.join("; ") || "-")}</td><td>${esc(e.allowedNamespaces.join(", ") || "-")}</td><td title="${esc(e.message)}">${esc(e.ready || "-")}</td></tr>`).join("")
  }</tbody></table>`;
  if ((data.errors || []).length) notice(data.errors.join("\n"), "error");
}

async function showStacks() {
  const data = await getJson("/api/stacks");
  main().innerHTML = `<h1>StackSpecs</h1>${data.stacks.map((s) => `
    <h2>${esc(s.namespace)}/${esc(s.name)} <span class="muted">in ${esc(s.environment)} · Ready ${esc(s.ready || "-")}${s.reason ? " · " + esc(s.reason) : ""}</span></h2>
    ${s.message ? `<p class="muted">${esc(s.message)}</p>` : ""}
    <table class="stack"><thead><tr><th>Kind</th><th>Name</th><th>State</th><th>In sync</th><th>Drift corrected</th><th>Last in sync</th></tr></thead><tbody>${
      s.resources.map((r) => `<tr><td>${esc(r.kind)}</td><td class="mono">${esc(r.name)}</td><td>${esc(r.state || "-")}</td><td>${r.synced ? "yes" : "no"}</td><td>${esc((r.drift || []).join(", ") || "-")}</td><td>${when(r.lastSyncedAt)}</td></tr>`).join("")
    }</tbody></table>
    <p>Outputs${s.outputs ? " (ConfigMap " + esc(s.outputs) + ")" : ""}: <span class="mono">${esc(s.outputKeys.join(", ") || "-")}</span></p>
    ${s.plan.length ? `<p>Plan waiting for approval:</p><pre class="logs">${esc(s.plan.join("\n"))}</pre>` : ""}`).join("") || '<p class="muted">no StackSpecs</p>'}`;
  if ((data.errors || []).length) notice(data.errors.join("\n"), "error");
}

async function showPipeline() {
  const data = await getJson("/api/pipeline");
  const by = new Map(data.stages.map((r) => [`${r.namespace}/${r.name}`, r]));
  main().innerHTML = `<h1>Promotion paths</h1>${data.chains.map((c) => `<div class="chain">${c.map((k) => {
    const r = by.get(k) || {};
    return `<div class="stage"><a href="#/r/${esc(k)}">${esc(k)}</a><br>${phase(r.phase)} <span class="mono">${short(r.sha)}</span><br><span class="muted">stable ${short(r.stableSha)}${r.waiting ? " · " + esc(r.waiting) : ""}</span></div>`;
  }).join('<span class="arrow">→</span>')}</div>`).join("") || '<p class="muted">no release has promotion.from</p>'}`;
}

// ---- live updates --------------------------------------------------------------------------

// The list is drawn at once on a change, then at most every 200 ms while changes keep
// coming; a tab out of view draws nothing until it is shown again.
let listTimer = null, listDirty = false;
function scheduleList() {
  listDirty = true;
  if (listTimer || document.hidden) return;
  listDirty = false;
  renderList();
  listTimer = setTimeout(() => { listTimer = null; if (listDirty) scheduleList(); }, 200);
}
document.addEventListener("visibilitychange", () => { if (!document.hidden && listDirty) scheduleList(); });

function connect() {
  const es = new EventSource("/api/stream");
  const live = $("#live");
  let missed = false;
  es.onopen = async () => {
    live.className = "live on";
    live.textContent = "live";
    // Changes while the stream was down were not pushed: read everything again.
    if (missed) { missed = false; await loadReleases(); afterChange(true, true, null); }
  };
  es.onerror = () => { missed = true; live.className = "live off"; live.textContent = "reconnecting"; };
  es.addEventListener("changes", async (ev) => {
    timings.lastEvent = Date.now();
    const c = JSON.parse(ev.data);
    if (c.reset) { await loadReleases(); state.errors = c.errors || []; return afterChange(true, true, null); }
    for (const r of c.releases || []) state.rows.set(`${r.namespace}/${r.name}`, r);
    for (const k of c.gone || []) state.rows.delete(k);
    const touched = new Set([...(c.releases || []).map((r) => `${r.namespace}/${r.name}`), ...(c.events || [])]);
    afterChange(c.environments, c.stacks, touched);
  });
}

function afterChange(envs, stacks, touched) {
  const h = location.hash || "#/";
  if (h === "#/" || h === "#") scheduleList();
  else if (state.page && (!touched || touched.has(`${state.page.ns}/${state.page.name}`))) refreshRelease(state.page.ns, state.page.name);
  else if (h === "#/environments" && envs) showEnvironments();
  else if (h === "#/stacks" && stacks) showStacks();
  else if (h === "#/pipeline" && touched && touched.size) showPipeline();
}

window.addEventListener("hashchange", () => { notice(""); route(); });
connect();
loadReleases().then(route).catch((e) => notice(String(e.message || e), "error"));
