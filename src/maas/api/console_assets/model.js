// A model's page: its aliases (promote, canary, roll back, start a rollout), versions (load,
// unload, archive), live traffic per version, rollouts (pause, resume, abort) and the history
// of an alias as a timeline. Each part is redrawn only when what it shows changed.

import { api, get } from "./api.js";
import { CHARTS, chart, figure, legend } from "./charts.js";
import { $, confirmChange, el, field, fill, keepingFocus, row, say, split, versionPicker }
  from "./dom.js";

export const TRAFFIC_QUERY = "minutes=5&step_s=5";

let historyAlias = "production";
let shown = null; // the model the page shows

export async function modelPage(name, act) {
  const base = `/admin/models/${encodeURIComponent(name)}`;
  const model = await get(base);
  const aliases = model.data.aliases.map((a) => a.alias);
  if (shown !== name) {
    shown = name;
    historyAlias = aliases.includes("production") ? "production" : aliases[0] || "production";
  }
  const [rollouts, history, traffic] = await Promise.all([
    get(`${base}/rollouts`).catch((error) => ({ error })),
    get(`${base}/aliases/${encodeURIComponent(historyAlias)}/history?limit=50`)
      .catch((error) => ({ error })),
    get(`${base}/traffic?${TRAFFIC_QUERY}`).catch((error) => ({ error })),
  ]);
  const fresh = $("model").hidden || $("model").dataset.model !== name;
  $("model").dataset.model = name;
  $("model-title").textContent = `Model ${name}`;
  const running = rollouts.data?.rollouts.find((r) => ["running", "paused"].includes(r.state));
  if (fresh || model.changed || rollouts.changed) {
    keepingFocus($("model"), () => {
      aliasRows(model.data, running, act);
      versionRows(model.data, act);
      aliasChoice(aliases);
    });
  }
  if (fresh || rollouts.changed || rollouts.error) rolloutRows(name, rollouts, act);
  if (fresh || history.changed || history.error || $("history").dataset.alias !== historyAlias) {
    historyItems(history);
    $("history").dataset.alias = historyAlias;
  }
  if (fresh || traffic.changed || traffic.error) trafficPart(traffic);
}

function aliasChoice(aliases) {
  const select = $("history-alias");
  select.replaceChildren(...aliases.map((a) => el("option", { value: a }, a)));
  if (!aliases.includes(historyAlias)) select.append(el("option", { value: historyAlias }, historyAlias));
  select.value = historyAlias;
}

export function chooseHistoryAlias(alias) {
  historyAlias = alias;
}

function aliasRows(model, running, act) {
  const base = `/admin/models/${encodeURIComponent(model.name)}`;
  const rows = model.aliases.map((a) => {
    const now = split(a.routes);
    const where = `${a.alias} of ${model.name}`;
    const promote = async () => {
      const pick = versionPicker(model.versions, []);
      const effect = () => `${where}: ${now} → ${pick.value} (100 %)`;
      if (!(await confirmChange(`Promote ${where}`, effect, [field("Version", pick)]))) return;
      await act(`promote ${where}`, () =>
        api("POST", `${base}/promote`, { alias: a.alias, version: Number(pick.value) }));
    };
    const stable = a.routes.length === 1 ? a.routes[0].version : null;
    const canary = async () => {
      const pick = versionPicker(model.versions, [stable]);
      const weight = el("input", { type: "number", min: "1", max: "99", value: "10" });
      const effect = () =>
        `${where}: ${now} → ${stable} (${100 - Number(weight.value)} %) + ` +
        `${pick.value} (${Number(weight.value)} %)`;
      const fields = [field("Canary version", pick), field("Canary percent", weight)];
      if (!(await confirmChange(`Canary on ${where}`, effect, fields))) return;
      const w = Number(weight.value);
      await act(`canary on ${where}`, () =>
        api("PUT", `${base}/aliases/${encodeURIComponent(a.alias)}`, {
          routes: [{ version: stable, weight: 100 - w }, { version: Number(pick.value), weight: w }],
          expected_current: stable,
        }));
    };
    const rollback = async () => {
      const effect = () => `${where}: ${now} → what it pointed at before its last change`;
      if (!(await confirmChange(`Roll back ${where}`, effect))) return;
      await act(`roll back ${where}`, () => api("POST", `${base}/rollback`, { alias: a.alias }));
    };
    const rollout = () => startRollout(model, a.alias, stable, act);
    const free = !(running && running.alias === a.alias);
    const buttons = el("span", {},
      el("button", { type: "button", onclick: promote }, `Promote ${a.alias}…`),
      stable !== null ? el("button", { type: "button", onclick: canary }, `Canary on ${a.alias}…`)
        : null,
      el("button", { type: "button", onclick: rollback }, `Roll back ${a.alias}…`),
      stable !== null && free
        ? el("button", { type: "button", onclick: rollout }, `Start rollout on ${a.alias}…`) : null);
    const shadow = a.shadow ? `${a.shadow.version} (${a.shadow.percent} %)` : "none";
    return row(a.alias, now, shadow, buttons);
  });
  fill($("aliases-table"), rows, 4, "no alias yet: promote a version to create production");
}

