// The aimaas customer console: static files that call the public API with the customer's key.
// Rules kept throughout: data goes into the page with textContent only (never innerHTML), the
// key lives in sessionStorage while signed in and nowhere else (never in a URL or a log), and
// every call is an ordinary API call, so the console can do nothing the key cannot.
import { language, locale, setLanguage, t, translate } from "./i18n.js";

const KEY = "aimaas.key";
const API = ""; // same origin locally; in AWS, config.json may name the API's origin
let apiBase = API;
let account = null;

// ---- small DOM helpers (text only) ----------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== false && value != null) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}
const num = (value, digits = 0) =>
  new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(value);
const money = (value, currency = "USD") =>
  new Intl.NumberFormat(locale(), { style: "currency", currency, maximumFractionDigits: 6 }).format(
    Number(value));
const when = (iso) => (iso ? new Intl.DateTimeFormat(locale(), {
  dateStyle: "medium", timeStyle: "short" }).format(new Date(iso)) : "—");

function table(columns, rows) {
  const head = el("tr", {}, ...columns.map((c) => el("th", { text: t(c.title), class: c.num ? "num" : null })));
  const body = rows.map((row) => el("tr", {}, ...columns.map((c) => {
    const value = c.value(row);
    const cell = el("td", { class: c.num ? "num" : null });
    cell.append(value instanceof Node ? value : String(value ?? ""));
    return cell;
  })));
  return el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...body)));
}

// ---- the API ---------------------------------------------------------------------------------
const key = () => sessionStorage.getItem(KEY);

