// The page of GET /ui: a user's ratings, their recommendations with reasons, rating from the
// page, and the service's status (the drift panel is drift.js). Plain DOM code in ES modules: no
// build step, no library. Strings from the service go into the page as text (dom.js).

import { getJson, keyReady, label, setKey, state } from "./api.js";
import { $, clear, el, fmt, say, signed } from "./dom.js";
import { initDrift, loadDrift } from "./drift.js";

const K = 10;
const HISTORY_LIMIT = 50;
const NEW_USER_BASE = 900_000_000; // ids this large are never MovieLens users: a cold start

/** The user on screen. */
const view = {
  user: null,
  recs: [], // the list on screen
  seq: 0, // the latest user load: answers of older loads are dropped
};

// ---------------------------------------------------------------- status strip

function statusItem(term, value, title) {
  return el("div", {}, el("dt", { text: term }), el("dd", { text: value, title: title || null }));
}

function modelVersion(tag) {
  if (tag === null || tag === undefined) return "—";
  if (typeof tag !== "string") return JSON.stringify(tag);
  const [name, version] = tag.split(":");
  return version ? `${name} ${version.slice(0, 12)}` : name;
}

async function loadStatus() {
  const list = $("status-list");
  try {
    const { body } = await getJson("/ui/api/status");
    clear(list);
    const models = body.models || {};
    for (const [name, tag] of Object.entries(models)) {
      list.append(statusItem(name.replace(/_/g, " "), modelVersion(tag), String(tag)));
    }
    list.append(statusItem("placement", body.stages || "—"));
    const store = body.feature_store || {};
    const backend = [store.mode, store.backend].filter(Boolean).join(" · ") || "—";
    list.append(statusItem("feature store", backend));
    const circuit = store.circuit;
    const breaker =
      circuit === undefined ? "—" : typeof circuit === "object" ? circuit.state || JSON.stringify(circuit) : String(circuit);
    list.append(statusItem("breaker", breaker));
    const lat = body.latency_ms || {};
    list.append(statusItem("latency", `p50 ${fmt(lat.p50, 1)} ms · p99 ${fmt(lat.p99, 1)} ms`,
      `${lat.requests ?? 0} requests measured by this worker`));
    list.append(statusItem("API keys", body.auth && body.auth.enabled ? "on" : "off"));
    return body;
  } catch (err) {
    clear(list);
    list.append(statusItem("status", err.message));
    state.statusError = err.status;
    return null;
  }
}

// ---------------------------------------------------------------- API key

function askForKey(message) {
  const panel = $("auth");
  panel.hidden = false;
  say("auth-message", message || "Enter an API key to continue.", "warn");
  $("auth-key").focus();
}

function showKeyState() {
  $("auth").hidden = !state.auth;
  if (!state.auth) return;
  $("auth-forget").hidden = !state.key;
  if (state.key) say("auth-message", "A key is set for this tab.", "ok");
  else say("auth-message", "Enter an API key to continue.", "warn");
}

function onKeySubmit(event) {
  event.preventDefault();
  const input = $("auth-key");
  const key = input.value.trim();
  if (!key) return;
  setKey(key);
  input.value = "";
  showKeyState();
  start();
}

function onKeyForget() {
  setKey("");
  showKeyState();
  $("auth-key").focus();
}

// ---------------------------------------------------------------- picking a user

function onUserSubmit(event) {
  event.preventDefault();
  const raw = $("user-id").value.trim();
  if (!/^\d{1,15}$/.test(raw)) {
    say("pick-message", "A user id is a whole number, e.g. 42.", "warn");
    return;
  }
  showUser(Number(raw));
}

async function onRandomUser() {
  if (!keyReady()) return askForKey();
  try {
    const { body } = await getJson("/ui/api/users/random");
    await showUser(body.user_id);
  } catch (err) {
    say("pick-message", err.message, "error");
  }
}

function onNewUser() {
  const id = NEW_USER_BASE + Math.floor(Math.random() * 99_000_000);
  return showUser(id, "A new user (an id never seen): a cold-start list. Rate a movie to change it.");
}

async function showUser(userId, note) {
  if (!keyReady()) return askForKey();
  view.user = userId;
  $("user-id").value = String(userId);
  history.replaceState(null, "", `#user=${userId}`);
  say("pick-message", note || `User ${userId}.`);
  view.recs = [];
  await Promise.all([loadRecommendations(), loadHistory()]);
  loadStatus();
}

