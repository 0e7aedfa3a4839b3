// Line charts of a model's traffic per version (GET /admin/models/{name}/traffic): drawn as
// SVG here, no library. Each chart is an image with a text alternative that reads its latest
// values; the table beside the charts holds the same latest figures as data.

import { el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
// Okabe and Ito's palette: told apart with every common colour blindness.
const COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
const W = 360;
const H = 150;
const PAD = { left: 46, right: 8, top: 10, bottom: 22 };

export const CHARTS = [
  { title: "Requests per second", pick: [["requests_per_s", ""]], unit: "/s" },
  { title: "Error rate (5xx)", pick: [["error_rate", ""]], unit: "%", scale: 100 },
  { title: "Latency p50 and p99", pick: [["p99_ms", "p99"], ["p50_ms", "p50"]], unit: " ms" },
  { title: "Mean batch size", pick: [["mean_batch_size", ""]], unit: "" },
  { title: "Queue depth", pick: [["queue_depth", ""]], unit: "" },
];

export function colour(index) {
  return COLOURS[index % COLOURS.length];
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function nice(max) {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 2.5, 5, 10]) if (max <= step * power) return step * power;
  return 10 * power;
}

export function figure(value, unit = "", scale = 1) {
  if (value === null || value === undefined) return "—";
  const scaled = value * scale;
  const digits = Math.abs(scaled) >= 100 ? 0 : Math.abs(scaled) >= 10 ? 1 : 2;
  return `${scaled.toFixed(digits)}${unit}`;
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// One chart: a line per (version, picked field); null values leave a gap.
export function chart(spec, traffic) {
  const scale = spec.scale || 1;
  const lines = [];
  traffic.versions.forEach((v, index) => {
    for (const [key, label] of spec.pick) {
      lines.push({
        version: v.version,
        label: label ? `${v.version} ${label}` : `${v.version}`,
        dashed: label === "p50",
        colour: colour(index),
        values: v.points.map((p) => (p[key] === null ? null : p[key] * scale)),
      });
    }
  });
  const points = traffic.versions[0]?.points || [];
  const all = lines.flatMap((l) => l.values).filter((x) => x !== null);
  const top = nice(Math.max(0, ...all));
  const x = (i) => PAD.left + (points.length > 1 ? (i * (W - PAD.left - PAD.right)) / (points.length - 1) : 0);
  const y = (value) => H - PAD.bottom - (value / top) * (H - PAD.top - PAD.bottom);
  const summary = lines.map((l) => {
    const last = l.values[l.values.length - 1];
    return `${l.label}: ${figure(last === null ? null : last, spec.unit)}`;
  });
  const image = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart",
    "aria-label": `${spec.title}, last ${Math.round((points.length * traffic.step_s) / 60)} ` +
      `minutes, by version; now ${summary.join(", ") || "no traffic"}`,
  });
  for (const value of [0, top / 2, top]) {
    image.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(value), y2: y(value),
      class: "grid" }));
    image.append(svg("text", { x: PAD.left - 4, y: y(value) + 4, "text-anchor": "end",
      class: "tick" }, figure(value, "")));
  }
  if (points.length) {
    image.append(svg("text", { x: PAD.left, y: H - 6, class: "tick" }, clock(points[0].at)));
    image.append(svg("text", { x: W - PAD.right, y: H - 6, "text-anchor": "end", class: "tick" },
      "now"));
  }
  for (const line of lines) {
    let d = "";
    let pen = "M";
    line.values.forEach((value, i) => {
      if (value === null) { pen = "M"; return; }
      d += `${pen}${x(i).toFixed(1)},${y(value).toFixed(1)} `;
      pen = "L";
    });
    if (d) {
      image.append(svg("path", { d, fill: "none", stroke: line.colour, "stroke-width": 2,
        "stroke-dasharray": line.dashed ? "4 3" : "none", "data-version": line.version }));
    }
    line.values.forEach((value, i) => { // a point with no neighbour draws no line: a dot
      const alone = value !== null && (line.values[i - 1] ?? null) === null &&
        (line.values[i + 1] ?? null) === null;
      if (alone) {
        image.append(svg("circle", { cx: x(i).toFixed(1), cy: y(value).toFixed(1), r: 2.5,
          fill: line.colour }));
      }
    });
  }
  return el("figure", { class: "chart-box" }, el("figcaption", {}, spec.title), image);
}

export function legend(traffic) {
  return el("ul", { class: "legend", "aria-label": "Versions in the charts" },
    ...traffic.versions.map((v, index) => {
      const swatch = el("span", { class: "swatch" });
      swatch.style.backgroundColor = colour(index); // CSSOM: allowed by the page's CSP
      return el("li", {}, swatch, `version ${v.version}`);
    }),
    traffic.versions.length ? el("li", {}, "p50 dashed, p99 solid") : null);
}
