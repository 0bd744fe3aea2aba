// The page of `maskfocal serve`: count photos with /api/count, draw their heads, let a slider
// move each photo's threshold without asking again, and draw zones and lines on the photos.
"use strict";
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const SPREAD = 0.05;  // the range shown beside a count: the model's threshold +- this
const SHAKY = 0.2;  // a count whose range is wider than this share of it is marked shaky
const models = {};  // name -> {threshold, loaded}
const cards = [];  // one per counted photo: {file, answer, threshold, element, ...}
// what is drawn: zones {name, polygon}, lines {name, points, in}; ground kept from a file
const shapes = { zones: [], lines: [], ground: null };
let drawing = null;  // {kind: "zone" | "line", card, points: [[x, y], ...]}

// --- models ---------------------------------------------------------------------------------
fetch("/healthz").then((r) => r.json()).then((h) => {
  $("status").textContent = `maskfocal ${h.version} · default model ${h.model}`;
}).catch(() => { $("status").textContent = "the server does not answer"; });

fetch("/api/models").then((r) => r.json()).then((listed) => {
  for (const model of listed.models) {
    models[model.name] = model;
    const option = new Option(
      model.threshold === null ? model.name : `${model.name} (threshold ${model.threshold})`,
      model.name, model.name === listed.default, model.name === listed.default);
    $("model").add(option);
  }
  $("model").disabled = false;
}).catch(() => {});

// --- counting -------------------------------------------------------------------------------
const plural = (n) => `${n} ${n === 1 ? "head" : "heads"}`;
const countAbove = (scores, threshold) => scores.filter((s) => s >= threshold - 1e-9).length;
const round2 = (value) => Math.round(value * 100) / 100;

function newCard(file) {
  const element = document.createElement("article");
  element.className = "card";
  element.dataset.file = file.name;
  element.innerHTML = '<div class="count" role="status">counting...</div><div class="name"></div>';
  element.querySelector(".name").textContent = file.name;
  $("results").prepend(element);
  return element;
}

async function countOne(file) {
  const element = newCard(file);
  const model = $("model").value || undefined;
  const query = new URLSearchParams();
  if (model) query.set("model", model);
  const threshold = model && models[model] ? models[model].threshold : null;
  if (threshold !== null && threshold - SPREAD > 0) {
    query.set("floor", round2(threshold - SPREAD).toFixed(2));
  }
  const form = new FormData();
  form.append("image", file);
  try {
    const response = await fetch(`/api/count?${query}`, { method: "POST", body: form });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    if (models[answer.model]) models[answer.model].loaded = true;
    const card = { file: file.name, answer, element, threshold: answer.threshold,
                   candidates: answer.candidates || { points: answer.points,
                                                      scores: answer.scores,
                                                      floor: answer.threshold } };
    fillCard(card, URL.createObjectURL(file));
    cards.push(card);
    element.classList.add("done");
  } catch (problem) {
    element.classList.add("failed");
    element.querySelector(".count").textContent = `not counted: ${problem.message}`;
  }
  updateTotals();
}

function fillCard(card, source) {
  const { answer, element } = card;
  const scores = card.candidates.scores;
  const low = countAbove(scores, answer.threshold + SPREAD);
  const high = countAbove(scores, Math.max(card.candidates.floor, answer.threshold - SPREAD));
  element.innerHTML = "";
  const stage = document.createElement("figure");
  stage.className = "stage";
  const picture = document.createElement("img");
  picture.src = source;
  const marks = document.createElementNS(SVG, "svg");
  marks.setAttribute("viewBox", `0 0 ${answer.width} ${answer.height}`);
  marks.setAttribute("preserveAspectRatio", "none");
  marks.setAttribute("aria-hidden", "true");
  marks.addEventListener("click", (event) => addCorner(card, event));
  stage.append(picture, marks);
  const count = document.createElement("div");
  count.className = "count";
  const range = document.createElement("div");
  range.className = "range";
  range.textContent = `${low}–${high} within threshold ±${SPREAD}`;
  if (high - low > SHAKY * Math.max(answer.count, 1)) {
    range.textContent += " · shaky: the count hangs on the threshold";
    element.classList.add("shaky");
  }
  const zones = document.createElement("div");
  zones.className = "zones";
  const slider = document.createElement("input");
  Object.assign(slider, { type: "range", step: "0.01", value: String(answer.threshold),
                          min: String(round2(card.candidates.floor)),
                          max: String(Math.min(0.99, round2(answer.threshold + SPREAD))) });
  slider.id = `threshold-${cards.length}`;
  slider.className = "threshold";
  const label = document.createElement("label");
  label.htmlFor = slider.id;
  label.textContent = "threshold ";
  const shown = document.createElement("output");
  shown.htmlFor = slider.id;
  label.append(slider, shown);
  slider.addEventListener("input", () => {
    card.threshold = Number(slider.value);
    render(card);
    updateTotals();
  });
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = `${card.file} · ${answer.model}`;
  element.append(stage, count, range, zones, label, name);
  Object.assign(card, { picture, marks, count, zonesLine: zones, shown });
  render(card);
}

