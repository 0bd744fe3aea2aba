// The page of `maskfocal serve`: send each photo to /api/count, show its overlay and count.
"use strict";
const results = [];  // {file, count, width, height, threshold, elapsed_ms} per counted photo
const $ = (id) => document.getElementById(id);

fetch("/healthz").then((r) => r.json()).then((h) => {
  $("model").textContent = `model ${h.model} · maskfocal ${h.version}`;
}).catch(() => { $("model").textContent = "the server does not answer"; });

function card(file) {
  const element = document.createElement("article");
  element.className = "card";
  element.dataset.file = file.name;
  element.innerHTML = '<div class="count">counting...</div><div class="name"></div>';
  element.querySelector(".name").textContent = file.name;
  $("results").prepend(element);
  return element;
}

async function countOne(file) {
  const element = card(file);
  const form = new FormData();
  form.append("image", file);
  const zones = $("zones").value.trim();
  if (zones) form.append("zones", zones);
  const query = new URLSearchParams({ overlay: $("heatmap").checked });
  if ($("threshold").value) query.set("threshold", $("threshold").value);
  try {
    const response = await fetch(`/api/count?${query}`, { method: "POST", body: form });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    const count = element.querySelector(".count");
    count.textContent = `${answer.count} ${answer.count === 1 ? "head" : "heads"}`;
    count.dataset.count = answer.count;
    if (answer.zones) {
      const inZones = document.createElement("div");
      inZones.className = "zones";
      inZones.textContent = Object.entries(answer.zones).map(([name, n]) =>
        `${name}: ${n}` + (answer.density ? ` (${answer.density[name].toFixed(2)}/m²)` : "")
      ).join(" · ");
      count.after(inZones);
    }
    element.dataset.count = answer.count;
    if (answer.overlay_png) {
      const picture = document.createElement("img");
      picture.alt = `overlay of ${file.name}`;
      picture.src = `data:image/png;base64,${answer.overlay_png}`;
      element.prepend(picture);
    }
    results.push({ file: file.name, count: answer.count, width: answer.width,
                   height: answer.height, threshold: answer.threshold,
                   elapsed_ms: answer.elapsed_ms });
    element.classList.add("done");
  } catch (problem) {
    element.classList.add("failed");
    element.querySelector(".count").textContent = `not counted: ${problem.message}`;
  }
  $("csv").disabled = results.length === 0;
  const total = results.reduce((sum, r) => sum + r.count, 0);
  $("total").textContent = results.length ? `${results.length} photos, ${total} heads` : "";
}

async function countAll(files) {
  for (const file of files) await countOne(file);  // one at a time: the server's pace
}

function csvField(value) {
  let text = String(value);
  // a name starting with = + - @ (or tab, CR) would be a formula in a spreadsheet
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = "'" + text;
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

$("csv").addEventListener("click", () => {
  const header = "file,count,width,height,threshold,elapsed_ms";
  const rows = results.map((r) => [r.file, r.count, r.width, r.height, r.threshold,
                                   r.elapsed_ms].map(csvField).join(","));
  const blob = new Blob([[header, ...rows].join("\n") + "\n"], { type: "text/csv" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "counts.csv";
  link.click();
  URL.revokeObjectURL(link.href);
});

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