async function api(path, { method = "GET", body, type, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${key()}` };
  const form = body instanceof FormData; // the browser writes its multipart Content-Type
  if (type) headers["Content-Type"] = type;
  else if (body !== undefined && !form) headers["Content-Type"] = "application/json";
  const response = await fetch(apiBase + path, {
    method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    body: body === undefined || type || form ? body : JSON.stringify(body),
  });
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error.message; } catch { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return raw ? response : response.json();
}

function download(name, blob) {
  const url = URL.createObjectURL(blob); // a blob: URL of the data, never a URL with the key
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---- pages -------------------------------------------------------------------------------------
function monthsBack(count) {
  const now = new Date();
  return Array.from({ length: count }, (_, i) => {
    const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - i, 1));
    return d.toISOString().slice(0, 7);
  });
}
function monthRange(month) {
  const [y, m] = month.split("-").map(Number);
  return [`${month}-01`, new Date(Date.UTC(y, m, 1)).toISOString().slice(0, 10)];
}
function monthPicker(onChange) {
  const select = el("select", { id: "month", "aria-label": t("usage.month"), onchange: () => onChange(select.value) },
    ...monthsBack(12).map((m) => el("option", { value: m, text: m })));
  return select;
}

function barChart(rows) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", t("usage.daily"));
  const width = 600, height = 160, max = Math.max(1, ...rows.map((r) => r.calls));
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 16}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const step = width / Math.max(1, rows.length);
  rows.forEach((row, i) => {
    const h = (row.calls / max) * height;
    const rect = document.createElementNS(ns, "rect");
    Object.entries({ x: i * step + 1, y: height - h, width: Math.max(1, step - 2), height: h })
      .forEach(([k, v]) => rect.setAttribute(k, v));
    const title = document.createElementNS(ns, "title");
    title.textContent = `${row.day}: ${num(row.calls)}`;
    rect.append(title);
    svg.append(rect);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", i * step + step / 2);
    label.setAttribute("y", height + 12);
    label.setAttribute("text-anchor", "middle");
    label.textContent = row.day.slice(8);
    svg.append(label);
  });
  return svg;
}

async function usagePage(page) {
  const info = el("div", { class: "card", id: "plan" });
  const body = el("div", { id: "usage-body" });
  const picker = monthPicker(show);
  page.append(el("h1", { text: t("usage.title") }), info,
    el("label", { for: "month", text: t("usage.month") + " " }), picker, body);
  const used = account.month_to_date_calls;
  info.append(
    el("p", {}, `${t("usage.plan")}: `, el("strong", { text: account.plan }), ` — ${account.plan_description}`),
    el("p", { id: "used" }, `${t("usage.used")}: ${num(used)} / ${num(account.monthly_limit)} (${t("usage.limit")})`),
    el("progress", { max: account.monthly_limit, value: used, "aria-label": t("usage.used") }));
  async function show(month) {
    const [start, end] = monthRange(month);
    const q = `start=${start}&end=${end}`;
    const [byDay, byModel] = await Promise.all([
      api(`/v1/usage?${q}&group_by=day`), api(`/v1/usage?${q}&group_by=model,task`)]);
    body.replaceChildren();
    const days = new Map(byDay.rows.map((r) => [r.day, r]));
    const filled = [];
    for (let d = new Date(start + "T00:00:00Z"); d < new Date(end + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + 1)) {
      const day = d.toISOString().slice(0, 10);
      filled.push({ day, calls: days.get(day)?.calls ?? 0 });
    }
    body.append(el("h2", { text: t("usage.daily") }), barChart(filled),
      el("p", { id: "usage-total" }, `${t("usage.total")}: ${num(byDay.total_calls)} · ${money(byDay.total_cost, byDay.currency)}`));
    body.append(el("h2", { text: t("usage.bymodel") }));
    if (!byModel.rows.length) body.append(el("p", { text: t("usage.none") }));
    else body.append(table([
      { title: "col.model", value: (r) => r.model }, { title: "col.task", value: (r) => r.task },
      { title: "col.calls", num: true, value: (r) => num(r.calls) },
      { title: "col.units", num: true, value: (r) => `${num(r.units, 3)} ${r.unit}` },
      { title: "col.cost", num: true, value: (r) => money(r.cost, byModel.currency) },
    ], byModel.rows));
    body.append(el("h2", { text: t("col.day") }), table([
      { title: "col.day", value: (r) => r.day }, { title: "col.calls", num: true, value: (r) => num(r.calls) },
      { title: "col.cost", num: true, value: (r) => money(r.cost, byDay.currency) },
    ], byDay.rows));
  }
  await show(picker.value);
}

async function invoicesPage(page) {
  const body = el("div", { id: "invoice" });
  const picker = monthPicker(show);
  let current = null;
  const csv = el("button", { type: "button", id: "invoice-csv", class: "secondary", text: t("inv.csv"), onclick: async () => {
    const response = await api(`/v1/invoices/${picker.value}?format=csv`, { raw: true });
    download(`${current.invoice_id}.csv`, await response.blob());
  } });
  const json = el("button", { type: "button", id: "invoice-json", class: "secondary", text: t("inv.json"), onclick: () =>
    download(`${current.invoice_id}.json`, new Blob([JSON.stringify(current, null, 2)], { type: "application/json" })) });
  const print = el("button", { type: "button", class: "secondary", text: t("inv.print"), onclick: () => window.print() });
  page.append(el("h1", { text: t("inv.title") }), el("label", { for: "month", text: t("usage.month") + " " }),
    picker, " ", csv, " ", json, " ", print, body);
  async function show(month) {
    current = await api(`/v1/invoices/${month}`);
    const cur = current.currency;
    body.replaceChildren(
      el("div", { class: "card" },
        el("h2", { text: current.invoice_id }),
        el("p", {}, el("span", { id: "invoice-tenant", text: current.tenant_name }), ` · ${current.plan} · ${current.month}`),
        el("p", {}, `${t("inv.due")}: `, el("strong", { id: "invoice-due", text: money(current.amount_due, cur) }))),
      table([
        { title: "col.model", value: (l) => l.model }, { title: "col.task", value: (l) => l.task },
        { title: "col.calls", num: true, value: (l) => num(l.calls) },
        { title: "col.quantity", num: true, value: (l) => `${num(Number(l.quantity), 3)} ${l.unit}` },
        { title: "col.unit_price", num: true, value: (l) => money(l.unit_price, cur) },
        { title: "col.amount", num: true, value: (l) => money(l.amount, cur) },
      ], current.lines));
  }
  await show(picker.value);
}

async function keysPage(page) {
  page.append(el("h1", { text: t("keys.title") }));
  const secret = el("div", { id: "new-key", "aria-live": "assertive" });
  const list = el("div", { id: "key-list" });
  const log = el("div", { id: "audit" });
  const error = el("p", { class: "error", role: "alert" });
  const allowed = account.self_service_keys;
  if (!allowed) page.append(el("p", { class: "card", text: t("keys.noself") }));
  const label = el("input", { id: "key-label", maxlength: 64, disabled: !allowed });
  const form = el("form", { id: "create-key", onsubmit: async (event) => {
    event.preventDefault();
    await act(() => api("/v1/keys", { method: "POST", body: { label: label.value } }));
    label.value = "";
  } }, el("label", { for: "key-label", text: t("keys.label") }), label,
  el("button", { type: "submit", disabled: !allowed, text: t("keys.create") }));
  page.append(form, error, secret, list, el("h2", { text: t("keys.audit") }), log);

  async function act(call) {
    error.textContent = "";
    try {
      const result = await call();
      secret.replaceChildren();
      if (result && result.key) {
        secret.append(el("div", { class: "card" }, el("p", { text: t("keys.secret") }),
          el("code", { class: "secret", id: "secret", text: result.key })));
      }
      await refresh();
    } catch (e) { error.textContent = `${t("error")}: ${e.message}`; }
  }
  async function refresh() {
    const [keys, events] = await Promise.all([api("/v1/keys"), api("/v1/audit")]);
    list.replaceChildren(table([
      { title: "col.key", value: (k) => k.key_id + (k.key_id === account.key_id ? ` ${t("keys.current")}` : "") },
      { title: "col.label", value: (k) => k.label }, { title: "col.status", value: (k) => k.status },
      { title: "col.created", value: (k) => when(k.created_at) },
      { title: "col.last_used", value: (k) => when(k.last_used_at) },
      { title: "col.actions", value: (k) => (k.status !== "active" || !allowed ? "" : el("span", {},
        el("button", { type: "button", class: "secondary", "data-revoke": k.key_id, text: t("keys.revoke"),
          onclick: () => confirm(t("keys.confirm", { id: k.key_id })) &&
            act(() => api(`/v1/keys/${k.key_id}/revoke`, { method: "POST" })) }), " ",
        el("button", { type: "button", class: "secondary", "data-rotate": k.key_id, text: t("keys.rotate"),
          onclick: () => act(() => api(`/v1/keys/${k.key_id}/rotate`, { method: "POST" })) }))) },
    ], keys));
    log.replaceChildren(table([
      { title: "col.when", value: (e) => when(e.at) }, { title: "col.action", value: (e) => e.action },
      { title: "col.target", value: (e) => e.target }, { title: "col.actor", value: (e) => e.actor },
      { title: "col.status", value: (e) => e.outcome },
    ], events));
  }
  await refresh();
}

// The code shown for a call: the key is always the variable, never its value.
const shellQuote = (text) => `'${text.replaceAll("'", "'\\''")}'`;
function snippets(path, { json, file, type, fields }) {
  // apiBase is a full URL where the console has its own origin (CloudFront), a path locally.
  const url = /^https:\/\//.test(apiBase) ? `${apiBase}${path}` : `${location.origin}${apiBase}${path}`;
  const payload = json ? JSON.stringify(json) : null;
  if (fields) { // a multipart form: the file and its fields, as curl -F and requests' files=
    const curl = [`curl -s ${url}`, `-H "Authorization: Bearer $AIMAAS_KEY"`,
      `-F ${shellQuote(`file=@${file}`)}`,
      ...Object.entries(fields).map(([k, v]) => `-F ${shellQuote(`${k}=${v}`)}`)].join(" \\\n  ");
    const python = `import os, requests\nwith open(${JSON.stringify(file)}, "rb") as f:\n    r = requests.post(${JSON.stringify(url)},\n        headers={"Authorization": "Bearer " + os.environ["AIMAAS_KEY"]},\n        files={"file": f},\n        data=${JSON.stringify(fields)})\nprint(r.json())`;
    return el("div", { id: "snippets" }, el("h2", { text: t("pg.code") }),
      el("pre", { id: "curl" }, el("code", { text: curl })), el("pre", { id: "python" }, el("code", { text: python })));
  }
  const curl = json
    ? `curl -s ${url} \\\n  -H "Authorization: Bearer $AIMAAS_KEY" \\\n  -H 'Content-Type: application/json' \\\n  -d ${shellQuote(payload)}`
    : `curl -s ${url} \\\n  -H "Authorization: Bearer $AIMAAS_KEY" \\\n  -H 'Content-Type: ${type}' \\\n  --data-binary @${shellQuote(file)}`;
  const python = json
    ? `import os, requests\nr = requests.post(${JSON.stringify(url)},\n    headers={"Authorization": "Bearer " + os.environ["AIMAAS_KEY"]},\n    json=${payload})\nprint(r.json())`
    : `import os, requests\nwith open(${JSON.stringify(file)}, "rb") as f:\n    r = requests.post(${JSON.stringify(url)},\n        headers={"Authorization": "Bearer " + os.environ["AIMAAS_KEY"], "Content-Type": ${JSON.stringify(type)}},\n        data=f.read())\nprint(r.json())`;
  return el("div", { id: "snippets" }, el("h2", { text: t("pg.code") }),
    el("pre", { id: "curl" }, el("code", { text: curl })), el("pre", { id: "python" }, el("code", { text: python })));
}

function scoreBars(pairs) {
  const max = Math.max(...pairs.map(([, s]) => s), 1e-9);
  return el("ul", { class: "bars", id: "bars" }, ...pairs.map(([label, score]) => el("li", {},
    el("span", { class: "bar-label", text: label }),
    el("span", { class: "bar", style: null, "data-score": score }),
    el("span", { class: "num", text: num(score * 100, 1) + "%" }))));
}
function sizeBars(root) { // widths set through the CSSOM: a style attribute would need 'unsafe-inline'
  const bars = [...root.querySelectorAll(".bar")];
  const max = Math.max(...bars.map((b) => Number(b.dataset.score)), 1e-9);
  for (const bar of bars) bar.style.width = `${(Number(bar.dataset.score) / max) * 100}%`;
}

async function playgroundPage(page) {
  const out = el("div", { id: "result", "aria-live": "polite" });
  const error = el("p", { class: "error", role: "alert" });
  const panel = el("div");
  const tabs = [["text", "pg.text", textPanel], ["embed", "pg.embed", embedPanel], ["image", "pg.image", imagePanel],
    ["audio", "pg.audio", audioPanel]];
  const bar = el("div", { class: "tabs", role: "tablist" });
  const select = (id) => {
    for (const b of bar.children) b.setAttribute("aria-selected", String(b.dataset.tab === id));
    panel.replaceChildren(); out.replaceChildren(); error.textContent = "";
    tabs.find(([tab]) => tab === id)[2]();
  };
  for (const [id, title] of tabs)
    bar.append(el("button", { type: "button", role: "tab", "data-tab": id, id: `tab-${id}`, text: t(title), onclick: () => select(id) }));
  page.append(el("h1", { text: t("pg.title") }), bar, panel, error, out);

  async function run(path, options, render) {
    error.textContent = "";
    try {
      const result = await api(path, options);
      out.replaceChildren(render(result));
      if (result.usage) out.append(el("p", { id: "billed", text: `${t("pg.cost")}: ${JSON.stringify(result.usage)}` }));
      sizeBars(out);
      return result;
    } catch (e) { error.textContent = `${t("error")}: ${e.message}`; return null; }
  }
  function textPanel() {
    const text = el("textarea", { id: "pg-text", text: "The striker scored twice in the final." });
    const labels = el("input", { id: "pg-labels", placeholder: "sports, politics, cooking" });
    panel.append(el("form", { onsubmit: async (event) => {
      event.preventDefault();
      const json = { text: text.value };
      const candidates = labels.value.split(",").map((s) => s.trim()).filter(Boolean);
      if (candidates.length) json.labels = candidates;
      const result = await run("/v1/text-classification", { method: "POST", body: json }, (r) => el("div", {},
        el("p", {}, el("strong", { id: "pg-label", text: r.label }), ` (${num(r.score * 100, 1)}%, ${r.model})`),
        scoreBars(Object.entries(r.scores).sort((a, b) => b[1] - a[1]).slice(0, 8))));
      if (result) out.append(snippets("/v1/text-classification", { json }));
    } }, el("label", { for: "pg-text", text: t("pg.input") }), text,
    el("label", { for: "pg-labels", text: t("pg.labels") }), labels,
    el("button", { type: "submit", id: "pg-run", text: t("pg.run") })));
  }
  function embedPanel() {
    const a = el("input", { id: "pg-a", value: "hello world" });
    const b = el("input", { id: "pg-b", value: "你好，世界" });
    panel.append(el("form", { onsubmit: async (event) => {
      event.preventDefault();
      const json = { input: [a.value, b.value] };
      const result = await run("/v1/embeddings", { method: "POST", body: json }, (r) => {
        const [x, y] = r.data.map((d) => d.embedding);
        const dot = x.reduce((s, v, i) => s + v * y[i], 0);
        const norm = (v) => Math.sqrt(v.reduce((s, w) => s + w * w, 0));
        const cosine = dot / (norm(x) * norm(y));
        return el("p", {}, `${t("pg.similarity")}: `, el("strong", { id: "pg-similarity", text: num(cosine, 3) }),
          ` (${r.model}, ${x.length} dims)`);
      });
      if (result) out.append(snippets("/v1/embeddings", { json }));
    } }, el("label", { for: "pg-a", text: t("pg.a") }), a, el("label", { for: "pg-b", text: t("pg.b") }), b,
    el("button", { type: "submit", id: "pg-run", text: t("pg.run") })));
  }
  function imagePanel() {
    const file = el("input", { id: "pg-file", type: "file", accept: "image/jpeg,image/png" });
    const preview = el("img", { id: "pg-preview", alt: "", width: 160 });
    panel.append(el("form", { onsubmit: async (event) => {
      event.preventDefault();
      const chosen = file.files[0];
      if (!chosen) return;
      preview.src = URL.createObjectURL(chosen);
      const type = chosen.type || "image/jpeg";
      const result = await run("/v1/image-classification", { method: "POST", body: chosen, type }, (r) => el("div", {},
        el("p", {}, el("span", { id: "pg-filename", text: chosen.name }), ": ", el("strong", { id: "pg-label", text: r.label })),
        scoreBars(r.predictions.map((p) => [p.label, p.score]))));
      if (result) out.append(snippets("/v1/image-classification", { file: chosen.name, type }));
    } }, el("label", { for: "pg-file", text: t("pg.file") }), file,
    el("button", { type: "submit", id: "pg-run", text: t("pg.run") }), preview));
  }
  function audioPanel() {
    // A file, or a recording from the microphone (MediaRecorder, WebM/Opus in Chromium); either
    // goes up as OpenAI's multipart form, the file field plus the model.
    const file = el("input", { id: "pg-audio-file", type: "file", accept: "audio/*" });
    const player = el("audio", { id: "pg-player", controls: true, hidden: true });
    const status = el("span", { id: "pg-rec-status", "aria-live": "polite" });
    let recorded = null, recorder = null;
    const record = el("button", { type: "button", id: "pg-record", class: "secondary", text: t("pg.record"), onclick: async () => {
      if (recorder) { recorder.stop(); return; }
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        const chunks = [];
        recorder = new MediaRecorder(stream);
        recorder.addEventListener("dataavailable", (e) => { if (e.data.size) chunks.push(e.data); });
        recorder.addEventListener("stop", () => {
          for (const track of stream.getTracks()) track.stop();
          const type = (recorder.mimeType || "audio/webm").split(";")[0];
          recorded = new File(chunks, `recording.${type.split("/")[1] || "webm"}`, { type });
          recorder = null;
          file.value = "";
          player.src = URL.createObjectURL(recorded); player.hidden = false;
          record.textContent = t("pg.record");
          status.textContent = `${t("pg.recorded")}: ${recorded.name} (${num(recorded.size / 1024, 1)} kB)`;
        });
        recorder.start();
        record.textContent = t("pg.stop");
        status.textContent = t("pg.recording");
      } catch (e) { error.textContent = `${t("pg.nomic")}: ${e.message}`; recorder = null; }
    } });
    file.addEventListener("change", () => { recorded = null; player.hidden = true; status.textContent = ""; });
    panel.append(el("form", { onsubmit: async (event) => {
      event.preventDefault();
      const chosen = file.files[0] || recorded;
      if (!chosen) return;
      const fields = { model: "whisper-1" };
      const form = new FormData();
      form.append("file", chosen, chosen.name);
      for (const [k, v] of Object.entries(fields)) form.append(k, v);
      const result = await run("/v1/audio/transcriptions", { method: "POST", body: form }, (r) => el("div", {},
        el("p", {}, el("span", { id: "pg-filename", text: chosen.name }), ` (${num(r.usage.seconds)} s)`),
        el("h2", { text: t("pg.transcript") }), el("blockquote", { id: "pg-transcript", text: r.text })));
      if (result) out.append(snippets("/v1/audio/transcriptions", { file: chosen.name, fields }));
    } }, el("label", { for: "pg-audio-file", text: t("pg.audiofile") }), file,
    el("p", {}, record, " ", status), player,
    el("button", { type: "submit", id: "pg-run", text: t("pg.run") })));
  }
  select("text");
}

// Figures from each model's manifest (the export gate): tiny differences are shown in
// scientific notation rather than rounded to 0.
const figure = (v) => (typeof v !== "number" ? String(v)
  : v !== 0 && Math.abs(v) < 0.001 ? v.toExponential(1) : num(v, 4));
function parityCell(m) {
  const p = m.parity;
  if (!p) return "—";
  return el("span", { class: "parity", "data-model": m.name },
    el("strong", { text: p.passed ? `✓ ${t("models.passed")}` : `✗ ${t("models.failed")}` }),
    ` ${t("models.vs")} ${p.reference} (n=${p.samples}): `,
    Object.entries(p.metrics).map(([k, v]) => `${k} ${figure(v)}`).join(", "));
}
function accuracyCell(m) {
  return el("span", { class: "accuracy", "data-model": m.name }, ...(m.accuracy || []).map((a, i) =>
    el("span", { title: a.dataset, text: `${i ? "; " : ""}${a.metric} ${figure(a.value)} (n=${a.samples})` })));
}

async function modelsPage(page) {
  const models = await api("/v1/models");
  page.append(el("h1", { text: t("models.title") }), table([
    { title: "col.name", value: (m) => m.name }, { title: "col.task", value: (m) => m.task },
    { title: "col.labels", value: (m) => (m.labels || []).slice(0, 12).join(", ") + ((m.labels || []).length > 12 ? " …" : "") },
    { title: "col.price", num: true, value: (m) => (m.price ? `${money(m.price.usd, m.price.currency)} / ${m.price.unit}` : "—") },
    { title: "col.parity", value: parityCell },
    { title: "col.accuracy", value: accuracyCell },
  ], models.data));
}

const PAGES = { usage: usagePage, invoices: invoicesPage, keys: keysPage, playground: playgroundPage, models: modelsPage };

// ---- shell -------------------------------------------------------------------------------------
async function route() {
  const signin = document.getElementById("signin");
  const page = document.getElementById("page");
  const signedIn = Boolean(key());
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn;
  if (!signedIn) {
    signin.hidden = false; page.hidden = true;
    document.getElementById("who").textContent = "";
    document.getElementById("key").focus();
    return;
  }
  const name = (location.hash.slice(1) || "usage");
  const show = PAGES[name] || usagePage;
  signin.hidden = true; page.hidden = false;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === `#${name}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  page.replaceChildren();
  try {
    account = await api("/v1/account");
    document.getElementById("who").textContent = `${account.tenant_name} · ${account.plan}`;
    await show(page);
    page.dataset.ready = name;
  } catch (e) {
    if (e.status === 401 || e.status === 403) { signOut(); return; }
    page.append(el("p", { class: "error", role: "alert", text: `${t("error")}: ${e.message}` }));
  }
}

function signOut() {
  sessionStorage.removeItem(KEY);
  account = null;
  document.getElementById("page").replaceChildren();
  route();
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById("key");
  const error = document.getElementById("signin-error");
  sessionStorage.setItem(KEY, input.value.trim());
  input.value = "";
  try {
    await api("/v1/account");
    error.textContent = "";
    if (!location.hash) location.hash = "#usage"; else route();
  } catch {
    sessionStorage.removeItem(KEY);
    error.textContent = t("signin.bad");
  }
}

// A sign-in link (`python -m aimaas_admin console-link`) carries a short-lived key in the URL
// fragment, which no server ever receives. Take it into this tab's storage and wipe it from the
// address bar and the history entry before anything else runs.
function consumeSignInLink() {
  const match = /^#signin=(amk_[A-Za-z0-9_-]+)$/.exec(location.hash);
  if (!location.hash.startsWith("#signin=")) return;
  history.replaceState(null, "", `${location.pathname}${location.search}#usage`);
  if (match) sessionStorage.setItem(KEY, match[1]);
}

async function start() {
  consumeSignInLink();
  try { // where the API is, for a console served from another origin (CloudFront)
    const config = await (await fetch("config.json", { cache: "no-store" })).json();
    apiBase = config.api_base || API;
  } catch { apiBase = API; }
  translate();
  const lang = document.getElementById("lang");
  lang.textContent = language() === "zh" ? "English" : "中文";
  lang.addEventListener("click", () => {
    setLanguage(language() === "zh" ? "en" : "zh");
    lang.textContent = language() === "zh" ? "English" : "中文";
    translate(); route();
  });
  document.getElementById("signin-form").addEventListener("submit", signIn);
  document.getElementById("signout").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  await route();
}

start();