async function startRollout(model, alias, stable, act) {
  const where = `${alias} of ${model.name}`;
  const pick = versionPicker(model.versions, [stable]);
  const number = (value, attrs = {}) => el("input", { type: "number", value, ...attrs });
  const steps = el("input", { type: "text", value: "10, 50, 100" });
  const interval = number("60", { min: "1" });
  const least = number("100", { min: "0" });
  const errors = number("1", { min: "0", max: "100", step: "0.1" });
  const p99 = number("", { min: "1", placeholder: "no bound" });
  const shadow = number("0", { min: "0" });
  const parsed = () => steps.value.split(",").map((s) => Number(s.trim())).filter((n) => n > 0);
  const effect = () =>
    `${where}: ${stable} (100 %) → ${pick.value || "?"} in steps of ` +
    `${parsed().map((s) => `${s} %`).join(", ")}, each for at least ${interval.value} s and ` +
    `${least.value} requests` +
    (Number(shadow.value) > 0 ? `, after ${shadow.value} s of shadow traffic` : "") +
    `; back to ${stable} (100 %) if its error rate passes ${errors.value} %` +
    (p99.value ? ` or its p99 passes ${p99.value} ms` : "");
  const fields = [field("Candidate version", pick), field("Steps (percent)", steps),
    field("Seconds per step", interval), field("Requests per step", least),
    field("Most errors (percent)", errors), field("Most p99 (ms)", p99),
    field("Shadow seconds first", shadow)];
  if (!(await confirmChange(`Start a rollout on ${where}`, effect, fields))) return;
  const body = {
    alias, candidate: Number(pick.value), steps: parsed(), interval_s: Number(interval.value),
    min_requests: Number(least.value), shadow_s: Number(shadow.value),
    guards: { max_error_rate: Number(errors.value) / 100 },
  };
  if (p99.value) body.guards.max_p99_ms = Number(p99.value);
  await act(`rollout on ${where}`, () =>
    api("POST", `/admin/models/${encodeURIComponent(model.name)}/rollouts`, body));
}

function versionRows(model, act) {
  const base = `/admin/models/${encodeURIComponent(model.name)}/versions`;
  const rows = model.versions.map((v) => {
    const key = `${model.name}@${v.version}`;
    const verb = (label, method, path, effect) =>
      el("button", {
        type: "button",
        onclick: async () => {
          if (!(await confirmChange(`${label} ${key}`, () => effect))) return;
          await act(`${label.toLowerCase()} ${key}`, () => api(method, `${base}/${v.version}${path}`));
        },
      }, `${label} ${v.version}…`);
    const actions = el("span", {},
      ["unloaded", "registered", "failed"].includes(v.status)
        ? verb("Load", "POST", "/load", `${key}: ${v.status} → loading → ready`) : null,
      v.status === "ready"
        ? verb("Unload", "POST", "/unload", `${key}: ready → unloaded (it serves nothing)`) : null,
      v.status !== "archived"
        ? verb("Archive", "DELETE", "", `${key}: ${v.status} → archived, for good`) : null);
    const metrics = Object.entries(v.metrics || {}).map(([k, x]) => `${k} ${x}`).join(", ");
    const parent = v.derived_from ? `${v.derived_from.version} (${v.derived_from.method})` : "";
    return row(v.version, el("span", { class: `status-${v.status}` }, v.status), v.format,
      parent, metrics, v.load_error || "", actions);
  });
  fill($("versions-table"), rows, 7, "no version yet");
}

