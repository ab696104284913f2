// vaelab-explore: the page. Plain JS, no build step. Everything edits one code z (and, for a
// conditional model, one condition y); decodes go through `latestOnly`, so dragging never
// queues requests: one is in flight at a time and only the newest waiting one is sent next.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  z: [],            // the current code, latent_dim numbers
  y: null,          // the current condition (conditional models), else null
  base: null,       // the code a direction's strength is added to
  vector: null,     // the current direction
  picked: null,     // index of the scatter point shown in "picked"
  uploaded: null,   // where the uploaded image landed in the scatter [x, y]
  ends: { a: null, b: null },
  padDims: [0, 1],
  padPoints: null,
};
// what the tests (and a curious user in the console) can read
const stats = { decodesSent: 0, decodesSkipped: 0, decodesShown: 0, decodesDone: 0 };
window.vaelab = { state, stats, scatterPixel: (i) => scatterView().pixel(i) };

// -- talking to the server ---------------------------------------------------------------
async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const answer = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(`${response.status}: ${answer.detail}`);
  return answer;
}

function showError(error) {
  $("error").textContent = String(error.message || error);
  $("error").hidden = false;
}

function clearError() { $("error").hidden = true; }

// At most one request in flight; a call while one is out replaces the waiting payload (older
// waiting payloads are dropped, never sent), and the newest is sent when the current returns.
function latestOnly(send, show) {
  let inFlight = false;
  let waiting = null;
  return function request(payload) {
    if (inFlight) {
      if (waiting !== null) stats.decodesSkipped += 1;
      waiting = payload;
      return;
    }
    inFlight = true;
    send(payload).then(show, showError).finally(() => {
      stats.decodesDone += 1;
      inFlight = false;
      if (waiting !== null) {
        const next = waiting;
        waiting = null;
        request(next);
      }
    });
  };
}

const requestDecode = latestOnly((payload) => {
  stats.decodesSent += 1;
  return api("/api/decode", payload);
}, (answer) => {
  $("decoded").src = answer.image;
  stats.decodesShown += 1;
  clearError();
});

function decodeNow() { requestDecode({ z: state.z.slice(), y: state.y && state.y.slice() }); }

// -- the code ------------------------------------------------------------------------------
// Set z (all or some dims), show it on the sliders and the pad, decode it. `keepBase`: a
// direction's strength moved it, so the direction's base code stays.
function setCode(z, keepBase = false) {
  state.z = z.map(Number);
  if (!keepBase) resetDirection();
  for (const input of document.querySelectorAll("#sliders input")) {
    const d = Number(input.dataset.dim);
    input.value = state.z[d];
    input.parentElement.querySelector("output").textContent = state.z[d].toFixed(2);
  }
  drawPad();
  decodeNow();
}

function setCondition(y) {
  if (!state.info.condition || y === null || y === undefined) return;
  state.y = y.map(Number);
  if (state.info.condition.kind === "label") {
    $("condition-class").value = String(state.y.indexOf(Math.max(...state.y)));
  } else {
    for (const box of document.querySelectorAll("#condition-attributes input")) {
      box.checked = state.y[Number(box.dataset.index)] > 0.5;
    }
  }
}

function dimInfo(d) { return state.info.dims.find((dim) => dim.index === d); }

// -- sliders -----------------------------------------------------------------------------
function buildSliders() {
  const info = state.info;
  $("usage-kind").textContent = info.usage_kind === "kl"
    ? "by mean KL in nats" : "by the variance of the posterior means";
  const box = $("sliders");
  box.replaceChildren();
  for (const dim of info.dims) {
    const row = document.createElement("label");
    row.className = "slider" + (dim.unused ? " unused" : "");
    const name = document.createElement("span");
    name.className = "dim-name";
    name.textContent = `z[${dim.index}]`;
    const usage = document.createElement("span");
    usage.className = "usage";
    usage.textContent = (info.usage_kind === "kl" ? `${dim.usage.toPrecision(2)} nats`
      : `var ${dim.usage.toPrecision(2)}`) + (dim.unused ? " · unused" : "");
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: dim.low, max: dim.high,
      step: (dim.high - dim.low) / 500, value: dim.centre });
    input.dataset.dim = dim.index;
    const value = document.createElement("output");
    value.textContent = dim.centre.toFixed(2);
    input.addEventListener("input", () => {
      state.z[dim.index] = Number(input.value);
      value.textContent = state.z[dim.index].toFixed(2);
      resetDirection();
      drawPad();
      decodeNow();
    });
    row.append(name, input, value, usage);
    box.append(row);
  }
}