// heads at the card's threshold, drawn, counted, and counted per zone
function heads(card) {
  const { points, scores } = card.candidates;
  return points.filter((_, i) => scores[i] >= card.threshold - 1e-9);
}

function render(card) {
  const { answer, marks } = card;
  const found = heads(card);
  card.count.textContent = plural(found.length);
  card.count.dataset.count = found.length;
  card.element.dataset.count = found.length;
  card.shown.textContent = card.threshold.toFixed(2);
  card.picture.alt = `${card.file}: ${plural(found.length)} marked at threshold ` +
    `${card.threshold.toFixed(2)}`;
  const size = Math.max(answer.width, answer.height);
  marks.innerHTML = "";
  marks.classList.toggle("drawing", drawing !== null);
  for (const zone of shapes.zones) polyline(marks, zone.polygon, true, "zone", size, zone.name);
  for (const line of shapes.lines) {
    polyline(marks, line.points, false, "line", size, line.name);
    inSideArrow(marks, line, size);
  }
  if (drawing && drawing.card === card) {
    polyline(marks, drawing.points, false, "draft", size, "");
  }
  const radius = size / 180;
  for (const [x, y] of found) {
    const dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("cx", x);
    dot.setAttribute("cy", y);
    dot.setAttribute("r", radius);
    dot.setAttribute("class", "head");
    marks.append(dot);
  }
  const perZone = zoneCounts(card, found);
  card.zoneCounts = perZone;
  card.zonesLine.textContent = shapes.zones.map((zone) => {
    const n = perZone.counts[zone.name];
    if (n === null) return `${zone.name}: does not fit this photo`;
    const density = perZone.density ? ` (${perZone.density[zone.name].toFixed(2)}/m²)` : "";
    return `${zone.name}: ${n}${density}`;
  }).join(" · ");
}

function polyline(svg, points, closed, kind, size, name) {
  if (points.length === 0) return;
  const shape = document.createElementNS(SVG, closed ? "polygon" : "polyline");
  shape.setAttribute("points", points.map(([x, y]) => `${x},${y}`).join(" "));
  shape.setAttribute("class", kind);
  shape.setAttribute("stroke-width", size / 300);
  svg.append(shape);
  for (const [x, y] of kind === "draft" ? points : []) {
    const corner = document.createElementNS(SVG, "circle");
    corner.setAttribute("cx", x);
    corner.setAttribute("cy", y);
    corner.setAttribute("r", size / 150);
    corner.setAttribute("class", "corner");
    svg.append(corner);
  }
  if (name) {  // a zone's name at its corners' mean, a line's at its first point
    const [x, y] = closed ? [0, 1].map((k) => points.reduce((sum, p) => sum + p[k], 0)
                                              / points.length) : points[0];
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", x);
    label.setAttribute("y", y);
    if (closed) label.setAttribute("text-anchor", "middle");
    label.setAttribute("font-size", size / 30);
    label.setAttribute("class", `${kind}-name`);
    label.textContent = name;
    svg.append(label);
  }
}

// an arrow from the middle of a line's first segment towards its in-side
function inSideArrow(svg, line, size) {
  const [[x1, y1], [x2, y2]] = line.points;
  const length = Math.hypot(x2 - x1, y2 - y1);
  // walking from the first point to the second, left is (dy, -dx) in image coordinates
  const sign = line.in === "left" ? 1 : -1;
  const nx = sign * (y2 - y1) / length, ny = sign * -(x2 - x1) / length;
  const mx = (x1 + x2) / 2, my = (y1 + y2) / 2, reach = size / 15;
  const arrow = document.createElementNS(SVG, "polyline");
  const tipX = mx + nx * reach, tipY = my + ny * reach;
  const back = reach / 3;
  arrow.setAttribute("points", [
    [tipX - nx * back + ny * back, tipY - ny * back - nx * back], [tipX, tipY],
    [tipX - nx * back - ny * back, tipY - ny * back + nx * back], [tipX, tipY], [mx, my],
  ].map(([x, y]) => `${x},${y}`).join(" "));
  arrow.setAttribute("class", "in-side");
  arrow.setAttribute("stroke-width", size / 300);
  svg.append(arrow);
}

