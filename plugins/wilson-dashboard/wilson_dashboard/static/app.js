/* Wilson dashboard, Training tab.  No build step, no framework.
 *
 * Captured text is hostile: this file never assigns innerHTML with data; every
 * piece of text goes through document.createTextNode / textContent.
 */
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const APP = document.getElementById("app");
const $ = (id) => document.getElementById(id);

const S = {
  items: [],
  index: -1,
  cursor: null,
  loading: false,
  selected: new Set(),
  marks: { chosen: null, rejected: null },
  undo: [],
  detail: null,
  compare: null,
  editor: null,
  lastProvider: APP.dataset.regenerate || "",
  requestId: 0,
  pending: 0, // requests in flight (the page is idle when this is 0 and the key queue is empty)
};

/* ---------- small helpers ---------- */

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return node;
}

async function api(path, body) {
  const options = { headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.headers["X-CSRF-Token"] = CSRF;
    options.body = JSON.stringify(body);
  }
  S.pending += 1;
  let response;
  try {
    response = await fetch(path, options);
  } finally {
    S.pending -= 1;
  }
  let data = {};
  try { data = await response.json(); } catch (e) { data = {}; }
  if (!response.ok) {
    const error = new Error(data.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.kind = data.kind;
    throw error;
  }
  return data;
}

let toastTimer = null;
function toast(message, kind) {
  const box = $("toast");
  box.textContent = message;
  box.className = "toast show " + (kind || "");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.className = "toast"; }, kind === "error" ? 6000 : 2200);
}

function fail(error) { toast(error.message || String(error), "error"); }

function fmtNumber(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString(); }
function whenCell(iso) {
  const d = new Date(iso);
  if (!iso || isNaN(d)) return [el("div", {}, iso || "")];
  const pad = (x) => String(x).padStart(2, "0");
  return [el("div", { class: "time" }, `${pad(d.getHours())}:${pad(d.getMinutes())}`), el("div", { class: "muted small" }, `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`)];
}
function fmtWhen(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const pad = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
function stars(rating) { return rating ? "★".repeat(rating) + "☆".repeat(5 - rating) : ""; }
function pretty(value) { return typeof value === "string" ? value : JSON.stringify(value, null, 2); }

/* Long text is folded, never cut: the whole text is in the page, a button unfolds it. */
function foldable(text, extraClass) {
  const value = text === null || text === undefined ? "" : String(text);
  const pre = el("pre", { class: "text " + (extraClass || "") }, value);
  const lines = value.split("\n").length;
  if (value.length <= 1200 && lines <= 18) return pre;
  pre.classList.add("folded");
  const button = el("button", { type: "button", class: "unfold" }, `Show all · ${value.length.toLocaleString()} chars, ${lines} lines`);
  button.addEventListener("click", () => {
    const folded = pre.classList.toggle("folded");
    button.textContent = folded ? `Show all · ${value.length.toLocaleString()} chars, ${lines} lines` : "Fold";
  });
  return el("div", { class: "foldbox" }, pre, button);
}

/* ---------- filters and URL ---------- */

const FILTER_NAMES = ["q", "call_type", "model", "provider", "status", "annotated", "min_rating", "max_rating", "judge", "tag", "run", "since", "until", "sort"];

function filterParams() {
  const params = new URLSearchParams();
  for (const name of FILTER_NAMES) {
    const input = $("f-" + name);
    const value = input && input.value.trim();
    if (value && !(name === "sort" && value === "newest")) params.set(name, value);
  }
  return params;
}

function applyUrlFilters() {
  const params = new URLSearchParams(location.search);
  for (const name of FILTER_NAMES) {
    const input = $("f-" + name);
    if (!input || !params.has(name)) continue;
    const value = params.get(name);
    if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === value)) {
      input.appendChild(el("option", { value }, value));
    }
    input.value = value;
  }
  return params.get("focus");
}

function syncUrl() {
  const params = filterParams();
  const query = params.toString();
  history.replaceState(null, "", query ? "?" + query : location.pathname);
  for (const link of document.querySelectorAll(".export-link")) {
    link.href = `/api/export/${link.dataset.format}` + (query ? "?" + query : "");
  }
}