// ---------------------------------------------------------------- recommendations

async function loadRecommendations() {
  const seq = ++view.seq;
  const section = $("recs");
  const user = view.user;
  section.setAttribute("aria-busy", "true");
  try {
    const { body } = await getJson("/recommend", {
      method: "POST",
      body: { user_id: user, k: K, explain: true },
    });
    if (seq !== view.seq) return null;
    renderRecommendations(body);
    return body;
  } catch (err) {
    if (seq === view.seq) {
      clear($("recs-list"));
      say("recs-summary", err.message, "error");
    }
    return null;
  } finally {
    if (seq === view.seq) section.setAttribute("aria-busy", "false");
  }
}

function renderRecommendations(body) {
  const list = $("recs-list");
  const recs = body.recommendations || [];
  const before = new Set(view.recs.map((r) => r.item_id));
  clear(list);
  const maxReason = Math.max(
    1e-9,
    ...recs.flatMap((r) => (r.reasons || []).map((reason) => Math.abs(reason.value))),
  );
  for (const rec of recs) list.append(recommendationItem(rec, maxReason, before));
  view.recs = recs;
  const parts = [`${recs.length} movies for user ${body.user_id}`];
  parts.push(body.cold_start ? "cold start: not seen in training" : "personalised");
  const total = body.timings_ms && body.timings_ms.total;
  if (total !== undefined) parts.push(`${fmt(total, 1)} ms`);
  if (body.degraded && body.degraded.length) parts.push(`degraded: without ${body.degraded.join(", ")}`);
  say("recs-summary", `${parts.join(" · ")}.`, body.degraded && body.degraded.length ? "warn" : "");
}

function recommendationItem(rec, maxReason, before) {
  const fresh = before.size > 0 && !before.has(rec.item_id);
  const item = el("li", { class: `rec${fresh ? " fresh" : ""}`, "data-item-id": rec.item_id });
  const head = el("div", { class: "rec-head" },
    el("span", { class: "rank", "aria-hidden": "true", text: rec.rank }),
    el("h3", { class: "rec-title", text: rec.title }));
  item.append(head);

  const meta = el("p", { class: "rec-meta" });
  meta.append(el("span", { text: `score ${fmt(rec.score)}` }));
  if (typeof rec.retrieval_rank === "number") {
    const moved = rec.retrieval_rank - rec.rank;
    const arrow = moved > 0 ? `↑${moved}` : moved < 0 ? `↓${-moved}` : "=";
    meta.append(el("span", {
      class: `moved ${moved > 0 ? "up" : moved < 0 ? "down" : ""}`.trim(),
      title: "position among the candidates before ranking → after ranking",
      text: `retrieval #${rec.retrieval_rank} → rank #${rec.rank} (${arrow})`,
    }));
  } else {
    meta.append(el("span", { text: `rank #${rec.rank}` }));
  }
  if (fresh) meta.append(el("span", { class: "badge", text: "new" }));
  item.append(meta);

  if (rec.sources && rec.sources.length) {
    const sources = el("ul", { class: "sources", "aria-label": "proposed by" });
    for (const source of rec.sources) sources.append(el("li", { text: source.replace(/_/g, " ") }));
    item.append(sources);
  }
  if (rec.reasons && rec.reasons.length) item.append(reasonsList(rec.reasons, maxReason));
  item.append(ratingControl(rec));
  return item;
}

function reasonsList(reasons, maxReason) {
  const list = el("ul", { class: "reasons", "aria-label": "why: the ranker's top three reasons" });
  for (const reason of reasons) {
    const positive = reason.value >= 0;
    const bar = el("span", { class: `bar ${positive ? "pos" : "neg"}` });
    bar.style.width = `${((Math.abs(reason.value) / maxReason) * 50).toFixed(1)}%`; // CSSOM
    list.append(el("li", { class: "reason", title: reason.feature },
      el("span", { class: "reason-label", text: label(reason.feature) }),
      el("span", { class: "track", "aria-hidden": "true" }, bar),
      el("span", {
        class: `reason-value ${positive ? "pos" : "neg"}`,
        text: signed(reason.value),
        "aria-label": `${positive ? "raises" : "lowers"} the score by ${Math.abs(reason.value).toFixed(2)}`,
      })));
  }
  return list;
}