// --- zones, as maskfocal.zones counts them ----------------------------------------------------
function onSegment([px, py], [ax, ay], [bx, by]) {
  const cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax);
  return cross === 0 && Math.min(ax, bx) <= px && px <= Math.max(ax, bx)
    && Math.min(ay, by) <= py && py <= Math.max(ay, by);
}

// inside or on the boundary (shapely's covers)
function covers(polygon, point) {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const a = polygon[i], b = polygon[j];
    if (onSegment(point, a, b)) return true;
    if ((a[1] > point[1]) !== (b[1] > point[1])
        && point[0] < (b[0] - a[0]) * (point[1] - a[1]) / (b[1] - a[1]) + a[0]) {
      inside = !inside;
    }
  }
  return inside;
}

function fits(polygon, width, height) {
  return polygon.every(([x, y]) => x >= 0 && y >= 0 && x <= width && y <= height);
}

function zoneCounts(card, found) {
  const { width, height } = card.answer;
  const clipped = found.map(([x, y]) => [Math.min(Math.max(x, 0), width),
                                         Math.min(Math.max(y, 0), height)]);
  const counts = {};
  for (const zone of shapes.zones) {
    counts[zone.name] = fits(zone.polygon, width, height)
      ? clipped.filter((p) => covers(zone.polygon, p)).length : null;
  }
  let density = null;
  if (shapes.ground && shapes.zones.length
      && shapes.zones.every((zone) => counts[zone.name] !== null)) {
    density = {};
    for (const zone of shapes.zones) {
      density[zone.name] = counts[zone.name] / groundArea(zone.polygon, shapes.ground);
    }
  }
  return { counts, density };
}

function shoelace(points) {
  let sum = 0;
  for (let i = 0; i < points.length; i++) {
    const [x1, y1] = points[i], [x2, y2] = points[(i + 1) % points.length];
    sum += x1 * y2 - x2 * y1;
  }
  return Math.abs(sum) / 2;
}

// m² of a polygon on the ground: by pixels_per_metre, or through the homography of four
// image points and their positions in metres (the same direct linear transform as Python's)
function groundArea(polygon, ground) {
  if (ground.pixels_per_metre) return shoelace(polygon) / ground.pixels_per_metre ** 2;
  const rows = [], values = [];
  ground.image.forEach(([x, y], k) => {
    const [u, v] = ground.metres[k];
    rows.push([x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]);
    values.push(u, v);
  });
  const h = [...solve(rows, values), 1];
  return shoelace(polygon.map(([x, y]) => {
    const w = h[6] * x + h[7] * y + h[8];
    return [(h[0] * x + h[1] * y + h[2]) / w, (h[3] * x + h[4] * y + h[5]) / w];
  }));
}

function solve(matrix, values) {  // Gaussian elimination with partial pivoting
  const n = values.length;
  const a = matrix.map((row, i) => [...row, values[i]]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(a[r][col]) > Math.abs(a[pivot][col])) pivot = r;
    [a[col], a[pivot]] = [a[pivot], a[col]];
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const f = a[r][col] / a[col][col];
      for (let c = col; c <= n; c++) a[r][c] -= f * a[col][c];
    }
  }
  return a.map((row, i) => row[n] / row[i]);
}

// --- drawing ---------------------------------------------------------------------------------
function nextName(kind) {
  const taken = new Set([...shapes.zones, ...shapes.lines].map((s) => s.name));
  let k = 1;
  while (taken.has(`${kind} ${k}`)) k++;
  return `${kind} ${k}`;
}

function startDrawing(kind) {
  if (cards.length === 0) {
    say("Count a photo first: zones and lines are drawn on it.");
    return;
  }
  drawing = { kind, card: null, points: [] };
  if (!$("shape-name").value.trim()) $("shape-name").value = nextName(kind);
  $("finish").disabled = $("cancel").disabled = false;
  say(kind === "zone" ? "Click the zone's corners on a photo; Enter or Finish closes it."
                      : "Click the line's points on a photo; Enter or Finish ends it.");
  cards.forEach(render);
}