async function loadFacets() {
  try {
    const facets = await api("/api/facets");
    const fill = (id, values) => {
      const select = $(id);
      const current = select.value;
      for (const value of values) {
        if (![...select.options].some((o) => o.value === value)) select.appendChild(el("option", { value }, value));
      }
      select.value = current;
    };
    fill("f-call_type", facets.call_types);
    fill("f-model", facets.models);
    fill("f-provider", facets.providers);
    fill("f-status", facets.statuses);
    const list = $("tag-list");
    list.replaceChildren(...facets.tags.map((t) => el("option", { value: t })));
  } catch (error) { fail(error); }
}

/* Stats count what the exports would write: that can take a second at 100k rows, so after a
   label change they are refreshed once the person pauses, and never two at a time. */
let statsTimer = null;
let statsRunning = null;
function scheduleStats(delay) {
  clearTimeout(statsTimer);
  statsTimer = setTimeout(async () => {
    if (statsRunning) { await statsRunning; }
    statsRunning = loadStats().finally(() => { statsRunning = null; });
  }, delay === undefined ? 1200 : delay);
}

async function loadStats() {
  try {
    const stats = await api("/api/stats?" + filterParams());
    $("stat-total").textContent = fmtNumber(stats.total);
    $("stat-annotated").textContent = fmtNumber(stats.annotated);
    const percent = stats.total ? Math.round((100 * stats.annotated) / stats.total) : 0;
    $("stat-progress").style.width = percent + "%";
    $("stat-percent").textContent = `${percent}% labelled`;
    $("stat-proposals").textContent = fmtNumber(stats.proposals);
    for (const fmt of ["sft", "dpo", "kto"]) {
      const value = stats.export[fmt];
      $("stat-" + fmt).textContent = value === undefined ? "–" : fmtNumber(value);
      $("stat-" + fmt).title = stats.export_error || "records the export with these filters writes";
    }
  } catch (error) { fail(error); }
}

/* ---------- the list ---------- */

/* One load at a time; callers that need the rows (j at the end of the list) await the same promise. */
function loadList(reset, focusId) {
  if (S.loadingPromise && !reset) return S.loadingPromise;
  const promise = fetchPage(reset, focusId).finally(() => { if (S.loadingPromise === promise) S.loadingPromise = null; });
  S.loadingPromise = promise;
  return promise;
}

async function fetchPage(reset, focusId) {
  S.loading = true;
  const request = ++S.requestId;
  if (reset) { S.cursor = null; }
  const params = filterParams();
  if (!reset && S.cursor) params.set("cursor", S.cursor);
  $("list-status").textContent = "Loading…";
  try {
    const page = await api("/api/interactions?" + params);
    if (request !== S.requestId) return;
    if (reset) { S.items = []; S.index = -1; $("rows").replaceChildren(); }
    const start = S.items.length;
    S.items.push(...page.items);
    S.cursor = page.next_cursor;
    const body = $("rows");
    page.items.forEach((item, offset) => body.appendChild(renderRow(item, start + offset)));
    $("more").hidden = !S.cursor;
    $("list-status").textContent = S.items.length
      ? `${S.items.length.toLocaleString()} shown${S.cursor ? "" : " · end of list"} · page in ${page.query_ms} ms`
      : "Nothing matches these filters.";
    if (reset) {
      const wanted = focusId ? S.items.findIndex((i) => i.id === focusId) : -1;
      if (S.items.length) select(wanted >= 0 ? wanted : 0);
      else $("detail").replaceChildren(el("div", { class: "empty" }, "Nothing matches these filters."));
    }
  } catch (error) {
    fail(error);
    $("list-status").textContent = error.message;
  } finally {
    S.loading = false;
  }
}