function ratingControl(rec) {
  const group = el("div", { class: "rate", role: "group", "aria-label": `Rate ${rec.title}` },
    el("span", { class: "rate-label", "aria-hidden": "true", text: "Rate:" }));
  for (let stars = 1; stars <= 5; stars += 1) {
    group.append(el("button", {
      type: "button",
      class: "star",
      "data-rating": stars,
      "aria-label": `Rate ${rec.title} ${stars} out of 5`,
      text: `${stars}★`,
      onclick: () => rate(rec, stars, group),
    }));
  }
  return group;
}

async function rate(rec, stars, group) {
  for (const button of group.querySelectorAll("button")) button.disabled = true;
  say("recs-summary", `Rating “${rec.title}” ${stars}/5…`);
  try {
    await getJson("/events", {
      method: "POST",
      body: { events: [{ user_id: view.user, item_id: rec.item_id, rating: stars }] },
    });
  } catch (err) {
    for (const button of group.querySelectorAll("button")) button.disabled = false;
    say("recs-summary", err.message, "error");
    return;
  }
  const before = view.recs.map((r) => r.item_id);
  const [answer] = await Promise.all([loadRecommendations(), loadHistory()]);
  if (!answer) return;
  const after = new Set(answer.recommendations.map((r) => r.item_id));
  const added = answer.recommendations.filter((r) => !before.includes(r.item_id));
  const gone = after.has(rec.item_id) ? "" : `“${rec.title}” left the list`;
  const news = added.length ? `new: ${added.map((r) => `“${r.title}”`).join(", ")}` : "no new movies";
  say("recs-summary", `Rated “${rec.title}” ${stars}/5. ${[gone, news].filter(Boolean).join("; ")}.`, "ok");
  loadStatus();
}

// ---------------------------------------------------------------- history

async function loadHistory() {
  const seq = view.seq;
  const user = view.user;
  const section = $("history");
  section.setAttribute("aria-busy", "true");
  try {
    const { body } = await getJson(`/ui/api/users/${user}/history?limit=${HISTORY_LIMIT}`);
    if (user !== view.user) return;
    renderHistory(body);
  } catch (err) {
    if (seq === view.seq) {
      $("history-table").hidden = true;
      say("history-summary", err.message, "error");
    }
  } finally {
    section.setAttribute("aria-busy", "false");
  }
}

function renderHistory(body) {
  const rows = $("history-body");
  clear(rows);
  for (const r of body.ratings) {
    rows.append(el("tr", {},
      el("th", { scope: "row", class: "title", text: r.title }),
      el("td", { text: r.year ?? "—" }),
      el("td", { class: "genres", text: (r.genres || []).join(", ") || "—" }),
      el("td", { class: "rating", text: r.rating === null ? "unrated" : `${r.rating}★` }),
      el("td", { class: "date" }, el("time", { datetime: r.date, text: r.date }))));
  }
  $("history-table").hidden = body.ratings.length === 0;
  let text;
  if (!body.ratings.length) text = `User ${body.user_id} has no ratings yet${body.known ? "" : " (a new user)"}.`;
  else if (body.ratings.length >= HISTORY_LIMIT) text = `The latest ${body.ratings.length} ratings, most recent first.`;
  else text = `${body.ratings.length} ratings, most recent first.`;
  say("history-summary", text);
}

// ---------------------------------------------------------------- start

async function start() {
  showKeyState();
  if (!keyReady()) return askForKey();
  loadDrift();
  const match = /^#user=(\d{1,15})$/.exec(location.hash);
  if (match) await showUser(Number(match[1]));
  else await onRandomUser();
}

async function boot() {
  $("auth-form").addEventListener("submit", onKeySubmit);
  $("auth-forget").addEventListener("click", onKeyForget);
  $("user-form").addEventListener("submit", onUserSubmit);
  $("user-random").addEventListener("click", onRandomUser);
  $("user-new").addEventListener("click", onNewUser);
  $("status-refresh").addEventListener("click", loadStatus);
  initDrift();
  state.onUnauthorized = askForKey;

  const [labels, status] = await Promise.all([
    getJson("/ui/labels.json").then((r) => r.body).catch(() => ({})),
    loadStatus(),
  ]);
  state.labels = labels;
  // The status says whether keys are on; where the status itself needs a key, its 401 does.
  state.auth = status ? Boolean(status.auth && status.auth.enabled) : state.statusError === 401;
  await start();
  document.body.dataset.state = "ready"; // the first load is done (tests and scripts wait for it)
}

boot();