// -- the pad: two dims of z ----------------------------------------------------------------
const MARGIN = 24;

function padView() {
  const canvas = $("pad");
  const [dx, dy] = state.padDims;
  const x = dimInfo(dx), y = dimInfo(dy);
  const w = canvas.width - 2 * MARGIN, h = canvas.height - 2 * MARGIN;
  return {
    toPixel: (vx, vy) => [MARGIN + (vx - x.low) / (x.high - x.low) * w,
      MARGIN + (1 - (vy - y.low) / (y.high - y.low)) * h],
    toValue: (px, py) => [x.low + (px - MARGIN) / w * (x.high - x.low),
      y.low + (1 - (py - MARGIN) / h) * (y.high - y.low)],
    x, y,
  };
}

function classColour(id) {
  const found = state.info.classes.find((c) => c.id === id);
  return found ? found.colour : "#888888";
}

function drawPad() {
  if (!state.info || !state.info.scatter) return;
  const canvas = $("pad");
  const ctx = canvas.getContext("2d");
  const view = padView();
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#999";
  ctx.strokeRect(MARGIN, MARGIN, canvas.width - 2 * MARGIN, canvas.height - 2 * MARGIN);
  if (state.padPoints) {
    ctx.save();
    ctx.beginPath();
    ctx.rect(MARGIN, MARGIN, canvas.width - 2 * MARGIN, canvas.height - 2 * MARGIN);
    ctx.clip();  // the handle may leave the box (a code pushed along a direction); dots do not
    ctx.globalAlpha = 0.35;
    const { x, y, classes } = state.padPoints;
    for (let i = 0; i < x.length; i++) {
      const [px, py] = view.toPixel(x[i], y[i]);
      ctx.fillStyle = classColour(classes[i]);
      ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
    }
    ctx.restore();
  }
  ctx.fillStyle = "#555";
  ctx.font = "11px sans-serif";
  ctx.fillText(view.x.low.toFixed(1), MARGIN, canvas.height - 8);
  ctx.fillText(view.x.high.toFixed(1), canvas.width - MARGIN - 20, canvas.height - 8);
  ctx.fillText(view.y.high.toFixed(1), 2, MARGIN + 4);
  ctx.fillText(view.y.low.toFixed(1), 2, canvas.height - MARGIN);
  const [hx, hy] = view.toPixel(state.z[state.padDims[0]], state.z[state.padDims[1]]);
  ctx.beginPath();
  ctx.arc(hx, hy, 7, 0, 2 * Math.PI);
  ctx.fillStyle = "rgba(220, 40, 40, 0.85)";
  ctx.fill();
  ctx.strokeStyle = "#fff";
  ctx.stroke();
}

async function loadPadPoints() {
  const [x, y] = state.padDims;
  state.padPoints = await api(`/api/points?x=${x}&y=${y}`);
  drawPad();
}

function buildPad() {
  const dims = state.info.dims.map((d) => d.index);
  for (const [select, chosen] of [[$("pad-x"), dims[0]], [$("pad-y"), dims[1]]]) {
    select.replaceChildren(...dims.map((d) => new Option(`z[${d}]`, d)));
    select.value = chosen;
    select.addEventListener("change", () => {
      state.padDims = [Number($("pad-x").value), Number($("pad-y").value)];
      loadPadPoints().catch(showError);
    });
  }
  state.padDims = [dims[0], dims[1]];
  const canvas = $("pad");
  let dragging = false;
  const move = (event) => {
    const rect = canvas.getBoundingClientRect();
    const px = (event.clientX - rect.left) * canvas.width / rect.width;
    const py = (event.clientY - rect.top) * canvas.height / rect.height;
    const [vx, vy] = padView().toValue(px, py);
    const z = state.z.slice();
    z[state.padDims[0]] = vx;
    z[state.padDims[1]] = vy;
    setCode(z);
  };
  canvas.addEventListener("pointerdown", (event) => {
    dragging = true;
    canvas.setPointerCapture(event.pointerId);
    move(event);
  });
  canvas.addEventListener("pointermove", (event) => { if (dragging) move(event); });
  canvas.addEventListener("pointerup", () => { dragging = false; });
}