function renderRow(item, index) {
  const label = item.label || {};
  const check = el("input", { type: "checkbox", class: "row-check", "aria-label": "select" });
  check.checked = S.selected.has(item.id);
  check.addEventListener("click", (event) => { event.stopPropagation(); toggleSelected(item.id, check.checked); });
  const badges = [];
  if (item.status !== "ok") badges.push(el("span", { class: "chip danger", title: item.error || "" }, item.status));
  for (const name of item.tool_calls) badges.push(el("span", { class: "chip tool" }, "⚙ " + (name || "?")));
  if (label.preference) badges.push(el("span", { class: "chip pref-" + label.preference }, label.preference));
  if (label.corrected_response !== null && label.corrected_response !== undefined) badges.push(el("span", { class: "chip corrected" }, "corrected"));
  for (const tag of label.tags || []) badges.push(el("span", { class: "chip tag" }, "#" + tag));
  if (item.judge) badges.push(el("span", { class: "chip judge judge-" + item.judge.status, title: item.judge.notes || "" }, `⚖ ${item.judge.rating || "?"}★ ${item.judge.status}`));
  if (S.marks.chosen === item.id) badges.push(el("span", { class: "chip mark" }, "marked chosen"));
  if (S.marks.rejected === item.id) badges.push(el("span", { class: "chip mark" }, "marked rejected"));
  const starCell = el("td", { class: "col-rating" }, starButtons(item, label.rating));
  const row = el(
    "tr",
    { class: "row" + (S.selected.has(item.id) ? " selected" : "") + (index === S.index ? " current" : ""), dataset: { index: String(index), id: item.id } },
    el("td", { class: "col-check" }, check),
    el("td", { class: "col-when", title: item.created_at }, ...whenCell(item.created_at)),
    el("td", { class: "col-type" }, el("span", { class: "chip type" }, item.call_type || "–"), el("div", { class: "muted small model", title: `${item.provider}:${item.model} · call #${item.sequence_num} of its run` }, `${item.model} · #${item.sequence_num}`)),
    el(
      "td",
      { class: "col-prompt" },
      el("div", { class: "prompt" }, item.prompt || el("span", { class: "muted" }, "(no user message)")),
      el("div", { class: "response" }, item.response || (item.tool_calls.length ? "" : el("span", { class: "muted" }, item.error || "(empty)"))),
      badges.length ? el("div", { class: "badges" }, badges) : null,
    ),
    starCell,
    el("td", { class: "col-meta" }, el("div", {}, fmtNumber(item.total_tokens)), el("div", { class: "muted small" }, item.duration_ms !== null ? Math.round(item.duration_ms) + " ms" : "")),
  );
  row.addEventListener("click", () => select(index));
  return row;
}

function starButtons(item, rating) {
  const box = el("div", { class: "stars", role: "group", "aria-label": "rating" });
  for (let n = 1; n <= 5; n++) {
    const button = el("button", { type: "button", class: "star" + (rating && n <= rating ? " on" : ""), title: `${n} star${n > 1 ? "s" : ""} (${n})` }, "★");
    button.addEventListener("click", (event) => { event.stopPropagation(); queue(() => rateOne(S.items.indexOf(item), n, false)); });
    box.appendChild(button);
  }
  return box;
}

function rerenderRow(index) {
  const old = document.querySelector(`#rows tr[data-index="${index}"]`);
  if (old) old.replaceWith(renderRow(S.items[index], index));
}

function updateLabels(labels) {
  for (const [id, value] of Object.entries(labels || {})) {
    const index = S.items.findIndex((i) => i.id === id);
    if (index >= 0) {
      S.items[index].label = value.label;
      S.items[index].judge = value.judge;
      rerenderRow(index);
    }
    if (S.detail && S.detail.id === id) loadDetail(id);
  }
}

async function select(index) {
  if (index < 0 || index >= S.items.length) return;
  const previous = document.querySelector("#rows tr.current");
  if (previous) previous.classList.remove("current");
  S.index = index;
  const row = document.querySelector(`#rows tr[data-index="${index}"]`);
  if (row) { row.classList.add("current"); row.scrollIntoView({ block: "nearest" }); }
  loadDetail(S.items[index].id);
  if (S.cursor && index >= S.items.length - 10) loadList(false); // prefetch: j never waits
}

async function move(step) {
  let next = S.index + step;
  if (next >= S.items.length && S.cursor) {
    await loadList(false);
  }
  next = Math.max(0, Math.min(next, S.items.length - 1));
  if (next !== S.index) select(next);
}

function current() { return S.index >= 0 ? S.items[S.index] : null; }

