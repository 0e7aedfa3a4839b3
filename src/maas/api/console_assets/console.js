// maas console: the admin API of this gateway, in a page. No framework, no build step, no
// network beyond this gateway. The admin key lives in this tab's session storage and goes out
// only as the bearer header of admin calls. Every change asks for a confirmation that names
// its effect, and a refusal shows the server's own message.

const KEY = "maas-console-key";
const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);

let timer = null;

// --- the admin API -------------------------------------------------------------------------

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await answer.text();
  const data = text ? JSON.parse(text) : {};
  if (!answer.ok) {
    const error = new Error(data.error?.message || `${answer.status} ${answer.statusText}`);
    error.status = answer.status;
    throw error;
  }
  return data;
}

// --- small DOM helpers (text only: nothing the server sends is parsed as HTML) -------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function row(...cells) {
  return el("tr", {}, ...cells.map((cell) => el("td", {}, cell)));
}

function say(text, error = false) {
  const line = el("p", error ? { class: "error", role: "alert" } : {}, text);
  $("toast").append(line);
  setTimeout(() => line.remove(), error ? 10000 : 4000);
}

function traffic(routes) {
  if (!routes || !routes.length) return "none";
  const total = routes.reduce((sum, r) => sum + r.weight, 0) || 1;
  return routes.map((r) => `${r.version} (${Math.round((100 * r.weight) / total)} %)`).join(" + ");
}

// --- confirmation: a dialog that names the effect before anything changes ------------------

function confirmChange(title, effect, fields = []) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-fields").replaceChildren(...fields);
  const show = () => { $("confirm-effect").textContent = effect(); };
  for (const field of fields) field.addEventListener("input", show, true);
  show();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

function field(label, control) {
  const id = `field-${label.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  control.id = id;
  return el("div", {}, el("label", { for: id }, label), control);
}

function versionPicker(versions, exclude) {
  const select = el("select");
  for (const v of versions) {
    if (v.status === "ready" && !exclude.includes(v.version)) {
      select.append(el("option", { value: v.version }, `${v.version}`));
    }
  }
  return select;
}

async function act(what, call) {
  try {
    await call();
    say(`${what}: done`);
  } catch (error) {
    say(`${what}: ${error.message}`, true);
  }
  await refresh();
}

// --- pages ----------------------------------------------------------------------------------

const SECTIONS = ["login", "models", "model", "cluster", "keys", "events"];

function showOnly(id) {
  for (const section of SECTIONS) $(section).hidden = section !== id;
}

async function modelsPage() {
  const { models } = await api("GET", "/admin/models");
  const rows = models.map((m) =>
    row(
      el("a", { href: `#/models/${encodeURIComponent(m.name)}` }, m.name),
      m.aliases.map((a) => `${a.alias}: ${traffic(a.routes)}`).join("; ") || "none",
      m.versions.map((v) => `${v.version} ${v.status}`).join(", ") || "none",
    ),
  );
  $("models-table").tBodies[0].replaceChildren(...rows);
  showOnly("models");
}

async function modelPage(name) {
  const model = await api("GET", `/admin/models/${encodeURIComponent(name)}`);
  $("model-title").textContent = `Model ${model.name}`;
  aliasRows(model);
  versionRows(model);
  showOnly("model");
  await Promise.all([rolloutRows(model), historyItems(model)]);
}