// -- the scatter of posterior means --------------------------------------------------------
function scatterView() {
  const canvas = $("scatter");
  const { x, y } = state.info.scatter;
  const all = (values, extra) => values.concat(extra === null ? [] : [extra]);
  const up = state.uploaded;
  const xs = all(x, up && up[0]), ys = all(y, up && up[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const w = canvas.width - 2 * MARGIN, h = canvas.height - 2 * MARGIN;
  const toPixel = (vx, vy) => [MARGIN + (vx - x0) / ((x1 - x0) || 1) * w,
    MARGIN + (1 - (vy - y0) / ((y1 - y0) || 1)) * h];
  return { toPixel, pixel: (i) => toPixel(x[i], y[i]) };
}

function drawScatter() {
  const scatter = state.info.scatter;
  if (!scatter) return;
  const canvas = $("scatter");
  const ctx = canvas.getContext("2d");
  const view = scatterView();
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = 0.7;
  for (let i = 0; i < scatter.x.length; i++) {
    const [px, py] = view.pixel(i);
    ctx.fillStyle = classColour(scatter.classes[i]);
    ctx.beginPath();
    ctx.arc(px, py, 2.5, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  if (state.picked !== null) {
    const [px, py] = view.pixel(state.picked);
    ctx.beginPath();
    ctx.arc(px, py, 7, 0, 2 * Math.PI);
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#000";
    ctx.stroke();
    ctx.lineWidth = 1;
  }
  if (state.uploaded) {
    const [px, py] = view.toPixel(...state.uploaded);
    ctx.font = "22px sans-serif";
    ctx.fillStyle = "#000";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText("★", px, py);
    ctx.textAlign = "start";
    ctx.textBaseline = "alphabetic";
  }
}

function buildScatter() {
  const scatter = state.info.scatter;
  $("scatter-count").textContent = scatter.x.length;
  $("scatter-split").textContent = scatter.split;
  $("scatter-axes").textContent = scatter.axes.join(", ");
  $("legend").replaceChildren(...state.info.classes.map((c) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = c.colour;
    item.append(swatch, c.name);
    return item;
  }));
  const canvas = $("scatter");
  canvas.addEventListener("click", (event) => {
    const rect = canvas.getBoundingClientRect();
    const px = (event.clientX - rect.left) * canvas.width / rect.width;
    const py = (event.clientY - rect.top) * canvas.height / rect.height;
    const view = scatterView();
    let best = null, bestDistance = 12 * 12;
    for (let i = 0; i < scatter.x.length; i++) {
      const [qx, qy] = view.pixel(i);
      const distance = (qx - px) ** 2 + (qy - py) ** 2;
      if (distance < bestDistance) { best = i; bestDistance = distance; }
    }
    if (best !== null) loadItem(best).catch(showError);
  });
  drawScatter();
}

async function loadItem(index) {
  const item = await api("/api/item", { index });
  state.picked = index;
  $("picked").hidden = false;
  $("picked-image").src = item.image;
  $("picked-recon").src = item.reconstruction;
  const name = state.info.classes.find((c) => c.id === item.class);
  $("picked-caption").textContent = `${state.info.scatter.split} image ${index}` +
    (name ? `, class ${name.name}` : "");
  setCondition(item.y);
  setCode(item.z);
  drawScatter();
  clearError();
}

// -- interpolation ----------------------------------------------------------------------------
function setEnd(which) {
  state.ends[which] = { z: state.z.slice(), y: state.y && state.y.slice() };
  $(`end-${which}`).src = $("decoded").src;
  $("interpolate").disabled = !(state.ends.a && state.ends.b);
}

async function interpolate() {
  const answer = await api("/api/interpolate", {
    start: state.ends.a, end: state.ends.b, steps: Number($("interp-steps").value),
    method: $("interp-method").value });
  $("strip").replaceChildren(...answer.frames.map((src, i) => {
    const frame = new Image();
    frame.src = src;
    frame.alt = `frame ${i}`;
    frame.title = "load this code";
    frame.addEventListener("click", () => setCode(answer.codes[i]));
    return frame;
  }));
  clearError();
}

// -- directions ---------------------------------------------------------------------------
function resetDirection() {
  state.base = state.vector ? state.z.slice() : null;
  $("dir-strength").value = 0;
  $("dir-strength-value").textContent = "0";
}

async function findDirection() {
  const attribute = $("dir-attribute").value;
  const source = $("dir-source").value || null;
  $("dir-status").textContent = "computing…";
  const answer = await api("/api/direction", { attribute, source });
  state.vector = answer.vector;
  const norm = Math.hypot(...answer.vector);
  $("dir-status").textContent = `|v| = ${norm.toFixed(2)}, from ${answer.num_with} images ` +
    `with ${attribute} and ${answer.num_without} ${source ? "with " + source : "without"}.`;
  $("dir-strength").disabled = false;
  resetDirection();
  clearError();
}

function pushAlongDirection() {
  const s = Number($("dir-strength").value);
  $("dir-strength-value").textContent = s.toFixed(2);
  if (!state.vector || !state.base) return;
  setCode(state.base.map((v, d) => v + s * state.vector[d]), true);
}

// -- sampling ---------------------------------------------------------------------------------
async function sample() {
  const layer = Number($("layer").value || 0);
  const answer = await api("/api/sample", {
    temperature: Number($("temperature").value), layer, z: layer > 0 ? state.z : null });
  setCode(answer.z);
  clearError();
}

// -- uploads ----------------------------------------------------------------------------------
function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function upload() {
  const file = $("upload").files[0];
  if (!file) return;
  const limit = state.info.limits.max_upload_bytes;
  if (file.size > limit) throw new Error(`${file.name} is ${file.size} bytes; at most ${limit}`);
  const answer = await api("/api/upload", {
    data: await readFile(file), invert: $("invert").checked, y: state.y });
  $("uploaded").hidden = false;
  $("upload-image").src = answer.image;
  $("upload-recon").src = answer.reconstruction;
  state.uploaded = answer.scatter_xy;
  setCode(answer.z);
  drawScatter();
  clearError();
}

// -- conditions -------------------------------------------------------------------------------
function buildCondition() {
  const condition = state.info.condition;
  if (!condition) return;
  $("condition").hidden = false;
  const size = condition.names.length;
  if (condition.kind === "label") {
    $("condition-attributes").hidden = true;
    $("condition-class").replaceChildren(...condition.names.map((n, i) => new Option(n, i)));
    $("condition-class").addEventListener("change", () => {
      state.y = Array.from({ length: size }, (_, i) => (i === Number($("condition-class").value) ? 1 : 0));
      decodeNow();
    });
    state.y = Array.from({ length: size }, (_, i) => (i === 0 ? 1 : 0));
  } else {
    $("condition-class").hidden = true;
    $("condition-attributes").replaceChildren(...condition.names.map((n, i) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.dataset.index = i;
      box.addEventListener("change", () => { state.y[i] = box.checked ? 1 : 0; decodeNow(); });
      label.append(box, n);
      return label;
    }));
    state.y = new Array(size).fill(0);
  }
}

// -- start ------------------------------------------------------------------------------------
function buildControls() {
  const info = state.info;
  $("title").textContent = info.title;
  const c = info.components;
  $("summary").textContent = `${info.latent_dim}-D codes · ${c.prior} · ${c.posterior} · ` +
    `${c.likelihood} · images ${info.image_shape.join("×")}`;
  document.body.classList.toggle("small-images", info.image_shape[1] <= 64);
  $("centre").addEventListener("click", () => setCode(info.centre));
  $("set-a").addEventListener("click", () => setEnd("a"));
  $("set-b").addEventListener("click", () => setEnd("b"));
  $("interp-steps").max = info.limits.max_steps;
  $("interpolate").addEventListener("click", () => interpolate().catch(showError));
  $("dir-attribute").replaceChildren(...info.attributes.map((n) => new Option(n, n)));
  $("dir-source").replaceChildren(new Option("(images without it)", ""),
    ...info.attributes.map((n) => new Option(n, n)));
  $("dir-find").addEventListener("click", () => findDirection().catch((e) => {
    $("dir-status").textContent = "";
    showError(e);
  }));
  $("dir-strength").addEventListener("input", pushAlongDirection);
  $("temperature").max = Math.min(2, info.limits.max_temperature);
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
  });
  if (info.layers.length > 1) {
    $("layer-row").hidden = false;
    $("layer").replaceChildren(...info.layers.map((size, l) => new Option(
      l === 0 ? `1 (top, all layers)` : `${l + 1} of ${info.layers.length}`, l)));
  }
  $("sample").addEventListener("click", () => sample().catch(showError));
  $("upload").addEventListener("change", () => upload().catch(showError));
  $("invert").addEventListener("change", () => upload().catch(showError));
}

async function start() {
  try {
    state.info = await api("/api/info");
  } catch (error) {
    showError(error);
    return;
  }
  buildControls();
  buildCondition();
  buildSliders();
  if (state.info.scatter) {
    buildPad();
    buildScatter();
    loadPadPoints().catch(showError);
  } else {
    $("plane-missing").hidden = false;
    document.querySelector("#plane-panel .plane").hidden = true;
  }
  setCode(state.info.centre);
  document.body.dataset.ready = "true";
}

start();