function toggleSelected(id, on) {
  if (on) S.selected.add(id); else S.selected.delete(id);
  const index = S.items.findIndex((i) => i.id === id);
  if (index >= 0) rerenderRow(index);
  $("bulkbar").hidden = S.selected.size === 0;
  $("bulk-count").textContent = S.selected.size;
}

function clearSelection() {
  const ids = [...S.selected];
  S.selected.clear();
  ids.forEach((id) => toggleSelected(id, false));
  $("select-page").checked = false;
}

/* ---------- detail ---------- */

let detailTimer = null;
function loadDetail(id) {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(async () => {
    try {
      const data = await api("/api/interactions/" + encodeURIComponent(id));
      if (!current() || current().id !== id) return;
      S.detail = data;
      renderDetail(data);
    } catch (error) { fail(error); }
  }, 60);
}

function section(title, ...children) {
  return el("section", { class: "block" }, el("h3", {}, title), ...children);
}

function messageBlock(message) {
  const parts = [el("div", { class: "role" }, message.role + (message.name ? " · " + message.name : "") + (message.tool_call_id ? " · " + message.tool_call_id : ""))];
  if (message.content !== null && message.content !== undefined && message.content !== "") parts.push(foldable(pretty(message.content)));
  for (const call of message.tool_calls || []) {
    const fn = call.function || {};
    parts.push(el("div", { class: "toolcall" }, el("span", { class: "tool-name" }, "⚙ " + (fn.name || "?")), foldable(pretty(fn.arguments))));
  }
  return el("div", { class: "msg role-" + message.role }, parts);
}

