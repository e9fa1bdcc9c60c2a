// The trainer's web page: plain JavaScript over the gateway's JSON API, with the API key (kept
// in this tab's session storage) as the Bearer header of every call. No cookies, no framework.
"use strict";

const KEY = "fluxlora.key";
const MODEL = "wavespeed-ai/flux-dev-lora-trainer";
const POLL_MS = 2000;
const HOSTED_FIELDS = ["trigger_word", "steps", "learning_rate", "lora_rank"];
const WATCH_FIELDS = ["save_every_steps", "sample_every_steps"];
const CONDITION_WORDS = {
  JobCreated: "Trainer job",
  Queued: "Queue",
  Scheduled: "GPU",
  Running: "Trainer",
  Completed: "Completed",
  Failed: "Failed",
  Suspended: "Paused",
};

const $ = (id) => document.getElementById(id);
let schema = null; // the submit body's JSON schema, from /openapi.json
let poller = null;
let chart = null;
let flash = null; // [message, isError] for the next view
let prepared = null; // the chosen zip's upload and check: Promise of {url, report}
const images = new Map(); // download URL -> object URL, fetched once with the key
const liveLoss = new Map(); // run id -> [[step], [smoothed loss]] seen while polling

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY);
}

async function api(path, { method = "GET", body, raw = false, quiet = false } = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (raw && response.ok) return response.blob();
  let answer = null;
  try {
    answer = await response.json();
  } catch (error) {
    answer = null;
  }
  if (!response.ok) {
    const message = (answer && answer.message) || `HTTP ${response.status}`;
    if (response.status === 401 && apiKey() && !quiet) signOut(`Signed out: ${message}`);
    throw new ApiError(response.status, message);
  }
  return answer.data;
}

