// The lockgate dashboard: a plain ES module, no build step. Every value from the gateway is
// put in the page as text (never as HTML): request ids and model names come from clients.
// Live views refresh every 5 s; /ui/?refresh_s=N picks another pace (at least 1 s).
const REFRESH_MS = 1000 * Math.max(1, Number(new URLSearchParams(location.search).get("refresh_s")) || 5);
const PALETTE = ["#3358d4", "#e0732b", "#2a8a4a", "#c5303a", "#8a4fd0", "#1b9aaa", "#9a9a9a"];
const $ = (id) => document.getElementById(id);

let csrf = null;
let timer = null;
let names = { keys: {}, teams: {} };
let logCursors = [null];  // the cursor of each page shown so far; the last is the current page
const charts = {};

// --- talking to the gateway ---------------------------------------------------------------

class SignedOut extends Error {}

async function api(path, options = {}) {
  const headers = { "x-csrf-token": csrf || "", ...(options.body ? { "content-type": "application/json" } : {}) };
  const response = await fetch(path, { ...options, headers, credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) { showLogin(); throw new SignedOut(); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error?.message || `HTTP ${response.status}`);
  return body;
}

async function boot() {
  const response = await fetch("/ui/api/session", { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) { showLogin(); return; }
  csrf = (await response.json()).csrf_token;
  $("login").hidden = true;
  $("app").hidden = false;
  await loadNames();
  detectExperiments();
  route();
}

function showLogin() {
  clearInterval(timer);
  csrf = null;
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-key").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  const body = new URLSearchParams({ key: $("login-key").value });
  const response = await fetch("/ui/login", { method: "POST", body, credentials: "same-origin" });
  if (response.ok) { $("login-key").value = ""; await boot(); return; }
  const answer = await response.json().catch(() => ({}));
  $("login-error").textContent = answer.error?.message || `sign-in failed (HTTP ${response.status})`;
});

$("logout").addEventListener("click", async () => {
  await api("/ui/api/logout", { method: "POST" }).catch(() => {});
  showLogin();
});

// --- views --------------------------------------------------------------------------------

const VIEWS = { overview: refreshOverview, logs: refreshLogs, keys: refreshKeys, health: refreshHealth,
                experiments: refreshExperiments, request: showRequest };
const LIVE = new Set(["overview", "health", "experiments"]);  // these refresh by themselves

function route() {
  const [view, arg] = (location.hash.slice(1) || "overview").split("/");
  const name = VIEWS[view] ? view : "overview";
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === name);
  clearInterval(timer);
  const run = () => VIEWS[name](arg && decodeURIComponent(arg)).then(stamp).catch(report);
  run();
  if (LIVE.has(name)) timer = setInterval(run, REFRESH_MS);
}

window.addEventListener("hashchange", route);
$("range").addEventListener("change", route);
$("group-by").addEventListener("change", route);