function renderDetail(data) {
  const label = data.label || {};
  const judge = data.judge;
  const system = data.messages.find((m) => m.role === "system");
  const rest = data.messages.filter((m) => m !== system);
  const head = el(
    "div",
    { class: "detail-head" },
    el("div", { class: "detail-title" }, el("span", { class: "chip type" }, data.call_type || "–"), el("span", {}, `${data.provider}:${data.model}`), data.status !== "ok" ? el("span", { class: "chip danger" }, data.status) : null),
    el(
      "div",
      { class: "facts" },
      el("span", { title: "interaction id" }, el("code", {}, data.id)),
      el("a", { href: "/runs/" + encodeURIComponent(data.run_id), class: "link", title: "open the run (o)" }, `run #${data.sequence_num}`),
      el("span", {}, fmtWhen(data.created_at)),
      el("span", {}, `${fmtNumber(data.input_tokens)} in · ${fmtNumber(data.output_tokens)} out · ${fmtNumber(data.total_tokens)} tokens`),
      el("span", {}, `${Math.round(data.duration_ms)} ms`),
      Object.keys(data.params || {}).length ? el("span", { class: "muted" }, "params " + JSON.stringify(data.params)) : null,
    ),
  );
  const labelBox = el(
    "div",
    { class: "labelbox" },
    el("div", { class: "big-stars" }, starButtons(current() || data, label.rating)),
    el("div", { class: "label-facts" },
      label.preference ? el("span", { class: "chip pref-" + label.preference }, label.preference) : null,
      ...(label.tags || []).map((t) => el("span", { class: "chip tag" }, "#" + t)),
      label.notes ? el("div", { class: "notes" }, "📝 ", label.notes) : null,
      label.version ? el("div", { class: "muted small" }, `version ${label.version} · ${label.source} · ${label.annotator}`) : el("div", { class: "muted small" }, "not labelled yet"),
    ),
    el("div", { class: "actions" },
      el("button", { type: "button", class: "button small", onclick: () => queue(() => openCompare()) }, `Compare (${data.alternatives || 0}) p`),
      el("button", { type: "button", class: "button small", onclick: () => queue(() => openEditor("correct")) }, "Correct e"),
      el("button", { type: "button", class: "button small", onclick: () => queue(() => regenerate()) }, "Regenerate g"),
      el("button", { type: "button", class: "button small ghost", onclick: () => queue(() => undo()) }, "Undo u"),
    ),
  );
  const judgeBox = judge
    ? el("div", { class: "judgebox judge-" + judge.status },
        el("div", { class: "judge-title" }, el("strong", {}, "Judge " + judge.annotator.replace(/^judge:/, "")), el("span", { class: "stars-static" }, stars(judge.rating)), el("span", { class: "chip judge judge-" + judge.status }, judge.status)),
        judge.notes ? el("div", { class: "small" }, judge.notes) : null,
        judge.status === "proposed" ? el("div", { class: "actions" },
          el("button", { type: "button", class: "button small good", onclick: () => queue(() => decide("accept")) }, "Accept a"),
          el("button", { type: "button", class: "button small bad", onclick: () => queue(() => decide("reject")) }, "Reject d")) : null)
    : null;
  const answer = [];
  if (data.error) answer.push(el("pre", { class: "text error" }, data.error));
  if (data.response_content !== null) answer.push(foldable(data.response_content));
  for (const call of data.tool_calls) {
    answer.push(
      el("div", { class: "toolcall" },
        el("span", { class: "tool-name" }, "⚙ " + call.name), el("span", { class: "muted small" }, " " + call.id),
        call.raw_arguments !== null ? el("div", { class: "chip danger" }, "malformed arguments") : null,
        foldable(call.raw_arguments !== null ? call.raw_arguments : pretty(call.arguments)),
        call.result
          ? el("div", { class: "toolresult" + (call.result.is_error ? " error" : "") }, el("div", { class: "role" }, `result${call.result.duration_ms !== null ? " · " + Math.round(call.result.duration_ms) + " ms" : ""}`), foldable(call.result.content))
          : el("div", { class: "muted small" }, "no result recorded")),
    );
  }
  for (const result of data.unlinked_tool_results || []) {
    answer.push(el("div", { class: "toolresult" }, el("div", { class: "role" }, "result of " + result.name), foldable(result.content)));
  }
  const blocks = [head, labelBox, judgeBox];
  if (label.corrected_response !== null && label.corrected_response !== undefined) {
    blocks.push(section("Corrected response (gold answer)", foldable(label.corrected_response, "corrected")));
  }
  blocks.push(section("Response", ...answer));
  if (data.shadows) blocks.push(shadowSection(data.id, data.shadows));
  if (system) blocks.push(section("System prompt", foldable(system.content)));
  blocks.push(section(`Messages (${rest.length})`, ...rest.map(messageBlock)));
  if (data.tools && data.tools.length) {
    blocks.push(section(`Tools offered (${data.tools.length})`, foldable(pretty(data.tools))));
  }
  if (data.pairs && data.pairs.length) {
    blocks.push(section("Pairs", ...data.pairs.map((p) => el("div", { class: "small" }, p.chosen_id === data.id ? "chosen over " : "rejected for ", el("code", {}, p.chosen_id === data.id ? p.rejected_id : p.chosen_id), ` · ${p.source}`))));
  }
  if (data.history && data.history.length) {
    blocks.push(section("History", el("ol", { class: "history" }, ...data.history.map((v) =>
      el("li", { class: v.undone_at ? "undone" : "" }, `v${v.version} ${v.source}/${v.annotator} ${v.status} `, stars(v.rating), v.preference ? " " + v.preference : "", (v.tags || []).length ? " #" + v.tags.join(" #") : "", v.corrected_response !== null ? " corrected" : "", v.undone_at ? " (undone)" : "")))));
  }
  $("detail").replaceChildren(...blocks.filter(Boolean));
}

/* ---------- actions ---------- */

async function rateOne(index, stars, advance) {
  const item = S.items[index];
  if (!item) return;
  try {
    const data = await api(`/api/interactions/${encodeURIComponent(item.id)}/label`, { rating: stars });
    S.undo.push([item.id]);
    updateLabels(data.labels);
    if (advance) await move(1);
    scheduleStats();
  } catch (error) { fail(error); }
}

async function bulk(fields, message) {
  const ids = [...S.selected];
  try {
    const data = await api("/api/bulk", { ids, ...fields });
    S.undo.push(ids);
    updateLabels(data.labels);
    toast(`${message} · ${ids.length} interaction${ids.length > 1 ? "s" : ""}`);
    clearSelection();
    scheduleStats();
  } catch (error) { fail(error); }
}

async function rate(n) {
  if (S.selected.size) return bulk({ rating: n }, `${n}★`);
  if (S.index >= 0) return rateOne(S.index, n, true);
}