function aliasRows(model) {
  const base = `/admin/models/${encodeURIComponent(model.name)}`;
  const rows = model.aliases.map((a) => {
    const now = traffic(a.routes);
    const where = `${a.alias} of ${model.name}`;
    const promote = async () => {
      const pick = versionPicker(model.versions, []);
      const effect = () => `${where}: ${now} → ${pick.value} (100 %)`;
      if (!(await confirmChange(`Promote ${where}`, effect, [field("Version", pick)]))) return;
      await act(`promote ${where}`, () =>
        api("POST", `${base}/promote`, { alias: a.alias, version: Number(pick.value) }));
    };
    const canary = async () => {
      const stable = a.routes.length === 1 ? a.routes[0].version : null;
      const pick = versionPicker(model.versions, stable === null ? [] : [stable]);
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
    const buttons = el("span", {},
      el("button", { type: "button", onclick: promote }, `Promote ${a.alias}…`),
      a.routes.length === 1
        ? el("button", { type: "button", onclick: canary }, `Canary on ${a.alias}…`) : null,
      el("button", { type: "button", onclick: rollback }, `Roll back ${a.alias}…`));
    const shadow = a.shadow ? `${a.shadow.version} (${a.shadow.percent} %)` : "none";
    return row(a.alias, now, shadow, buttons);
  });
  $("aliases-table").tBodies[0].replaceChildren(...rows);
}

function versionRows(model) {
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
  $("versions-table").tBodies[0].replaceChildren(...rows);
}

async function rolloutRows(model) {
  const base = `/admin/models/${encodeURIComponent(model.name)}/rollouts`;
  let rollouts = [];
  try {
    ({ rollouts } = await api("GET", base));
  } catch (error) {
    say(`rollouts: ${error.message}`, true);
  }
  const rows = rollouts.slice(0, 10).map((r) => {
    const weights = Object.entries(r.weights || {}).map(([v, w]) => `${v} (${w} %)`).join(" + ");
    const verdicts = r.intervals.map((i) => `${i.weight} %: ${i.verdict}`).join(", ");
    const verb = (name, effect) =>
      el("button", {
        type: "button",
        onclick: async () => {
          const what = `${name} rollout ${r.id} of ${model.name}`;
          if (!(await confirmChange(what, () => effect))) return;
          await act(what, () => api("POST", `${base}/${r.id}/${name.toLowerCase()}`));
        },
      }, `${name} rollout ${r.id}…`);
    const actions = el("span", {},
      r.state === "running" ? verb("Pause", "it holds its weights; no verdicts") : null,
      r.state === "paused" ? verb("Resume", "it goes on at its step, on a fresh window") : null,
      ["running", "paused"].includes(r.state)
        ? verb("Abort", `${r.alias} goes back to ${r.stable} (100 %)`) : null);
    return row(`${r.id}: ${r.stable} → ${r.candidate} on ${r.alias}`,
      r.reason ? `${r.state} (${r.reason})` : r.state, weights || "—", verdicts || "none yet",
      actions);
  });
  $("rollouts-table").tBodies[0].replaceChildren(...rows);
}

async function historyItems(model) {
  const path = `/admin/models/${encodeURIComponent(model.name)}/aliases/production/history`;
  let history = [];
  try {
    ({ history } = await api("GET", `${path}?limit=20`));
  } catch (error) {
    if (error.status !== 404) say(`history: ${error.message}`, true);
  }
  $("history").replaceChildren(...history.map((h) =>
    el("li", {}, `${h.at}: ${h.action} by ${h.key || "?"}: ${traffic(h.from)} → ${traffic(h.to)}`)));
}

async function clusterPage() {
  const [{ workers }, { gateways }] = await Promise.all([
    api("GET", "/admin/workers"), api("GET", "/admin/gateways")]);
  const mib = (bytes) => (bytes === null || bytes === undefined ? "—" : `${Math.round(bytes / 2 ** 20)} MiB`);
  $("workers-table").tBodies[0].replaceChildren(...workers.map((w) =>
    row(w.id, w.healthy ? "healthy" : `unhealthy${w.reason ? `: ${w.reason}` : ""}`,
      w.device || "—", mib(w.memory_free_bytes), w.queue_depth, w.versions.join(", ") || "none")));
  $("gateways-table").tBodies[0].replaceChildren(...gateways.map((g) =>
    row(g.id, g.generation, g.last_seen, g.leader ? "yes" : "no", g.rollouts ? "yes" : "no")));
  showOnly("cluster");
}

async function keysPage() {
  const { keys } = await api("GET", "/admin/keys");
  $("keys-table").tBodies[0].replaceChildren(...keys.map((k) => {
    const revoke = async () => {
      const effect = () => `key ${k.name} (id ${k.id}) stops working on every gateway`;
      if (!(await confirmChange(`Revoke key ${k.name}`, effect))) return;
      await act(`revoke key ${k.name}`, () => api("DELETE", `/admin/keys/${k.id}`));
    };
    return row(`${k.name} (id ${k.id})`, k.scopes.join(", "), (k.models || ["every model"]).join(", "),
      k.expires_at || "never", k.revoked_at || "no",
      k.revoked_at ? null : el("button", { type: "button", onclick: revoke }, `Revoke ${k.name}…`));
  }));
  showOnly("keys");
}

async function newKey() {
  const name = el("input", { type: "text", value: "" });
  const scope = el("select", {}, el("option", { value: "infer" }, "infer"),
    el("option", { value: "admin" }, "admin"));
  const models = el("input", { type: "text", placeholder: "every model" });
  const effect = () => `a new ${scope.value} key named "${name.value}" for ` +
    `${models.value.trim() || "every model"}; its secret is shown once`;
  const fields = [field("Key name", name), field("Scope", scope), field("Models", models)];
  if (!(await confirmChange("New key", effect, fields))) return;
  const body = { name: name.value, scopes: [scope.value] };
  const limited = models.value.split(",").map((m) => m.trim()).filter(Boolean);
  if (limited.length) body.models = limited;
  try {
    const created = await api("POST", "/admin/keys", body);
    $("new-secret").textContent =
      `Key ${created.name} created. Its secret, shown only now: ${created.secret}`;
  } catch (error) {
    say(`new key: ${error.message}`, true);
  }
  await refresh();
}

async function eventsPage() {
  const query = new URLSearchParams({ limit: "100" });
  for (const name of ["model", "action"]) {
    const value = $(`events-${name}`).value.trim();
    if (value) query.set(name, value);
  }
  const { events } = await api("GET", `/admin/events?${query}`);
  $("events-table").tBodies[0].replaceChildren(...events.map((e) =>
    row(e.at, e.key || "—", e.action, e.target,
      e.after === null || e.after === undefined ? "" : JSON.stringify(e.after).slice(0, 160))));
  showOnly("events");
}

// --- the page's life ------------------------------------------------------------------------

async function refresh() {
  if (!sessionStorage.getItem(KEY)) {
    showOnly("login");
    $("signout").hidden = true;
    $("who").textContent = "";
    return;
  }
  $("signout").hidden = false;
  const [, page, name] = (location.hash || "#/models").split("/");
  try {
    if (page === "models" && name) await modelPage(decodeURIComponent(name));
    else if (page === "cluster") await clusterPage();
    else if (page === "keys") await keysPage();
    else if (page === "events") await eventsPage();
    else await modelsPage();
  } catch (error) {
    if (error.status === 401) {
      sessionStorage.removeItem(KEY);
      $("login-error").textContent = error.message;
      showOnly("login");
    } else {
      say(error.message, true);
    }
  }
}

function poll() {
  clearInterval(timer);
  timer = null;
  if (document.visibilityState === "visible") timer = setInterval(refresh, POLL_MS);
}

async function signIn(event) {
  event.preventDefault();
  const key = $("key").value.trim();
  $("key").value = "";
  sessionStorage.setItem(KEY, key);
  try {
    await api("GET", "/admin/models");
  } catch (error) {
    sessionStorage.removeItem(KEY);
    $("login-error").textContent = error.message;
    return;
  }
  $("login-error").textContent = "";
  $("who").textContent = "signed in";
  await refresh();
}

function signOut() {
  sessionStorage.removeItem(KEY);
  location.hash = "#/models";
  refresh();
}

$("login-form").addEventListener("submit", signIn);
$("signout").addEventListener("click", signOut);
$("new-key").addEventListener("click", newKey);
$("events-filter").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
window.addEventListener("hashchange", refresh);
document.addEventListener("visibilitychange", () => { poll(); if (!document.hidden) refresh(); });
if (sessionStorage.getItem(KEY)) $("who").textContent = "signed in";
refresh();
poll();
