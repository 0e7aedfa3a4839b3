// maas console: the admin API of this gateway, in a page. No framework, no build step, no
// network beyond this gateway. The admin key lives in this tab's session storage and goes out
// only as the bearer header of admin calls. Every change asks for a confirmation that names
// its effect, and a refusal shows the server's own message. While the tab is visible the page
// polls every POLL_MS; each read revalidates (ETag), and a part is redrawn only when what it
// shows changed.

import { KEY, api, forget, get } from "./api.js";
import { $, confirmChange, el, field, fill, keepingFocus, row, say, split } from "./dom.js";
import { chooseHistoryAlias, modelPage } from "./model.js";

const POLL_MS = 2000;
const SECTIONS = ["login", "models", "model", "cluster", "keys", "events"];

let timer = null;
let busy = false; // a refresh is on its way
let again = false; // and another was asked for meanwhile

async function act(what, call) {
  try {
    await call();
    say(`${what}: done`);
  } catch (error) {
    say(`${what}: ${error.message}`, true);
  }
  await refresh();
}

function showOnly(id) {
  for (const section of SECTIONS) $(section).hidden = section !== id;
}

// Draw a page when what it shows changed, when it was not on screen, or when it shows
// something else now (`what`: another filter).
function redraw(section, reads, draw, what = "") {
  const node = $(section);
  if (node.hidden || node.dataset.drawn !== what || reads.some((read) => read.changed)) {
    keepingFocus(node, draw);
    node.dataset.drawn = what;
  }
  showOnly(section);
}

// --- pages ----------------------------------------------------------------------------------

async function modelsPage() {
  const read = await get("/admin/models");
  redraw("models", [read], () => {
    const rows = read.data.models.map((m) =>
      row(
        el("a", { href: `#/models/${encodeURIComponent(m.name)}` }, m.name),
        m.aliases.map((a) => `${a.alias}: ${split(a.routes)}`).join("; ") || "none",
        m.versions.map((v) => `${v.version} ${v.status}`).join(", ") || "none",
      ),
    );
    fill($("models-table"), rows, 3, "no model yet");
  });
}

async function clusterPage() {
  const [workers, gateways] = await Promise.all([get("/admin/workers"), get("/admin/gateways")]);
  const mib = (bytes) =>
    (bytes === null || bytes === undefined ? "—" : `${Math.round(bytes / 2 ** 20)} MiB`);
  redraw("cluster", [workers, gateways], () => {
    fill($("workers-table"), workers.data.workers.map((w) =>
      row(w.id, w.healthy ? "healthy" : `unhealthy${w.reason ? `: ${w.reason}` : ""}`,
        w.device || "—", mib(w.memory_free_bytes), w.queue_depth,
        w.versions.join(", ") || "none")), 6, "no worker");
    fill($("gateways-table"), gateways.data.gateways.map((g) =>
      row(g.id, g.generation, g.last_seen, g.leader ? "yes" : "no", g.rollouts ? "yes" : "no")),
    5, "no gateway");
  });
}

async function keysPage() {
  const read = await get("/admin/keys");
  redraw("keys", [read], () => {
    fill($("keys-table"), read.data.keys.map((k) => {
      const revoke = async () => {
        const effect = () => `key ${k.name} (id ${k.id}) stops working on every gateway`;
        if (!(await confirmChange(`Revoke key ${k.name}`, effect))) return;
        await act(`revoke key ${k.name}`, () => api("DELETE", `/admin/keys/${k.id}`));
      };
      return row(`${k.name} (id ${k.id})`, k.scopes.join(", "),
        (k.models || ["every model"]).join(", "), k.expires_at || "never", k.revoked_at || "no",
        k.revoked_at ? null : el("button", { type: "button", onclick: revoke }, `Revoke ${k.name}…`));
    }), 6, "no key");
  });
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
  const read = await get(`/admin/events?${query}`);
  redraw("events", [read], () => {
    fill($("events-table"), read.data.events.map((e) =>
      row(e.at, e.key || "—", e.action, e.target,
        e.after === null || e.after === undefined ? "" : JSON.stringify(e.after).slice(0, 160))),
    5, "nothing matches");
  }, String(query));
}

// --- the page's life ------------------------------------------------------------------------

async function show() {
  const [, page, name] = (location.hash || "#/models").split("/");
  if (page === "models" && name) {
    await modelPage(decodeURIComponent(name), act);
    showOnly("model");
  } else if (page === "cluster") await clusterPage();
  else if (page === "keys") await keysPage();
  else if (page === "events") await eventsPage();
  else await modelsPage();
}

async function refresh() {
  if (!sessionStorage.getItem(KEY)) {
    showOnly("login");
    $("signout").hidden = true;
    $("who").textContent = "";
    return;
  }
  $("signout").hidden = false;
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  try {
    do {
      again = false;
      await show();
    } while (again);
  } catch (error) {
    if (error.status === 401) {
      sessionStorage.removeItem(KEY);
      forget();
      $("login-error").textContent = error.message;
      showOnly("login");
    } else {
      say(error.message, true);
    }
  } finally {
    busy = false;
  }
}

// The poll: only while the tab is visible, and not while a confirmation is open.
function poll() {
  clearInterval(timer);
  timer = null;
  if (document.visibilityState === "visible") {
    timer = setInterval(() => { if (!$("confirm").open) refresh(); }, POLL_MS);
  }
}

async function signIn(event) {
  event.preventDefault();
  const key = $("key").value.trim();
  $("key").value = "";
  sessionStorage.setItem(KEY, key);
  forget();
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
  forget();
  location.hash = "#/models";
  refresh();
}

$("login-form").addEventListener("submit", signIn);
$("signout").addEventListener("click", signOut);
$("new-key").addEventListener("click", newKey);
$("events-filter").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
$("history-alias").addEventListener("change", (event) => {
  chooseHistoryAlias(event.target.value);
  refresh();
});
window.addEventListener("hashchange", refresh);
document.addEventListener("visibilitychange", () => { poll(); if (!document.hidden) refresh(); });
if (sessionStorage.getItem(KEY)) $("who").textContent = "signed in";
refresh();
poll();