async function undo() {
  // your changes in this page first; after a reload, the current row's latest version
  const ids = S.undo.pop() || (current() ? [current().id] : null);
  if (!ids) { toast("Nothing to undo"); return; }
  try {
    let labels = {};
    for (const id of ids) {
      const data = await api(`/api/interactions/${encodeURIComponent(id)}/undo`, {});
      labels = { ...labels, ...data.labels };
    }
    updateLabels(labels);
    toast("Undone");
    scheduleStats();
  } catch (error) { fail(error); }
}

async function makePair(chosenId, rejectedId, force) {
  try {
    const data = await api("/api/pairs", { chosen_id: chosenId, rejected_id: rejectedId, force: !!force });
    S.undo.push([chosenId]);
    S.marks = { chosen: null, rejected: null };
    updateLabels(data.labels);
    toast("Pair saved: chosen ✓ rejected ✗");
    scheduleStats();
    return true;
  } catch (error) {
    if (error.status === 409 && !force && /different contexts/.test(error.message)) {
      if (confirm(error.message + "\n\nPair them anyway?")) return makePair(chosenId, rejectedId, true);
      return false;
    }
    fail(error);
    return false;
  }
}

async function mark(kind) {
  const item = current();
  if (!item) return;
  const other = kind === "chosen" ? "rejected" : "chosen";
  S.marks[kind] = item.id;
  if (S.marks[other] === item.id) S.marks[other] = null;
  for (const [index, row] of S.items.entries()) if (row.id === item.id || row.id === S.marks[other]) rerenderRow(index);
  if (S.marks.chosen && S.marks.rejected) {
    const chosen = S.marks.chosen, rejected = S.marks.rejected;
    const ok = await makePair(chosen, rejected, false);
    for (const [index, row] of S.items.entries()) if (row.id === chosen || row.id === rejected) rerenderRow(index);
    if (!ok) S.marks = { chosen: null, rejected: null };
  } else {
    toast(`Marked ${kind}: now mark the ${other} answer (${other === "chosen" ? "c" : "r"})`);
  }
}

async function decide(decision) {
  const ids = S.selected.size ? [...S.selected] : current() ? [current().id] : [];
  if (!ids.length) return;
  try {
    const data = await api("/api/proposals/" + decision, { ids });
    updateLabels(data.labels);
    toast(`${decision === "accept" ? "Accepted" : "Rejected"} ${data.written} proposal${data.written === 1 ? "" : "s"}`);
    if (S.selected.size) clearSelection();
    scheduleStats();
  } catch (error) { fail(error); }
}

async function addTag() {
  const tag = prompt(S.selected.size ? `Tag for ${S.selected.size} selected` : "Tag");
  if (!tag || !tag.trim()) return;
  if (S.selected.size) return bulk({ add_tags: [tag.trim()] }, "#" + tag.trim());
  const item = current();
  if (!item) return;
  try {
    const data = await api(`/api/interactions/${encodeURIComponent(item.id)}/label`, { add_tags: [tag.trim()] });
    S.undo.push([item.id]);
    updateLabels(data.labels);
  } catch (error) { fail(error); }
}

/* ---------- editor (correct, notes) ---------- */

function openEditor(mode) {
  const item = current();
  if (!item || !S.detail || S.detail.id !== item.id) return;
  const label = S.detail.label || {};
  S.editor = { mode, id: item.id };
  $("editor-title").textContent = mode === "correct" ? "Correct the response" : "Notes";
  $("editor-help").hidden = mode !== "correct";
  $("editor-text").value = mode === "correct"
    ? (label.corrected_response !== null && label.corrected_response !== undefined ? label.corrected_response : S.detail.response_content || "")
    : label.notes || "";
  $("editor").hidden = false;
  $("editor-text").focus();
}

function closeOverlays() {
  for (const id of ["editor", "help", "compare"]) $(id).hidden = true;
  S.editor = null;
  S.compare = null;
}