function addCorner(card, event) {
  if (!drawing) return;
  if (drawing.card && drawing.card !== card) {
    say("Finish the shape on the photo where it was started.");
    return;
  }
  drawing.card = card;
  const box = card.marks.getBoundingClientRect();
  const x = (event.clientX - box.left) / box.width * card.answer.width;
  const y = (event.clientY - box.top) / box.height * card.answer.height;
  drawing.points.push([Math.round(x * 10) / 10, Math.round(y * 10) / 10]);
  render(card);
}

function segmentsCross(p1, p2, p3, p4) {
  const turn = (a, b, c) => Math.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]));
  return turn(p1, p2, p3) * turn(p1, p2, p4) < 0 && turn(p3, p4, p1) * turn(p3, p4, p2) < 0;
}

function selfCrossing(polygon) {
  const n = polygon.length;
  for (let i = 0; i < n; i++) {
    for (let j = i + 2; j < n; j++) {
      if (i === 0 && j === n - 1) continue;  // neighbours through the closing edge
      if (segmentsCross(polygon[i], polygon[(i + 1) % n], polygon[j], polygon[(j + 1) % n])) {
        return true;
      }
    }
  }
  return false;
}

function finishDrawing() {
  if (!drawing) return;
  const { kind, points } = drawing;
  const name = $("shape-name").value.trim() || nextName(kind);
  if ([...shapes.zones, ...shapes.lines].some((s) => s.name === name)) {
    say(`The name "${name}" is taken: a zone file names each zone and line once.`);
    return;
  }
  if (kind === "zone") {
    if (points.length < 3) { say("A zone needs at least three corners."); return; }
    if (selfCrossing(points)) { say("The zone's edges cross: click its corners in order."); return; }
    shapes.zones.push({ name, polygon: points });
  } else {
    if (points.length < 2) { say("A line needs at least two points."); return; }
    shapes.lines.push({ name, points, in: $("line-in").value });
  }
  say(`${kind === "zone" ? "Zone" : "Line"} "${name}" added.`);
  stopDrawing();
}

function stopDrawing() {
  drawing = null;
  $("shape-name").value = "";
  $("finish").disabled = $("cancel").disabled = true;
  shapesChanged();
}

function say(text) { $("draw-help").textContent = text; }

function shapesChanged() {
  const list = $("shape-list");
  list.innerHTML = "";
  for (const [kind, items] of [["zone", shapes.zones], ["line", shapes.lines]]) {
    items.forEach((item, index) => {
      const entry = document.createElement("li");
      const text = kind === "zone" ? `zone "${item.name}": ${item.polygon.length} corners`
        : `line "${item.name}": ${item.points.length} points, in on the ${item.in}`;
      entry.textContent = text + " ";
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "small";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `remove ${kind} ${item.name}`);
      remove.addEventListener("click", () => { items.splice(index, 1); shapesChanged(); });
      entry.append(remove);
      list.append(entry);
    });
  }
  $("save-shapes").disabled = shapes.zones.length + shapes.lines.length === 0;
  cards.forEach(render);
  updateTotals();
}

// one file for `count --zones` and `count VIDEO --lines` (maskfocal.zones, maskfocal.flow)
function shapesFile() {
  const file = {};
  if (shapes.zones.length) file.zones = shapes.zones;
  if (shapes.lines.length) file.lines = shapes.lines;
  if (shapes.ground) file.ground = shapes.ground;
  return JSON.stringify(file, null, 1) + "\n";
}

// what maskfocal.zones and maskfocal.flow would refuse is refused here too, saying why
function checkedShapes(data) {
  const isPoint = (p) => Array.isArray(p) && p.length === 2
    && p.every((v) => typeof v === "number" && Number.isFinite(v));
  if (!data || typeof data !== "object" || Array.isArray(data)) throw new Error("not a zone file");
  const names = new Set();
  const named = (entry, kind) => {
    if (!entry || typeof entry.name !== "string" || !entry.name.trim()) {
      throw new Error(`a ${kind} needs a non-empty "name"`);
    }
    if (names.has(entry.name)) throw new Error(`the name "${entry.name}" is used twice`);
    names.add(entry.name);
    return entry.name;
  };
  const zones = [], masks = [], lines = [];
  for (const zone of Array.isArray(data.zones) ? data.zones : []) {
    const name = named(zone, "zone");
    if (zone.mask !== undefined) { masks.push(name); continue; }
    if (!Array.isArray(zone.polygon) || zone.polygon.length < 3 || !zone.polygon.every(isPoint)) {
      throw new Error(`zone "${name}": "polygon" must be at least three [x, y] numbers`);
    }
    if (selfCrossing(zone.polygon)) throw new Error(`zone "${name}": its edges cross`);
    zones.push({ name, polygon: zone.polygon });
  }
  for (const line of Array.isArray(data.lines) ? data.lines : []) {
    const name = named(line, "line");
    if (!Array.isArray(line.points) || line.points.length < 2 || !line.points.every(isPoint)) {
      throw new Error(`line "${name}": "points" must be at least two [x, y] numbers`);
    }
    if (line.in !== "left" && line.in !== "right") {
      throw new Error(`line "${name}": "in" must be "left" or "right"`);
    }
    lines.push({ name, points: line.points, in: line.in });
  }
  const ground = data.ground || null;
  if (ground && !(ground.pixels_per_metre > 0) && !(Array.isArray(ground.image)
      && ground.image.length === 4 && ground.image.every(isPoint) && Array.isArray(ground.metres)
      && ground.metres.length === 4 && ground.metres.every(isPoint))) {
    throw new Error('"ground" must be {"pixels_per_metre": number} or four "image" and ' +
                    'four "metres" [x, y]');
  }
  return { zones, lines, ground, masks };
}