function rolloutRows(name, rollouts, act) {
  if (rollouts.error) say(`rollouts: ${rollouts.error.message}`, true);
  const base = `/admin/models/${encodeURIComponent(name)}/rollouts`;
  const rows = (rollouts.data?.rollouts || []).slice(0, 10).map((r) => {
    const weights = Object.entries(r.weights || {}).map(([v, w]) => `${v} (${w} %)`).join(" + ");
    const verdicts = r.intervals.map((i) => `${i.weight} %: ${i.verdict}`).join(", ");
    const verb = (verbName, effect) =>
      el("button", {
        type: "button",
        onclick: async () => {
          const what = `${verbName} rollout ${r.id} of ${name}`;
          if (!(await confirmChange(what, () => effect))) return;
          await act(what, () => api("POST", `${base}/${r.id}/${verbName.toLowerCase()}`));
        },
      }, `${verbName} rollout ${r.id}…`);
    const actions = el("span", {},
      r.state === "running" ? verb("Pause", "it holds its weights; no verdicts") : null,
      r.state === "paused" ? verb("Resume", "it goes on at its step, on a fresh window") : null,
      ["running", "paused"].includes(r.state)
        ? verb("Abort", `${r.alias} goes back to ${r.stable} (100 %)`) : null);
    return row(`${r.id}: ${r.stable} → ${r.candidate} on ${r.alias}`,
      r.reason ? `${r.state} (${r.reason})` : r.state, weights || "—", verdicts || "none yet",
      actions);
  });
  keepingFocus($("rollouts-table"), () => fill($("rollouts-table"), rows, 5, "no rollout yet"));
}

function historyItems(history) {
  const list = $("history");
  $("history-title").textContent = `History of ${historyAlias}`;
  if (history.error) {
    const missing = history.error.status === 404;
    if (!missing) say(`history: ${history.error.message}`, true);
    list.replaceChildren(el("li", {}, missing ? `no alias ${historyAlias} yet` : "not available"));
    return;
  }
  const entries = history.data.history;
  list.replaceChildren(...entries.map((h) => {
    const when = new Date(h.at);
    return el("li", {},
      el("time", { datetime: h.at }, when.toLocaleString()),
      el("span", { class: `action action-${h.action}` }, h.action),
      ` by ${h.key || "?"}: ${split(h.from)} → ${split(h.to)}`,
      h.undoes ? ` (undoes change ${h.undoes})` : "");
  }));
  if (!entries.length) list.replaceChildren(el("li", {}, "no change yet"));
}

function trafficPart(traffic) {
  if (traffic.error) {
    $("traffic-note").textContent = `Traffic: ${traffic.error.message}`;
    $("traffic-charts").replaceChildren();
    fill($("traffic-table"), [], 8, "not available");
    return;
  }
  const t = traffic.data;
  $("traffic-note").textContent = `Over the last ${Math.round((t.versions[0]?.points.length || 0) *
    t.step_s / 60)} minutes in steps of ${t.step_s} s, added up over ${t.gateways} gateway ` +
    `process(es); the last step ended ${new Date(t.until).toLocaleTimeString()}.`;
  const rows = t.versions.map((v) => {
    const p = v.points[v.points.length - 1];
    return row(v.version, figure(p.requests_per_s), figure(p.error_rate, " %", 100),
      figure(p.refused_rate, " %", 100), figure(p.p50_ms), figure(p.p99_ms),
      figure(p.mean_batch_size), p.queue_depth);
  });
  fill($("traffic-table"), rows, 8, "no traffic in these minutes");
  $("traffic-charts").replaceChildren(
    ...(t.versions.length ? [legend(t), ...CHARTS.map((spec) => chart(spec, t))] : []));
}