// --- small helpers ------------------------------------------------------------------------

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function notice(message, isError = false) {
  const box = $("notice");
  box.textContent = message || "";
  box.hidden = !message;
  box.classList.toggle("error", isError);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function age(createdAt) {
  const seconds = (Date.now() - Date.parse(createdAt)) / 1000;
  if (seconds < 60) return "just now";
  return `${duration(seconds).split(" ").slice(0, 2).join(" ")} ago`;
}

function progressBar(run) {
  const bar = element("progress", { max: String(run.steps || 1), value: String(run.step || 0) });
  let words = `${run.step}/${run.steps}`;
  if (run.status === "processing" && run.eta_seconds !== null) {
    words += ` · ${duration(run.eta_seconds)} left`;
  }
  return element("div", { class: "progress" }, bar, element("span", { text: words }));
}

function statusBadge(run) {
  const word = run.suspended ? `${run.status} (paused)` : run.status;
  return element("span", { class: `status ${run.status}`, text: word });
}

async function image(url) {
  if (!images.has(url)) images.set(url, URL.createObjectURL(await api(url, { raw: true })));
  return images.get(url);
}

async function download(url) {
  const link = element("a", { href: await image(url), download: decodeURIComponent(url.split("/").pop()) });
  document.body.append(link);
  link.click();
  link.remove();
}

// --- views --------------------------------------------------------------------------------

function show(view) {
  for (const id of ["sign-in-view", "runs-view", "new-view", "run-view"]) {
    $(id).hidden = id !== view;
  }
  $("nav").hidden = view === "sign-in-view";
}

function stopPolling() {
  clearTimeout(poller);
  poller = null;
}

function poll(step) {
  stopPolling();
  const tick = async () => {
    let again = true;
    try {
      again = (await step()) !== false;
    } catch (error) {
      if (error.status === 401) return;
      notice(error.message, true);
      if (error.status === 404) return; // gone, or never this key's: nothing to follow
    }
    if (again) poller = setTimeout(tick, POLL_MS);
  };
  tick();
}

function go(hash, message = null, isError = false) {
  // Show `message` on the view at `hash` (a hash change routes later: the message waits).
  flash = message ? [message, isError] : null;
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  stopPolling();
  notice(...(flash || [""]));
  flash = null;
  if (!apiKey()) {
    show("sign-in-view");
    $("key").focus();
    return;
  }
  const hash = location.hash || "#/runs";
  const runMatch = hash.match(/^#\/runs\/([0-9a-fA-F-]{36})$/);
  if (runMatch) {
    show("run-view");
    showRun(runMatch[1]);
  } else if (hash === "#/new") {
    show("new-view");
    await buildForm();
  } else {
    show("runs-view");
    poll(renderRuns);
  }
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  images.clear();
  go("#/runs", message, true);
}

async function signIn(event) {
  event.preventDefault();
  const typed = $("key").value.trim();
  if (!typed) return;
  sessionStorage.setItem(KEY, typed);
  try {
    await api("/api/v3/runs", { quiet: true });
  } catch (error) {
    sessionStorage.removeItem(KEY);
    show("sign-in-view");
    notice(`That key was refused: ${error.message}`, true);
    return;
  }
  $("key").value = "";
  go(location.hash || "#/runs");
}

// --- the list -----------------------------------------------------------------------------

async function renderRuns() {
  const status = $("status-filter").value;
  const query = status ? `?status=${encodeURIComponent(status)}` : "";
  const { items } = await api(`/api/v3/runs${query}`);
  const rows = items.map((run) =>
    element(
      "tr",
      { "data-id": run.id },
      element("td", {}, element("a", { href: `#/runs/${run.id}`, text: run.name })),
      element("td", {}, statusBadge(run)),
      element("td", {}, progressBar(run)),
      element("td", { text: String(run.lora_rank) }),
      element("td", { text: age(run.created_at) }),
    ),
  );
  $("runs").tBodies[0].replaceChildren(...rows);
  $("no-runs").hidden = items.length > 0;
}

// --- a new run ----------------------------------------------------------------------------

function fieldSchema(name) {
  const found = schema.properties[name];
  const variant = (found.anyOf || [found]).find((v) => v.type !== "null") || found;
  return { ...variant, default: found.default, title: found.title || name, description: found.description };
}

function numberInput(name) {
  const field = fieldSchema(name);
  const attributes = { id: name, name, type: field.type === "string" ? "text" : "number" };
  if (field.type === "integer") attributes.step = "1";
  if (field.type === "number") attributes.step = "any";
  if (field.minimum !== undefined) attributes.min = String(field.minimum);
  if (field.exclusiveMinimum !== undefined) attributes.min = String(field.exclusiveMinimum);
  if (field.maximum !== undefined) attributes.max = String(field.maximum);
  if (field.maxLength !== undefined) attributes.maxlength = String(field.maxLength);
  if (field.default !== undefined && field.default !== null) attributes.value = String(field.default);
  const range =
    field.type === "string"
      ? ""
      : ` (${field.exclusiveMinimum !== undefined ? ">" : ""}${attributes.min ?? ""}–${attributes.max ?? ""})`;
  return element(
    "div",
    { class: "field" },
    element("label", { for: name, text: `${field.title}${range}` }),
    element("input", attributes),
  );
}

async function buildForm() {
  if (!schema) {
    const document_ = await (await fetch("/openapi.json")).json();
    schema = document_.components.schemas.TrainingRequest;
    $("parameters").append(...HOSTED_FIELDS.map(numberInput));
    $("watch-parameters").append(...WATCH_FIELDS.map(numberInput));
  }
}

function problems(body) {
  // The API's own ranges, checked before anything is sent; the gateway checks them again.
  for (const name of [...HOSTED_FIELDS, ...WATCH_FIELDS]) {
    const value = body[name];
    if (value === undefined) continue;
    const field = fieldSchema(name);
    if (field.type === "string") {
      if (field.maxLength !== undefined && value.length > field.maxLength) {
        return `${name}: at most ${field.maxLength} characters`;
      }
      continue;
    }
    if (Number.isNaN(value)) return `${name}: not a number`;
    if (field.type === "integer" && !Number.isInteger(value)) return `${name}: a whole number`;
    if (field.minimum !== undefined && value < field.minimum) return `${name}: at least ${field.minimum}`;
    if (field.exclusiveMinimum !== undefined && value <= field.exclusiveMinimum) {
      return `${name}: more than ${field.exclusiveMinimum}`;
    }
    if (field.maximum !== undefined && value > field.maximum) return `${name}: at most ${field.maximum}`;
  }
  const prompts = body.sample_prompts || [];
  if (prompts.length > 8) return "sample_prompts: at most 8";
  if (body.sample_every_steps !== undefined && !prompts.length) {
    return "sample_every_steps: needs sample prompts";
  }
  return null;
}

function formBody() {
  const body = {};
  for (const name of [...HOSTED_FIELDS, ...WATCH_FIELDS]) {
    const input = $(name);
    if (input.value === "") continue;
    body[name] = input.type === "number" ? Number(input.value) : input.value;
  }
  const prompts = $("sample_prompts").value.split("\n").map((p) => p.trim()).filter(Boolean);
  if (prompts.length) body.sample_prompts = prompts;
  return body;
}

function upload(file) {
  // The platform's two steps: a ticket, then the bytes, with a progress bar.
  return api("/api/v3/media/uploads", { method: "POST", body: { filename: file.name, size: file.size } }).then(
    (ticket) =>
      new Promise((resolve, reject) => {
        const bar = $("upload-progress");
        bar.hidden = false;
        bar.value = 0;
        const request = new XMLHttpRequest();
        request.open(ticket.upload.method, ticket.upload.url);
        for (const [name, value] of Object.entries(ticket.upload.headers || {})) {
          request.setRequestHeader(name, value);
        }
        request.upload.onprogress = (event) => {
          if (event.lengthComputable) bar.value = (100 * event.loaded) / event.total;
        };
        request.onload = () => {
          if (request.status >= 200 && request.status < 300) {
            bar.value = 100;
            resolve(ticket.download_url);
          } else {
            let message = `upload: HTTP ${request.status}`;
            try {
              message = JSON.parse(request.responseText).message || message;
            } catch (error) {
              // not JSON: keep the status
            }
            reject(new Error(message));
          }
        };
        request.onerror = () => reject(new Error("upload: the connection failed"));
        request.send(file);
      }),
  );
}

function renderDataset(report) {
  const parts = [];
  if (report.error) parts.push(element("p", { class: "error", text: report.error }));
  if (report.warning) parts.push(element("p", { class: "hint", text: report.warning }));
  if (report.images.length) {
    parts.push(
      element("p", { text: `${report.images.length} image(s) will be trained on, with these captions:` }),
      element(
        "div",
        { class: "thumbs" },
        ...report.images.map((image) =>
          element(
            "figure",
            {},
            image.thumbnail ? element("img", { src: image.thumbnail, alt: image.name }) : "",
            element("figcaption", {}, element("strong", { text: image.name }), element("span", { text: image.caption })),
          ),
        ),
      ),
    );
  }
  if (report.skipped.length) {
    parts.push(
      element(
        "details",
        {},
        element("summary", { text: `${report.skipped.length} file(s) skipped` }),
        element("ul", {}, ...report.skipped.map((item) => element("li", { text: `${item.name}: ${item.reason}` }))),
      ),
    );
  }
  $("dataset-preview").replaceChildren(...parts);
}

async function prepareDataset(file) {
  // Uploaded at once, then read by the trainer's rules: the person sees what will be trained
  // on before starting.
  $("dataset-preview").replaceChildren(element("p", { class: "hint", text: "Uploading and checking…" }));
  const url = await upload(file);
  const trigger = $("trigger_word") ? $("trigger_word").value : undefined;
  const report = await api("/api/v3/datasets/inspect", {
    method: "POST",
    body: { data: url, trigger_word: trigger === undefined ? null : trigger },
  });
  renderDataset(report);
  return { url, report };
}

async function startRun(event) {
  event.preventDefault();
  const error = $("form-error");
  error.hidden = true;
  const body = formBody();
  const file = $("zip").files[0];
  const url = $("data-url").value.trim();
  let problem = problems(body);
  if (!problem && !file && !url) problem = "data: drop a zip or give its URL";
  if (problem) {
    error.textContent = problem;
    error.hidden = false;
    return;
  }
  $("start").disabled = true;
  try {
    if (file) {
      const { url: uploaded, report } = await (prepared || (prepared = prepareDataset(file)));
      if (report.error) throw new Error(report.error);
      body.data = uploaded;
    } else {
      body.data = url;
    }
    const created = await api(`/api/v3/${MODEL}`, { method: "POST", body });
    $("new-run").reset();
    prepared = null;
    $("dataset-preview").replaceChildren();
    $("zip-name").textContent = "";
    $("upload-progress").hidden = true;
    go(`#/runs/${created.id}`);
  } catch (failure) {
    if (file) prepared = null; // a failed upload is tried again at the next start
    error.textContent = failure.message;
    error.hidden = false;
  } finally {
    $("start").disabled = false;
  }
}

function chooseFile(files) {
  if (!files.length) return;
  const transfer = new DataTransfer();
  transfer.items.add(files[0]);
  $("zip").files = transfer.files;
  $("zip-name").textContent = `${files[0].name} (${(files[0].size / 1e6).toFixed(1)} MB)`;
  prepared = prepareDataset(files[0]);
  prepared.catch((failure) => {
    prepared = null;
    $("dataset-preview").replaceChildren(element("p", { class: "error", text: failure.message }));
  });
}

// --- one run ------------------------------------------------------------------------------

function conditionLine(condition) {
  const subject = CONDITION_WORDS[condition.type] || condition.type;
  const state = condition.status === "True" ? "yes" : condition.status === "False" ? "no" : "unknown";
  const words = condition.message ? `: ${condition.message}` : "";
  return element("li", { class: `condition ${condition.status}` },
    element("strong", { text: `${subject} — ${state}` }), ` (${condition.reason})${words}`);
}

function lossChart(points, live) {
  const steps = points.map((p) => p.step);
  const raw = points.map((p) => p.loss);
  const smoothed = points.map((p) => p.smoothed_loss);
  const last = steps.length ? steps[steps.length - 1] : 0;
  live.forEach(([step, value]) => {
    if (step > last) {
      steps.push(step);
      raw.push(null);
      smoothed.push(value);
    }
  });
  const data = [steps, raw, smoothed];
  const box = $("loss-chart");
  box.dataset.points = String(steps.length);
  if (!steps.length) {
    chart = null;
    box.replaceChildren(element("p", { class: "hint", text: "No step trained yet." }));
    return;
  }
  const width = Math.max(280, box.clientWidth || 600);
  if (!chart || chart.root.parentNode !== box) {
    box.replaceChildren();
    chart = new uPlot(
      {
        width,
        height: 260,
        scales: { x: { time: false } },
        series: [
          { label: "step" },
          { label: "loss", stroke: "#b7c4d6", width: 1, spanGaps: false },
          { label: "smoothed", stroke: "#2456a6", width: 2, spanGaps: true },
        ],
        axes: [{ label: "step" }, { label: "loss" }],
      },
      data,
      box,
    );
  } else {
    chart.setSize({ width, height: 260 });
    chart.setData(data);
  }
}

async function snapshotGrid(run) {
  const columns = run.snapshots.filter((s) => s.samples.length || s.files.length);
  const finalSamples = run.outputs.filter((u) => /\/sample_\d+\.png$/.test(u));
  const table = element("table", { class: "grid" });
  const head = element("tr", {}, element("th", { text: "" }));
  columns.forEach((s) => head.append(element("th", { text: `step ${s.step}` })));
  if (finalSamples.length) head.append(element("th", { text: "final" }));
  table.append(head);
  const prompts = run.sample_prompts.length ? run.sample_prompts : [];
  for (const [index, prompt] of prompts.entries()) {
    const row = element("tr", {}, element("th", { class: "prompt", text: prompt }));
    for (const url of [...columns.map((s) => s.samples[index]), ...(finalSamples.length ? [finalSamples[index]] : [])]) {
      const cell = element("td");
      if (url) {
        const img = element("img", { alt: `${prompt}`, "data-url": url, loading: "lazy" });
        cell.append(img);
        image(url).then((src) => { img.src = src; });
      }
      row.append(cell);
    }
    table.append(row);
  }
  const loras = element("tr", {}, element("th", { text: "LoRA" }));
  for (const s of columns) {
    const cell = element("td");
    s.files.forEach((url) => cell.append(downloadButton(url)));
    loras.append(cell);
  }
  if (finalSamples.length) loras.append(element("td"));
  table.append(loras);
  const box = $("snapshots");
  const signature = JSON.stringify([columns.map((s) => [s.step, s.samples, s.files]), finalSamples]);
  if (box.dataset.signature !== signature) {
    box.replaceChildren(columns.length || finalSamples.length ? table : element("p", {
      class: "hint",
      text: "None yet: set a save or sample interval when starting a run.",
    }));
    box.dataset.signature = signature;
  }
}

function downloadButton(url) {
  const name = decodeURIComponent(url.split("/").pop());
  return element("button", { type: "button", class: "download", "data-file": name, onclick: () => download(url) }, name);
}

function facts(run) {
  const rows = [
    ["Steps", `${run.step} of ${run.steps}`],
    ["LoRA rank", run.lora_rank],
    ["Trigger word", run.trigger_word || "none"],
    ["Learning rate", run.learning_rate ?? "default"],
    ["Time left", run.status === "processing" ? duration(run.eta_seconds) : ""],
    ["Sampling time", run.sampling_seconds ? duration(run.sampling_seconds) : ""],
    ["Trainer pods", run.attempts],
    ["Created", new Date(run.created_at).toLocaleString()],
  ].filter(([, value]) => value !== "" && value !== null && value !== undefined);
  $("run-facts").replaceChildren(
    ...rows.flatMap(([name, value]) => [element("dt", { text: name }), element("dd", { text: String(value) })]),
  );
}

function showRun(id) {
  chart = null;
  for (const part of ["run-name", "run-status", "run-progress", "run-error", "run-facts",
    "loss-chart", "snapshots", "downloads", "conditions"]) {
    $(part).replaceChildren();
  }
  $("run-error").hidden = true;
  $("cancel").hidden = true;
  $("snapshots").dataset.signature = "";
  $("cancel").onclick = async () => {
    if (!window.confirm("Cancel this run? The trainer stops; files already stored stay.")) return;
    try {
      await api(`/api/v3/predictions/${id}`, { method: "DELETE" });
      go("#/runs", "The run was cancelled.");
    } catch (error) {
      notice(error.message, true);
    }
  };
  poll(async () => {
    const [run, loss] = await Promise.all([
      api(`/api/v3/predictions/${id}/run`),
      api(`/api/v3/predictions/${id}/loss`),
    ]);
    $("run-name").textContent = run.name;
    $("run-status").replaceChildren(statusBadge(run));
    $("run-progress").replaceChildren(progressBar(run));
    $("run-error").textContent = run.error;
    $("run-error").hidden = !run.error;
    facts(run);
    const live = liveLoss.get(id) || [];
    if (run.loss !== null && (!live.length || live[live.length - 1][0] < run.step)) {
      live.push([run.step, run.loss]);
      liveLoss.set(id, live);
    }
    lossChart(loss.points, live);
    await snapshotGrid(run);
    $("downloads").replaceChildren(
      ...run.outputs.map((url) => element("li", {}, downloadButton(url))),
    );
    $("conditions").replaceChildren(...run.conditions.map(conditionLine));
    const finished = run.status === "completed" || run.status === "failed";
    $("cancel").hidden = finished;
    return !finished;
  });
}

// --- wiring -------------------------------------------------------------------------------

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("status-filter").addEventListener("change", () => poll(renderRuns));
  $("new-run").addEventListener("submit", startRun);
  $("zip").addEventListener("change", (event) => chooseFile(event.target.files));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    chooseFile(event.dataTransfer.files);
  });
  route();
});