function stamp() { $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`; }
function report(error) { if (!(error instanceof SignedOut)) $("updated").textContent = `error: ${error.message}`; }
const range = () => $("range").value;

async function loadNames() {
  const [keys, teams] = await Promise.all([api("/ui/api/admin/keys"), api("/ui/api/admin/teams")]);
  names = { keys: Object.fromEntries(keys.data.map((k) => [k.id, k.name])),
            teams: Object.fromEntries(teams.data.map((t) => [t.id, t.name])) };
  const select = $("f-key");
  const chosen = select.value;
  select.replaceChildren(option("", "any"), ...keys.data.map((k) => option(k.id, `${k.name} (${k.id})`)));
  select.value = chosen;
}

function label(by, value) {
  if (by === "key_id") return names.keys[value] || value;
  if (by === "team_id") return names.teams[value] || value;
  return value;
}

// Overview: totals, live traffic and the hourly charts.
async function refreshOverview() {
  const by = $("group-by").value;
  const [overview, live, series] = await Promise.all([
    api(`/ui/api/overview?range=${range()}`), api("/ui/api/live"),
    api(`/ui/api/series?range=${range()}&by=${by}`)]);
  $("stat-requests").textContent = overview.requests.toLocaleString();
  $("stat-errors").textContent = overview.errors.toLocaleString();
  $("stat-error-rate").textContent = percent(overview.error_rate);
  $("stat-cost").textContent = `$${overview.cost_usd.toFixed(4)}`;
  $("stat-tokens").textContent = overview.tokens.toLocaleString();
  for (const q of ["p50", "p95", "p99"]) $(`stat-${q}`).textContent = ms(overview.latency_ms[q]);
  $("live-sampled").hidden = !live.sampled;
  const perSecond = (counts) => counts.map((n) => n / live.step_s);
  draw("live", [live.t, perSecond(live.requests), perSecond(live.errors)], ["requests/s", "errors/s"]);
  const groups = series.groups;
  for (const note of document.querySelectorAll(".step-note")) note.textContent = series.step_s > 3600 ? "per day" : "per hour";
  const names_ = groups.map((g) => label(by, g.name));
  draw("requests", [series.t, ...groups.map((g) => g.requests)], names_);
  draw("latency", [series.t, series.total.p50, series.total.p95, series.total.p99], ["p50", "p95", "p99"]);
  draw("errors", [series.t, ...groups.map((g) => g.requests.map((r, i) => (r ? g.errors[i] / r : null)))],
       names_, (u, v) => v.map((x) => percent(x)));
  draw("cost", [series.t, ...groups.map((g) => g.cost_usd)], names_);
  draw("p95", [series.t, ...groups.map((g) => g.p95)], names_);
}

function draw(name, data, labels, values) {
  const element = $(`chart-${name}`);
  const signature = labels.join("\u0000");
  const existing = charts[name];
  if (existing && existing.signature === signature) { existing.plot.setData(data); return; }
  if (existing) existing.plot.destroy();
  const series = [{}, ...labels.map((l, i) => ({ label: l, stroke: PALETTE[i % PALETTE.length], width: 2,
                                                 spanGaps: false }))];
  const axes = [{}, values ? { values, size: 60 } : { size: 60 }];
  const plot = new uPlot({ width: Math.max(300, element.clientWidth - 4), height: 220, series, axes,
                           scales: { x: { time: true } } }, data, element);
  charts[name] = { plot, signature };
}

window.addEventListener("resize", () => {
  for (const [name, chart] of Object.entries(charts)) {
    chart.plot.setSize({ width: Math.max(300, $(`chart-${name}`).clientWidth - 4), height: 220 });
  }
});

// Requests: the log, newest first, page by page with the cursor the API gives.
function logQuery() {
  const form = new FormData($("log-filters"));
  const params = new URLSearchParams({ limit: "50" });
  for (const [k, v] of form) {
    if (!v) continue;
    params.set(k, k === "since" || k === "until" ? String(Date.parse(`${v}Z`) / 1000) : v);
  }
  const cursor = logCursors[logCursors.length - 1];
  if (cursor) params.set("cursor", cursor);
  return params;
}

async function refreshLogs() {
  const page = await api(`/ui/api/logs?${logQuery()}`);
  $("log-rows").replaceChildren(...page.data.map(logRow));
  $("log-older").disabled = !page.next_cursor;
  $("log-older").dataset.cursor = page.next_cursor || "";
  $("log-note").textContent = `page ${logCursors.length}` + (page.data.length ? "" : " — no requests match")
    + (page.scanned_to ? ` (searched back to ${time(page.scanned_to)}; "Older" searches on)` : "");
}

function logRow(r) {
  const link = element("a", r.request_id);
  link.href = `#request/${encodeURIComponent(r.request_id)}`;
  return element("tr", [cell(time(r.ts)), element("td", [link]), cell(names.keys[r.key_id] || r.key_id || "–"),
    cell(r.model), cell(r.route), statusCell(r.status), cell(r.prompt_tokens + r.completion_tokens, true),
    cell(r.cost_usd.toFixed(6), true), cell(ms(r.latency_ms), true)]);
}

