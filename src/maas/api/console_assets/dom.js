// Small DOM helpers. Text only: nothing the server sends is ever parsed as HTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
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

export function row(...cells) {
  return el("tr", {}, ...cells.map((cell) => el("td", {}, cell)));
}

// The rows of a table's body, or one row saying there is nothing (a header with no data cell
// under it reads badly).
export function fill(table, rows, columns, nothing = "none") {
  const body = table.tBodies[0];
  if (rows.length) body.replaceChildren(...rows);
  else body.replaceChildren(el("tr", {}, el("td", { colspan: String(columns) }, nothing)));
}

export function say(text, error = false) {
  const line = el("p", error ? { class: "error", role: "alert" } : {}, text);
  $("toast").append(line);
  setTimeout(() => line.remove(), error ? 10000 : 4000);
}

export function split(routes) {
  if (!routes || !routes.length) return "none";
  const total = routes.reduce((sum, r) => sum + r.weight, 0) || 1;
  return routes.map((r) => `${r.version} (${Math.round((100 * r.weight) / total)} %)`).join(" + ");
}

// Redraw `container` with `draw` without losing the reader's place: a control that had the
// focus inside it gets it back on its successor (same kind, same name).
export function keepingFocus(container, draw) {
  const active = document.activeElement;
  const held = active && active !== document.body && container.contains(active)
    ? { tag: active.tagName, name: active.textContent, label: active.getAttribute("aria-label") }
    : null;
  draw();
  if (!held) return;
  for (const node of container.querySelectorAll(held.tag)) {
    if (node.textContent === held.name && node.getAttribute("aria-label") === held.label) {
      node.focus();
      return;
    }
  }
}

// --- confirmation: a dialog that names the effect before anything changes ------------------

export function confirmChange(title, effect, fields = []) {
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

export function field(label, control) {
  const id = `field-${label.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  control.id = id;
  return el("div", {}, el("label", { for: id }, label), control);
}

export function versionPicker(versions, exclude) {
  const select = el("select");
  for (const v of versions) {
    if (v.status === "ready" && !exclude.includes(v.version)) {
      select.append(el("option", { value: v.version }, `${v.version}`));
    }
  }
  return select;
}