function loadShapes(text, name) {
  let loaded;
  try {
    loaded = checkedShapes(JSON.parse(text));
  } catch (problem) {
    say(`${name}: ${problem.message}; nothing loaded`);
    return;
  }
  Object.assign(shapes, { zones: loaded.zones, lines: loaded.lines, ground: loaded.ground });
  say(`${name}: ${shapes.zones.length} zones, ${shapes.lines.length} lines` +
      (loaded.masks.length ? `; ${loaded.masks.length} mask zones left out (masks are for ` +
                             "count --zones)" : ""));
  shapesChanged();
}

$("draw-zone").addEventListener("click", () => startDrawing("zone"));
$("draw-line").addEventListener("click", () => startDrawing("line"));
$("finish").addEventListener("click", finishDrawing);
$("cancel").addEventListener("click", () => { say("Drawing cancelled."); stopDrawing(); });
document.addEventListener("keydown", (event) => {
  if (!drawing || event.target.tagName === "INPUT" && event.target.type === "text") return;
  if (event.key === "Enter") { event.preventDefault(); finishDrawing(); }
  if (event.key === "Escape") { say("Drawing cancelled."); stopDrawing(); }
});
$("save-shapes").addEventListener("click", () => download(shapesFile(), "zones.json",
                                                          "application/json"));
$("load-shapes").addEventListener("change", async (event) => {
  const [file] = event.target.files;
  if (file) loadShapes(await file.text(), file.name);
  event.target.value = "";
});

// --- totals and the CSV ----------------------------------------------------------------------
function updateTotals() {
  $("csv").disabled = cards.length === 0;
  const total = cards.reduce((sum, card) => sum + heads(card).length, 0);
  $("total").textContent = cards.length ? `${cards.length} photos, ${plural(total)}` : "";
}

function csvField(value) {
  if (value === null || value === undefined) return "";
  let text = String(value);
  // a name starting with = + - @ (or tab, CR) would be a formula in a spreadsheet
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = "'" + text;
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

// the columns of `count`'s counts.csv for zones: "zone NAME", then "per_m2 NAME"
function csvText() {
  const names = shapes.zones.map((zone) => zone.name);
  const dense = cards.some((card) => card.zoneCounts && card.zoneCounts.density);
  const header = ["file", "count", "width", "height", "model", "threshold", "elapsed_ms",
                  ...names.map((n) => `zone ${n}`),
                  ...(dense ? names.map((n) => `per_m2 ${n}`) : [])];
  const rows = cards.map((card) => {
    const { counts, density } = card.zoneCounts || { counts: {}, density: null };
    return [card.file, heads(card).length, card.answer.width, card.answer.height,
            card.answer.model, card.threshold, card.answer.elapsed_ms,
            ...names.map((n) => counts[n]),
            ...(dense ? names.map((n) => (density ? density[n] : null)) : [])];
  });
  return [header, ...rows].map((row) => row.map(csvField).join(",")).join("\n") + "\n";
}

function download(text, name, type) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

$("csv").addEventListener("click", () => download(csvText(), "counts.csv", "text/csv"));

// --- photos in -------------------------------------------------------------------------------
async function countAll(files) {
  for (const file of files) await countOne(file);  // one at a time: the server's pace
}

$("files").addEventListener("change", (event) => {
  countAll([...event.target.files]);
  event.target.value = "";
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  countAll([...event.dataTransfer.files]);
});
