// The live plot in the browser (anywidget ES module, no build step).
// The model's "lines" ({label: {x: [...], y: [...]}}) is the whole picture when a view
// opens; afterwards the kernel sends only new points as custom messages
// ({append: {label: points}, replace: {label: points}}), merged here into "lines".
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const SVG = "http://www.w3.org/2000/svg";
const W = 640, H = 260, LEFT = 56, RIGHT = 12, TOP = 10, BOTTOM = 34;

function merge(lines, change, keep) {
  const out = { ...lines };
  for (const [label, points] of Object.entries(change.replace || {})) out[label] = points;
  for (const [label, points] of Object.entries(change.append || {})) {
    const old = out[label] || { x: [], y: [] };
    out[label] = { x: old.x.concat(points.x).slice(-keep), y: old.y.concat(points.y).slice(-keep) };
  }
  return out;
}

// About `count` round values spanning [low, high]: 1, 2 or 5 times a power of ten.
function ticks(low, high, count = 5) {
  if (!(high > low)) return [low];
  const raw = (high - low) / count, power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) out.push(v);
  return out;
}

const fmt = (v) => Number(v.toPrecision(4)).toString();

function node(tag, attrs = {}, parent = null) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function draw(svg, legend, lines, state) {
  svg.replaceChildren();
  const labels = Object.keys(lines).filter((l) => lines[l].y.length);
  const xs = labels.flatMap((l) => lines[l].x), ys = labels.flatMap((l) => lines[l].y);
  if (!ys.length) {
    node("text", { x: LEFT, y: H / 2 }, svg).textContent = "waiting for values…";
    legend.replaceChildren();
    return;
  }
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  if (x0 === x1) x1 = x0 + 1;
  const pw = W - LEFT - RIGHT, ph = H - TOP - BOTTOM;
  const px = (x) => LEFT + pw * (x - x0) / (x1 - x0);
  const py = (y) => TOP + ph * (1 - (y - y0) / (y1 - y0));
  for (const y of ticks(y0, y1)) {
    node("line", { x1: LEFT - 4, x2: LEFT + pw, y1: py(y), y2: py(y), stroke: "#eee" }, svg);
    node("text", { x: LEFT - 6, y: py(y) + 4, "text-anchor": "end" }, svg).textContent = fmt(y);
  }
  for (const x of ticks(x0, x1)) {
    node("line", { x1: px(x), x2: px(x), y1: TOP + ph, y2: TOP + ph + 4, stroke: "#999" }, svg);
    node("text", { x: px(x), y: TOP + ph + 16, "text-anchor": "middle" }, svg).textContent = fmt(x);
  }
  node("text", { x: LEFT + pw / 2, y: H - 3, "text-anchor": "middle", fill: "#555" }, svg)
    .textContent = "published value number";
  node("rect", { x: LEFT, y: TOP, width: pw, height: ph, fill: "none", stroke: "#999" }, svg);
  legend.replaceChildren();
  labels.forEach((label, n) => {
    const colour = COLOURS[n % COLOURS.length], { x, y } = lines[label];
    const points = x.map((xi, i) => `${px(xi).toFixed(1)},${py(y[i]).toFixed(1)}`).join(" ");
    node("polyline", { points, fill: "none", stroke: colour, "stroke-width": 1.5,
      class: "hpc-line", "data-label": label }, svg);
    const item = document.createElement("span"), swatch = document.createElement("span");
    item.className = "hpc-legend-item";
    item.style.marginRight = "10px";
    swatch.style.color = colour;
    swatch.textContent = "━ ";
    item.append(swatch, `rank ${label}`);  // text, never markup: keys come from user code
    legend.appendChild(item);
  });
  state.hit = { labels, lines, px, py };
}

function nearest(hit, mx, my) {
  let best = null;
  for (const label of hit.labels) {
    const { x, y } = hit.lines[label];
    for (let i = 0; i < x.length; i++) {
      const d = (hit.px(x[i]) - mx) ** 2 + (hit.py(y[i]) - my) ** 2;
      if (!best || d < best.d) best = { d, label, x: x[i], y: y[i] };
    }
  }
  return best;
}

function initialize({ model }) {
  model.on("msg:custom", (change) => {
    model.set("lines", merge(model.get("lines"), change, model.get("keep")));
  });
}

function render({ model, el }) {
  el.classList.add("hpc-liveplot");
  el.style.fontFamily = "sans-serif";
  el.style.fontSize = "11px";
  el.style.position = "relative";
  const title = document.createElement("div");
  title.style.fontWeight = "bold";
  title.textContent = model.get("published");
  const svg = node("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  const legend = document.createElement("div");
  legend.className = "hpc-legend";
  const tip = document.createElement("div");
  tip.className = "hpc-tip";
  Object.assign(tip.style, { position: "absolute", display: "none", background: "#fff",
    border: "1px solid #999", padding: "2px 4px", pointerEvents: "none" });
  el.append(title, svg, legend, tip);
  const state = { hit: null };
  let queued = false;
  const redraw = () => {
    if (queued) return;
    queued = true;  // at most one drawing per frame, however fast points come
    requestAnimationFrame(() => { queued = false; draw(svg, legend, model.get("lines"), state); });
  };
  draw(svg, legend, model.get("lines"), state);
  model.on("change:lines", redraw);
  svg.addEventListener("mousemove", (event) => {
    const box = svg.getBoundingClientRect();
    const near = state.hit && nearest(state.hit, event.clientX - box.left, event.clientY - box.top);
    if (!near || near.d > 400) { tip.style.display = "none"; return; }
    tip.textContent = `rank ${near.label}: #${fmt(near.x)} = ${fmt(near.y)}`;
    Object.assign(tip.style, { display: "block", left: `${event.clientX - el.getBoundingClientRect().left + 12}px`,
      top: `${event.clientY - el.getBoundingClientRect().top + 12}px` });
  });
  svg.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  return () => model.off("change:lines", redraw);
}

export default { initialize, render };