$("log-filters").addEventListener("submit", (event) => { event.preventDefault(); logCursors = [null]; refreshLogs().catch(report); });
$("log-newest").addEventListener("click", () => { logCursors = [null]; refreshLogs().catch(report); });
$("log-older").addEventListener("click", () => { logCursors.push($("log-older").dataset.cursor); refreshLogs().catch(report); });
$("find-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = $("find-id").value.trim();
  if (id) location.hash = `#request/${encodeURIComponent(id)}`;
});

async function showRequest(id) {
  $("detail-id").textContent = id;
  const answer = await api(`/ui/api/requests/${encodeURIComponent(id)}`);
  if (!answer.data.length) { $("detail").replaceChildren(element("p", "No request has this id.")); return; }
  $("detail").replaceChildren(...answer.data.map((r) => {
    const fields = { ...r, key: names.keys[r.key_id] ? `${names.keys[r.key_id]} (${r.key_id})` : r.key_id,
                     team: names.teams[r.team_id] || r.team_id };
    return element("dl", Object.entries(fields).flatMap(([k, v]) => [element("dt", k), element("dd", show(v))]),
                   "detail");
  }));
}

// Keys: create (the secret is shown once), change limits, revoke.
async function refreshKeys() {
  await loadNames();
  const keys = await api("/ui/api/admin/keys");
  $("key-rows").replaceChildren(...keys.data.map(keyRow));
}

function keyRow(k) {
  const stored = k.source !== "config" && k.status === "active";
  const actions = element("td", stored ? [button("Limits", () => editLimits(k), "plain"),
                                          button("Revoke", () => revoke(k), "danger")] : []);
  return element("tr", [cell(k.name), cell(k.id), cell(k.key_prefix), statusText(k.status),
    cell(names.teams[k.team_id] || k.team_id || "–"), cell((k.models || ["all"]).join(", ")),
    cell(k.rpm ?? "–", true), cell(k.tpm ?? "–", true), cell(k.budget_usd ?? "–", true), actions]);
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("key-error").textContent = "";
  const body = { name: $("k-name").value.trim() };
  if ($("k-team").value.trim()) body.team = $("k-team").value.trim();
  if ($("k-models").value.trim()) body.models = $("k-models").value.split(",").map((m) => m.trim()).filter(Boolean);
  for (const [field, id] of [["rpm", "k-rpm"], ["tpm", "k-tpm"], ["budget_usd", "k-budget"]]) {
    if ($(id).value) body[field] = Number($(id).value);
  }
  try {
    const created = await api("/ui/api/admin/keys", { method: "POST", body: JSON.stringify(body) });
    $("key-secret-value").textContent = created.key;
    $("key-secret").hidden = false;
    $("key-form").reset();
    await refreshKeys();
  } catch (error) { $("key-error").textContent = error.message; }
});

async function editLimits(k) {
  const answer = prompt(`Limits of ${k.name}: rpm, tpm, budget USD (empty: none)`,
                        [k.rpm ?? "", k.tpm ?? "", k.budget_usd ?? ""].join(", "));
  if (answer === null) return;
  const [rpm, tpm, budget] = answer.split(",").map((v) => v.trim());
  const number = (v) => (v ? Number(v) : null);
  try {
    await api(`/ui/api/admin/keys/${encodeURIComponent(k.id)}`, { method: "PATCH",
      body: JSON.stringify({ rpm: number(rpm), tpm: number(tpm), budget_usd: number(budget) }) });
    await refreshKeys();
  } catch (error) { $("key-error").textContent = error.message; }
}