async function saveEditor() {
  const editor = S.editor;
  if (!editor) return;
  const text = $("editor-text").value;
  try {
    const data = editor.mode === "correct"
      ? await api(`/api/interactions/${encodeURIComponent(editor.id)}/correct`, { response: text })
      : await api(`/api/interactions/${encodeURIComponent(editor.id)}/label`, text.trim() ? { notes: text } : { clear: ["notes"] });
    S.undo.push([editor.id]);
    closeOverlays();
    updateLabels(data.labels);
    toast(editor.mode === "correct" ? "Correction saved" : "Notes saved");
    scheduleStats();
  } catch (error) { fail(error); }
}

/* ---------- compare and regenerate ---------- */

function answerColumn(data, side) {
  const parts = [
    el("div", { class: "column-head" }, el("span", { class: "side" }, side), el("span", {}, `${data.provider}:${data.model}`), data.label && data.label.rating ? el("span", { class: "stars-static" }, stars(data.label.rating)) : null),
  ];
  if (data.response_content !== null) parts.push(foldable(data.response_content));
  for (const call of data.tool_calls) parts.push(el("div", { class: "toolcall" }, el("span", { class: "tool-name" }, "⚙ " + call.name), foldable(pretty(call.arguments))));
  if (data.error) parts.push(el("pre", { class: "text error" }, data.error));
  return parts;
}

/* Local and upstream answers to the same context (wilson proxy shadow routes), side by side. */
function shadowSection(id, count) {
  const body = el("div", { class: "muted small" }, "loading…");
  const box = section(`Shadow: local vs upstream (${count})`, body);
  box.id = "shadow-panel";
  api(`/api/interactions/${encodeURIComponent(id)}/shadow`).then((data) => {
    body.replaceWith(...data.items.map((item) => el("div", { class: "shadow-pair" },
      el("div", { class: "small" }, `route ${item.route || "–"} · `,
        el("span", { class: "chip " + (item.exact_match ? "good" : "danger") }, item.exact_match ? "same answer" : "different")),
      el("div", { class: "columns" },
        el("div", { class: "column shadow-upstream" }, ...answerColumn(item.upstream, "Upstream")),
        el("div", { class: "column shadow-local" }, ...answerColumn(item.shadow, "Local"))))));
  }).catch((error) => fail(error));
  return box;
}

async function openCompare(preferId) {
  const item = current();
  if (!item) return;
  try {
    const [base, alternatives] = await Promise.all([
      api("/api/interactions/" + encodeURIComponent(item.id)),
      api(`/api/interactions/${encodeURIComponent(item.id)}/alternatives`),
    ]);
    if (!alternatives.items.length) { toast("No other answer to this context yet: press g to regenerate one"); return; }
    let k = 0;
    if (preferId) k = Math.max(0, alternatives.items.findIndex((a) => a.id === preferId));
    S.compare = { base, alternatives: alternatives.items, k };
    renderCompare();
    $("compare").hidden = false;
  } catch (error) { fail(error); }
}

function renderCompare() {
  const { base, alternatives, k } = S.compare;
  const lastUser = [...base.messages].reverse().find((m) => m.role === "user");
  $("compare-info").textContent = `alternative ${k + 1} of ${alternatives.length}`;
  $("compare-context").replaceChildren(el("div", { class: "role" }, `context · ${base.messages.length} messages · last user message`), foldable(lastUser ? pretty(lastUser.content) : "(none)"));
  $("compare-left").replaceChildren(...answerColumn(base, "Left · this one"));
  $("compare-right").replaceChildren(...answerColumn(alternatives[k], "Right"));
}

async function pickInCompare(leftWins) {
  const { base, alternatives, k } = S.compare;
  const other = alternatives[k];
  const ok = await makePair(leftWins ? base.id : other.id, leftWins ? other.id : base.id, false);
  if (ok) closeOverlays();
}

async function regenerate() {
  const item = current();
  if (!item) return;
  let provider = APP.dataset.regenerate;
  if (!provider) {
    provider = prompt("Ask which provider for another answer? (NAME:MODEL)", S.lastProvider || "");
    if (!provider) return;
    S.lastProvider = provider;
  }
  toast(`Asking ${provider}…`);
  try {
    const data = await api(`/api/interactions/${encodeURIComponent(item.id)}/regenerate`, { provider });
    toast("New answer captured: pick the better one");
    await openCompare(data.interaction.id);
  } catch (error) { fail(error); }
}

/* ---------- keyboard ---------- */

