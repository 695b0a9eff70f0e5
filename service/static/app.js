// FCOS detector demo page: vanilla JS, no dependencies, talks to this service's API only.
//
// One upload per image: POST /detect with a low score threshold, then the slider filters the
// returned detections client-side and redraws the canvas (no new request). The canvas exposes
// what it shows for tests: data-drawn (number of boxes drawn) and data-threshold. The class
// picker sends `classes=` (the service filters before NMS and max_detections): changing it asks
// again for the current image; the annotated download uses it too.
//
// The service may serve several models (GET /models): the model picker lists them (name, version,
// state; models that are not ready are disabled), starts on the service's default model, and
// every request sends `model=` for the picked one. Picking another model (GET /models/{name})
// rebuilds the class list from its classes, resets the slider to its default threshold and asks
// again for the current image.
"use strict";

(() => {
  const REQUEST_THRESHOLD = 0.05; // the slider's minimum: everything above it comes back once
  const FALLBACK_THRESHOLD = 0.4; // export/defaults.py, until the service has told its own
  const MODELS_POLL_MS = 2000; // the model list is read again while a model is loading
  const MAX_DETECTIONS = 300;
  const MAX_CANVAS_SIDE = 1600; // larger images are drawn scaled down
  const LIST_LIMIT = 100; // rows in the detections table
  // One colour per class id (cycled): the same list as service/annotate.py.
  const PALETTE = [
    [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180],
    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
    [220, 190, 255], [170, 110, 40], [255, 225, 25], [128, 0, 0], [170, 255, 195],
    [128, 128, 0], [255, 215, 180], [0, 0, 128], [128, 128, 128], [255, 255, 255],
  ];

  const $ = (id) => document.getElementById(id);
  const el = {
    model: $("model"), drop: $("drop"), file: $("file"), slider: $("threshold"),
    sliderValue: $("threshold-value"), count: $("count"), status: $("status"),
    error: $("error"), errorTitle: $("error-title"), errorDetail: $("error-detail"),
    download: $("download"), timings: $("timings").tBodies[0], canvas: $("canvas"),
    list: $("detections").tBodies[0], classes: $("classes"), classList: $("class-list"),
    classesAll: $("classes-all"), classesNone: $("classes-none"), modelSelect: $("model-select"),
  };
  const state = {
    file: null, image: null, imageUrl: null, result: null, request: 0,
    model: null, // the picked model's name (sent as `model=` with every request)
    modelRequest: 0, // the latest GET /models/{name}: older answers are dropped
    serviceThreshold: null, // DETECTOR_SCORE_THRESHOLD, from GET /model
    modelsTimer: null,
  };

  const rgb = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
  const colorOf = (classId) => PALETTE[classId % PALETTE.length];
  const textColorOn = (c) => (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] > 150 ? "#000" : "#fff");
  const threshold = () => Number(el.slider.value);
  const classBoxes = () => [...el.classList.querySelectorAll("input[type=checkbox]")];
  // null: every class (no filter); otherwise the names picked (possibly none).
  function pickedClasses() {
    const boxes = classBoxes();
    const picked = boxes.filter((b) => b.checked).map((b) => b.value);
    return picked.length === boxes.length ? null : picked;
  }
  function classQuery() {
    const picked = pickedClasses();
    return picked === null ? "" : `&classes=${encodeURIComponent(picked.join(","))}`;
  }
  const modelQuery = () => (state.model === null ? "" : `&model=${encodeURIComponent(state.model)}`);

  function setState(name) {
    document.body.dataset.state = name;
  }

  function setStatus(text) {
    el.status.textContent = text;
  }

  function showError(title, detail) {
    el.errorTitle.textContent = title;
    el.errorDetail.textContent = detail || "";
    el.error.hidden = false;
    setStatus("");
    setState("error");
  }

  function clearError() {
    el.error.hidden = true;
    el.errorTitle.textContent = "";
    el.errorDetail.textContent = "";
  }

  // The service answers errors as {"error": {"code", "message"}}; anything else is shown raw.
  async function readBody(response) {
    const text = await response.text();
    try {
      return { json: JSON.parse(text), text };
    } catch {
      return { json: null, text };
    }
  }

  function errorText(response, body) {
    const err = body.json && body.json.error;
    if (err && err.message) return { title: `HTTP ${response.status}: ${err.code}`, detail: err.message };
    return { title: `HTTP ${response.status} ${response.statusText}`, detail: body.text.slice(0, 500) };
  }

  // ---- models -----------------------------------------------------------------------------

  function pollModels(ms) {
    clearTimeout(state.modelsTimer);
    state.modelsTimer = setTimeout(loadModels, ms);
  }

  // GET /models: fill the picker; keep the picked model while it is ready, else pick the
  // service's default (else the first ready model). Read again while any model is loading.
  async function loadModels() {
    let listing = null;
    try {
      const response = await fetch("/models", { cache: "no-store" });
      const body = await readBody(response);
      if (response.ok && body.json && Array.isArray(body.json.models)) listing = body.json;
      else el.model.textContent = `models: ${errorText(response, body).detail}`;
    } catch (exc) {
      el.model.textContent = `model: service unreachable (${exc})`;
    }
    if (!listing) {
      pollModels(MODELS_POLL_MS);
      return;
    }
    const ready = listing.models.filter((m) => m.state === "ready");
    const kept = ready.find((m) => m.name === state.model);
    const chosen = kept || ready.find((m) => m.name === listing.default) || ready[0];
    fillModelPicker(listing, chosen);
    if (chosen && state.serviceThreshold === null && ready.some((m) => m.name === listing.default)) {
      await loadServiceThreshold();
    }
    if (chosen && !kept) {
      applyModel(chosen);
      if (state.file) detect(state.file);
    } else if (!chosen) {
      state.model = null;
      el.model.dataset.ready = "false";
      el.model.textContent = listing.models.length === 0 ? "model: none in the repository"
        : `model not ready (${listing.models.map((m) => `${m.name}: ${m.reason || m.state}`).join("; ")})`;
    }
    if (!chosen || listing.models.some((m) => m.state === "loading")) pollModels(MODELS_POLL_MS);
  }

  function fillModelPicker(listing, chosen) {
    const options = listing.models.map((m) => {
      const option = document.createElement("option");
      option.value = m.name;
      option.dataset.state = m.state;
      option.disabled = m.state !== "ready";
      option.textContent = `${m.name}${m.version ? ` ${m.version}` : ""} · ${m.state}` +
        (m.name === listing.default ? " (default)" : "");
      option.title = m.state === "ready" ? (m.last_error ? `last reload failed: ${m.last_error}` : "")
        : m.reason || m.state;
      return option;
    });
    el.modelSelect.replaceChildren(...options);
    if (chosen) el.modelSelect.value = chosen.name;
    el.modelSelect.disabled = !chosen;
  }

  // GET /model: the service's default score threshold (DETECTOR_SCORE_THRESHOLD), read once the
  // default model is ready (the route answers 503 before).
  async function loadServiceThreshold() {
    try {
      const response = await fetch("/model", { cache: "no-store" });
      const body = await readBody(response);
      if (response.ok && body.json && typeof body.json.score_threshold === "number") {
        state.serviceThreshold = body.json.score_threshold;
      }
    } catch {
      // the fallback threshold stays
    }
  }

  // A ready model (a GET /models entry or GET /models/{name}): the header, the class list and
  // the slider's start (the model's own default threshold when it has one, else the service's).
  function applyModel(m) {
    state.model = m.name;
    el.modelSelect.value = m.name;
    el.model.textContent = `model: ${m.name} ${m.version || ""} · ${m.preset}, ${m.precision}, ` +
      `input ${m.input_size} px, ${m.classes.length} classes`;
    el.model.title = `classes: ${m.classes.join(", ")}` +
      (m.exported_name && m.exported_name !== m.name ? ` (exported as ${m.exported_name})` : "");
    el.model.dataset.name = m.name;
    buildClassPicker(m.classes);
    const start = typeof m.score_threshold === "number" ? m.score_threshold
      : state.serviceThreshold ?? FALLBACK_THRESHOLD;
    el.slider.value = String(start);
    el.sliderValue.textContent = threshold().toFixed(2);
    el.model.dataset.ready = "true";
  }

  // The picker changed: the model's current description, then the current image again.
  async function modelPicked() {
    const name = el.modelSelect.value;
    const request = ++state.modelRequest;
    let failure;
    try {
      const response = await fetch(`/models/${encodeURIComponent(name)}`, { cache: "no-store" });
      const body = await readBody(response);
      if (request !== state.modelRequest) return;
      if (response.ok && body.json && body.json.state === "ready") {
        applyModel(body.json);
        if (state.file) detect(state.file);
        else clearError();
        return;
      }
      failure = response.ok && body.json
        ? { title: `Model ${name} is ${body.json.state}`, detail: body.json.reason || "" }
        : errorText(response, body);
    } catch (exc) {
      if (request !== state.modelRequest) return;
      failure = { title: "Network error: the service did not answer", detail: String(exc) };
    }
    if (state.model !== null) el.modelSelect.value = state.model; // the model in use stays
    showError(failure.title, failure.detail);
    loadModels();
  }

  function buildClassPicker(classes) {
    const labels = classes.map((name, id) => {
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = name;
      box.checked = true;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = rgb(colorOf(id));
      const label = document.createElement("label");
      label.append(box, swatch, name);
      return label;
    });
    el.classList.replaceChildren(...labels);
    el.classes.dataset.picked = "all";
    el.classes.disabled = false;
  }

  function classesChanged() {
    const picked = pickedClasses();
    el.classes.dataset.picked = picked === null ? "all" : picked.join(",");
    if (state.file) detect(state.file);
  }

  // ---- detection --------------------------------------------------------------------------

  function decodeInBrowser(file) {
    return new Promise((resolve) => {
      const url = URL.createObjectURL(file);
      const img = new Image();
      img.onload = () => resolve({ img, url });
      img.onerror = () => {
        URL.revokeObjectURL(url);
        resolve({ img: null, url: null });
      };
      img.src = url;
    });
  }

  async function detect(file) {
    const request = ++state.request;
    state.file = file;
    clearError();
    setState("loading");
    setStatus(`Detecting objects in ${file.name || "the image"} …`);
    el.download.disabled = true;
    if (classBoxes().length > 0 && pickedClasses() !== null && pickedClasses().length === 0) {
      state.result = null;
      clearCanvas();
      renderTimings(null);
      setStatus("No class picked: pick at least one class to detect.");
      setState("done");
      return;
    }

    const form = new FormData();
    form.append("image", file, file.name || "image");
    const url = `/detect?score_threshold=${REQUEST_THRESHOLD}&max_detections=${MAX_DETECTIONS}` +
      classQuery() + modelQuery();
    const started = performance.now();
    let response;
    let body;
    try {
      response = await fetch(url, { method: "POST", body: form });
      body = await readBody(response);
    } catch (exc) {
      if (request === state.request) showError("Network error: the service did not answer", String(exc));
      return;
    }
    const roundTrip = performance.now() - started;
    if (request !== state.request) return; // a newer upload replaced this one
    if (!response.ok || !body.json || !Array.isArray(body.json.detections)) {
      const e = errorText(response, body);
      state.result = null;
      clearCanvas();
      renderTimings(null);
      showError(e.title, e.detail);
      if (response.status === 404 || response.status === 503) loadModels(); // gone or not ready
      return;
    }

    const decoded = await decodeInBrowser(file);
    if (request !== state.request) return;
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.image = decoded.img;
    state.imageUrl = decoded.url;
    state.result = body.json;
    renderTimings(body.json.timings_ms, roundTrip);
    draw();
    const n = body.json.detections.length;
    const size = `${body.json.image.width}×${body.json.image.height}`;
    setStatus(`${file.name || "image"}: ${size} px, ${n} detections with score ≥ ${REQUEST_THRESHOLD}` +
      (state.image ? "" : " (this browser cannot display the format: boxes on a blank canvas)"));
    el.download.disabled = false;
    setState("done");
  }

  // ---- drawing ----------------------------------------------------------------------------

  function clearCanvas() {
    const ctx = el.canvas.getContext("2d");
    ctx.clearRect(0, 0, el.canvas.width, el.canvas.height);
    el.canvas.dataset.drawn = "0";
    el.count.textContent = "No detections to show.";
    el.list.replaceChildren();
  }

  function draw() {
    const result = state.result;
    if (!result) return;
    const t = threshold();
    const { width, height } = result.image;
    const scale = Math.min(1, MAX_CANVAS_SIDE / Math.max(width, height));
    const canvas = el.canvas;
    canvas.width = Math.max(1, Math.round(width * scale));
    canvas.height = Math.max(1, Math.round(height * scale));
    const ctx = canvas.getContext("2d");
    if (state.image) {
      ctx.drawImage(state.image, 0, 0, canvas.width, canvas.height);
    } else {
      ctx.fillStyle = "#3a3f4b";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
    }

    const shown = result.detections.filter((d) => d.score >= t);
    const longest = Math.max(canvas.width, canvas.height);
    const line = Math.max(2, Math.round(longest / 320));
    const fontSize = Math.min(40, Math.max(11, Math.round(longest / 45)));
    const pad = Math.max(2, Math.ceil(line / 2) + 1);
    ctx.font = `${fontSize}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    // Lowest scores first, so the best boxes end up on top.
    for (const d of [...shown].sort((a, b) => a.score - b.score)) {
      const [x1, y1, x2, y2] = d.box.map((v) => v * scale);
      const color = colorOf(d.class_id);
      ctx.strokeStyle = rgb(color);
      ctx.lineWidth = line;
      ctx.strokeRect(x1, y1, Math.max(0, x2 - x1), Math.max(0, y2 - y1));

      const text = `${d.label} ${d.score.toFixed(2)}`;
      const tw = Math.ceil(ctx.measureText(text).width) + 2 * pad;
      const th = fontSize + 2 * pad;
      const tx = Math.max(0, Math.min(Math.round(x1), canvas.width - tw));
      const ty = y1 - th >= 0 ? Math.round(y1) - th : Math.round(y1);
      ctx.fillStyle = rgb(color);
      ctx.fillRect(tx, ty, tw, th);
      ctx.fillStyle = textColorOn(color);
      ctx.fillText(text, tx + pad, ty + pad);
    }

    canvas.dataset.drawn = String(shown.length);
    canvas.dataset.threshold = t.toFixed(2);
    canvas.dataset.scale = String(scale);
    el.count.textContent = `${shown.length} of ${result.detections.length} detections shown ` +
      `(score ≥ ${t.toFixed(2)})`;
    renderList(shown);
  }

  function cell(content, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.append(...[].concat(content));
    return td;
  }

  function row(cells, className) {
    const tr = document.createElement("tr");
    if (className) tr.className = className;
    tr.append(...cells);
    return tr;
  }

  function renderList(shown) {
    const rows = shown.slice(0, LIST_LIMIT).map((d) => {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = rgb(colorOf(d.class_id));
      return row([cell([swatch, d.label]), cell(d.score.toFixed(3), "num"),
        cell(`[${d.box.map((v) => v.toFixed(0)).join(", ")}]`)]);
    });
    if (shown.length > LIST_LIMIT) {
      const more = cell(`… and ${shown.length - LIST_LIMIT} more`, "muted");
      more.colSpan = 3;
      rows.push(row([more]));
    }
    el.list.replaceChildren(...rows);
  }

  // timings_ms has every stage, in the server's order (service/stages.py), total last.
  function renderTimings(timingsMs, roundTripMs) {
    const rows = [];
    const add = (name, ms, className) => rows.push(row([cell(name), cell(Number(ms).toFixed(1))], className));
    if (timingsMs) {
      for (const [name, ms] of Object.entries(timingsMs)) {
        if (name !== "total" && !((name === "annotate" || name === "tiles") && !ms)) add(name, ms);
      }
      add("server total", timingsMs.total, "total");
      add("round trip (browser)", roundTripMs);
    }
    el.timings.replaceChildren(...rows);
  }

  // ---- annotated download -----------------------------------------------------------------

  async function downloadAnnotated() {
    if (!state.file) return;
    const form = new FormData();
    form.append("image", state.file, state.file.name || "image");
    const url = `/detect?annotate=true&format=jpeg&score_threshold=${threshold()}` +
      `&max_detections=${MAX_DETECTIONS}${classQuery()}${modelQuery()}`;
    el.download.disabled = true;
    try {
      const response = await fetch(url, { method: "POST", body: form });
      if (!response.ok) {
        const e = errorText(response, await readBody(response));
        showError(e.title, e.detail);
        return;
      }
      const blob = await response.blob();
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = `${(state.file.name || "image").replace(/\.[^.]*$/, "")}-detections.jpg`;
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (exc) {
      showError("Network error: the service did not answer", String(exc));
    } finally {
      el.download.disabled = !state.result;
    }
  }

  // ---- wiring -----------------------------------------------------------------------------

  function takeFile(files) {
    if (files && files.length > 0) detect(files[0]);
  }

  el.file.addEventListener("change", () => {
    takeFile(el.file.files);
    el.file.value = ""; // picking the same file again still fires "change"
  });
  // Drops anywhere on the page count (and never make the browser navigate to the file).
  document.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    el.drop.classList.add("over");
  });
  document.addEventListener("dragleave", (ev) => {
    if (ev.relatedTarget === null) el.drop.classList.remove("over");
  });
  document.addEventListener("drop", (ev) => {
    ev.preventDefault();
    el.drop.classList.remove("over");
    takeFile(ev.dataTransfer && ev.dataTransfer.files);
  });
  el.slider.addEventListener("input", () => {
    el.sliderValue.textContent = threshold().toFixed(2);
    draw();
  });
  el.download.addEventListener("click", downloadAnnotated);
  el.classList.addEventListener("change", classesChanged);
  const setAll = (checked) => {
    for (const b of classBoxes()) b.checked = checked;
    classesChanged();
  };
  el.classesAll.addEventListener("click", () => setAll(true));
  el.classesNone.addEventListener("click", () => setAll(false));
  el.modelSelect.addEventListener("change", modelPicked);

  el.slider.value = String(FALLBACK_THRESHOLD);
  el.sliderValue.textContent = threshold().toFixed(2);
  loadModels();
})();