async function revoke(k) {
  if (!confirm(`Revoke ${k.name}? Every request with it is refused from now on.`)) return;
  await api(`/ui/api/admin/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
  await refreshKeys();
}

// Health: per route error rate and latency, and deployments at their quota.
async function refreshHealth() {
  const answer = await api(`/ui/api/health?range=${range() === "1h" ? "1h" : "24h"}`);
  $("health-rows").replaceChildren(...answer.data.map((h) => element("tr", [
    cell(h.route), cell(h.requests, true), cell(percent(h.error_rate), true), cell(h.upstream_429, true),
    cell(ms(h.latency_ms.p50), true), cell(ms(h.latency_ms.p95), true),
    cell(`${h.last_minute.requests} req, ${h.last_minute.tokens} tok`, true),
    cell(h.rpm || h.tpm ? `${h.rpm ?? "–"} rpm / ${h.tpm ?? "–"} tpm` : "not set"),
    h.at_quota ? element("td", "at quota", "status-bad")
      : element("td", h.error_rate > 0.05 ? "errors" : "ok", h.error_rate > 0.05 ? "status-bad" : "status-ok")])));
}

// Experiments: shown only where the gateway has the experiments API.
async function detectExperiments() {
  try {
    await api("/ui/api/admin/experiments");
    $("nav-experiments").hidden = false;
  } catch { $("nav-experiments").hidden = true; }
}

async function refreshExperiments() {
  const list = await api("/ui/api/admin/experiments");
  const cards = await Promise.all(list.data.map(async (e) => {
    const detail = await api(`/ui/api/admin/experiments/${encodeURIComponent(e.name)}`).catch(() => ({}));
    const card = element("div", [element("h2", `${e.name}${e.model ? ` — ${e.model}` : ""}`)], "card");
    const summary = Object.entries(e).filter(([k, v]) => k !== "name" && typeof v !== "object");
    const when = (k, v) => (k.endsWith("_at") && typeof v === "number" ? time(new Date(v * 1000).toISOString()) : v);
    card.append(element("p", summary.map(([k, v]) => `${k}: ${when(k, v)}`).join(" · "), "muted"));
    if (Array.isArray(detail.variants)) {
      card.append(element("table", [element("tr", ["variant", "requests", "errors", "error rate", "p50", "p95",
        "cost", "feedback"].map((h) => element("th", h))), ...detail.variants.map((v) => element("tr", [
        cell(v.name), cell(v.requests, true), cell(v.errors, true), cell(show(v.error_rate)),
        cell(show(v.latency_ms?.p50)), cell(show(v.latency_ms?.p95)), cell(show(v.cost_usd)),
        cell(show(v.feedback?.mean))]))], "rows"));
    }
    for (const [variant, metrics] of Object.entries(detail.verdicts || {})) {
      const text = Object.entries(metrics).map(([m, r]) => `${m}: ${r.verdict}`).join(" · ");
      card.append(element("p", `${variant} vs ${detail.control}: ${text}`));
    }
    if (detail.method) card.append(element("p", `method: ${detail.method}, alpha ${detail.alpha}`, "muted"));
    return card;
  }));
  $("experiments").replaceChildren(...(cards.length ? cards : [element("p", "No experiments are configured.")]));
}

// --- small helpers ------------------------------------------------------------------------

function element(tag, content, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (Array.isArray(content)) node.append(...content); else if (content !== undefined) node.textContent = String(content);
  return node;
}
const cell = (value, numeric) => element("td", value ?? "–", numeric ? "num" : undefined);
const option = (value, text) => { const o = element("option", text); o.value = value; return o; };
function button(text, onClick, className) { const b = element("button", text, className); b.type = "button"; b.addEventListener("click", onClick); return b; }
const statusCell = (s) => element("td", s, s >= 400 ? "status-bad" : "status-ok");
const statusText = (s) => element("td", s, s === "active" ? "status-ok" : "status-bad");
const percent = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(x < 0.01 && x > 0 ? 2 : 1)} %`);
const ms = (x) => (x === null || x === undefined ? "–" : `${Math.round(x)} ms`);
const time = (iso) => (iso ? iso.replace("T", " ").replace("Z", "") : "–");
function show(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "object") return String(value);
  // An estimate with its interval, as the experiments API gives it: {estimate, low, high}.
  if ("estimate" in value || "value" in value) {
    const point = value.estimate ?? value.value;
    if (point === null || point === undefined) return "–";
    const round = (x) => (typeof x === "number" ? Number(x.toPrecision(4)) : x);
    return `${round(point)}${value.low != null ? ` [${round(value.low)}, ${round(value.high)}]` : ""}`;
  }
  return JSON.stringify(value);
}

boot().catch(report);