/* Keys are handled one after the other: typing "5 5 5" quickly rates three rows, never one row thrice. */
S.chain = Promise.resolve();
function queue(action) {
  S.chain = S.chain.then(() => action()).catch(fail);
  return S.chain;
}

function typing(target) {
  return target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT" || target.isContentEditable);
}

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    if (!$("editor").hidden || !$("help").hidden || !$("compare").hidden) { closeOverlays(); event.preventDefault(); return; }
    if (typing(event.target)) { event.preventDefault(); event.target.blur(); return; }
  }
  if (!$("editor").hidden) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); saveEditor(); }
    return;
  }
  if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (!$("compare").hidden) {
    const keys = { c: () => pickInCompare(true), r: () => pickInCompare(false), ArrowLeft: () => pickInCompare(true), ArrowRight: () => pickInCompare(false),
      n: () => { S.compare.k = (S.compare.k + 1) % S.compare.alternatives.length; renderCompare(); } };
    if (keys[event.key]) { event.preventDefault(); queue(keys[event.key]); }
    return;
  }
  if (!$("help").hidden && event.key !== "?") return;
  const actions = {
    j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
    c: () => mark("chosen"), r: () => mark("rejected"), p: () => openCompare(),
    e: () => openEditor("correct"), n: () => openEditor("notes"), g: () => regenerate(), u: () => undo(),
    t: () => addTag(), x: () => { const item = current(); if (item) toggleSelected(item.id, !S.selected.has(item.id)); },
    a: () => decide("accept"), d: () => decide("reject"),
    o: () => { const item = current(); if (item) location.href = "/runs/" + encodeURIComponent(item.run_id); },
    "/": () => $("f-q").focus(), "?": () => { $("help").hidden = !$("help").hidden; },
  };
  if (/^[1-5]$/.test(event.key)) { event.preventDefault(); queue(() => rate(Number(event.key))); return; }
  if (actions[event.key]) { event.preventDefault(); queue(actions[event.key]); }
});

/* ---------- wiring ---------- */

let filterTimer = null;
function filtersChanged() {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => { syncUrl(); clearSelection(); loadList(true); scheduleStats(0); }, 250);
}

$("filters").addEventListener("input", filtersChanged);
$("filters").addEventListener("change", filtersChanged);
$("filters").addEventListener("submit", (event) => { event.preventDefault(); filtersChanged(); });
$("f-reset").addEventListener("click", () => { $("filters").reset(); filtersChanged(); });
$("more").addEventListener("click", () => loadList(false));
$("help-button").addEventListener("click", () => { $("help").hidden = !$("help").hidden; });
$("editor-save").addEventListener("click", saveEditor);
$("editor-cancel").addEventListener("click", closeOverlays);
for (const overlay of document.querySelectorAll(".overlay")) {
  overlay.addEventListener("click", (event) => { if (event.target === overlay) closeOverlays(); });
}
$("select-page").addEventListener("change", (event) => { for (const item of S.items) toggleSelected(item.id, event.target.checked); });
for (const button of document.querySelectorAll("[data-bulk-rate]")) {
  button.addEventListener("click", () => queue(() => bulk({ rating: Number(button.dataset.bulkRate) }, button.dataset.bulkRate + "★")));
}
$("bulk-tag-button").addEventListener("click", () => { const tag = $("bulk-tag").value.trim(); $("bulk-tag").value = ""; if (tag) queue(() => bulk({ add_tags: [tag] }, "#" + tag)); });
$("bulk-accept").addEventListener("click", () => queue(() => decide("accept")));
$("bulk-reject").addEventListener("click", () => queue(() => decide("reject")));
$("bulk-clear").addEventListener("click", clearSelection);
$("show-proposals").addEventListener("click", (event) => { event.preventDefault(); $("f-judge").value = "proposed"; filtersChanged(); });
$("list").addEventListener("scroll", () => {
  const list = $("list");
  if (S.cursor && !S.loading && list.scrollTop + list.clientHeight > list.scrollHeight - 200) loadList(false);
});

const focusId = applyUrlFilters();
syncUrl();
// rows first (what the person looks at), then the menus and the slower stat cards
loadList(true, focusId).then(() => { loadFacets(); scheduleStats(0); });
