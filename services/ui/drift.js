// The drift panel: PSI per feature as bars with the thresholds and sample sizes, the latest
// Evidently report, and the button that starts a check (GET /drift/status, /drift/reports,
// POST /drift/check, GET /drift/report?format=html).

import { api, getJson, keyReady, label, state } from "./api.js";
import { $, clear, el, fmt, say } from "./dom.js";

const DRIFT_TOP = 15; // bars shown unless "every feature" is ticked
const panel = { status: null, poll: null, lastReportAt: null }; // lastReportAt: the newest report

export async function loadDrift() {
  const section = $("drift");
  section.setAttribute("aria-busy", "true");
  try {
    const [{ body }, reports] = await Promise.all([
      getJson("/drift/status"),
      getJson("/drift/reports").then((r) => r.body.reports || []),
    ]);
    panel.status = body;
    renderDrift(body);
    renderReportLink(reports[0]);
  } catch (err) {
    clear($("drift-chart"));
    clear($("drift-body"));
    const hint = err.status === 403 ? " The drift panel needs a key with the admin scope." : "";
    say("drift-summary", `${err.message}${hint}`, "error");
  } finally {
    section.setAttribute("aria-busy", "false");
  }
}

function renderDrift(body) {
  const thresholds = body.thresholds || {};
  const warn = Number(thresholds.psi_warn ?? 0.1);
  const drift = Number(thresholds.psi_drift ?? 0.25);
  const features = Object.entries(body.features || {})
    .map(([name, f]) => ({ name, ...f }))
    .sort((a, b) => (b.psi || 0) - (a.psi || 0) || a.name.localeCompare(b.name));
  const window = body.window || {};
  const overall = String(body.status || "unknown").replace(/_/g, " ");
  say("drift-summary",
    `Overall: ${overall} · window of ${window.requests ?? 0} requests` +
    `${window.min_requests ? ` (status from ${window.min_requests})` : ""} · ` +
    `thresholds: warn ${warn}, drift ${drift} · ${features.length} features.`,
    body.status === "drift" ? "error" : body.status === "warn" ? "warn" : "");

  const shown = $("drift-all").checked ? features : features.slice(0, DRIFT_TOP);
  // Linear up to 1 (PSI past 1 is drift by any measure): longer bars are clipped and marked.
  const scale = Math.max(drift * 1.6, Math.min(1, Math.max(0, ...features.map((f) => f.psi || 0))));
  const pct = (value) => `${Math.min(100, (value / scale) * 100).toFixed(2)}%`;
  const chart = $("drift-chart");
  clear(chart);

  const axis = el("div", { class: "drift-row axis", "aria-hidden": "true" },
    el("span", { class: "drift-name", text: "feature" }));
  const axisTrack = el("span", { class: "drift-track" });
  for (const [name, value] of [["warn", warn], ["drift", drift]]) {
    const mark = el("span", { class: `threshold-label ${name}`, text: `${name} ${value}` });
    mark.style.left = pct(value);
    axisTrack.append(mark);
  }
  axis.append(axisTrack, el("span", { class: "drift-value", text: "PSI · n" }));
  chart.append(axis);

  const list = el("ul", {
    class: "drift-bars",
    "aria-label": `PSI per feature, highest first${shown.length < features.length ? ` (top ${shown.length})` : ""}`,
  });
  for (const f of shown) {
    const status = String(f.status || "unknown");
    const bar = el("span", { class: `drift-bar ${status}${(f.psi || 0) > scale ? " clipped" : ""}` });
    bar.style.width = pct(f.psi || 0);
    const track = el("span", { class: "drift-track", "aria-hidden": "true" }, bar);
    for (const [name, value] of [["warn", warn], ["drift", drift]]) {
      const line = el("span", { class: `threshold ${name}` });
      line.style.left = pct(value);
      track.append(line);
    }
    const readable = `${label(f.name)}: PSI ${fmt(f.psi)}, ${status.replace(/_/g, " ")}, ` +
      `${f.observations ?? 0} observations`;
    list.append(el("li", { class: "drift-row", title: readable, "aria-label": readable },
      el("span", { class: "drift-name", text: f.name }),
      track,
      el("span", { class: "drift-value", text: `${fmt(f.psi)} · n=${f.observations ?? 0}` })));
  }
  chart.append(list);

  const rows = $("drift-body");
  clear(rows);
  for (const f of features) {
    rows.append(el("tr", {},
      el("th", { scope: "row", text: f.name }),
      el("td", { text: fmt(f.psi) }),
      el("td", { text: fmt(f.kl) }),
      el("td", { text: String(f.status || "—").replace(/_/g, " ") }),
      el("td", { text: f.observations ?? 0 })));
  }
}

/** The link to the latest Evidently report, with its time and verdict; hidden while none. */
function renderReportLink(latest) {
  const link = $("drift-report");
  const note = $("drift-report-note");
  link.hidden = !latest;
  if (!latest) {
    note.textContent = "No Evidently report yet: run a check.";
    return;
  }
  panel.lastReportAt = latest.at;
  const at = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})/.exec(latest.at || "");
  const when = at ? `${at[1]}-${at[2]}-${at[3]} ${at[4]}:${at[5]} UTC` : latest.at;
  note.textContent = `${when}: ${latest.status}, ${(latest.drifted || []).length} drifted` +
    `${state.auth ? " (saved as a file: it needs your key)" : ""}`;
}

async function onDriftCheck() {
  const button = $("drift-check");
  button.disabled = true;
  say("drift-summary", "Drift check started…");
  try {
    panel.lastReportAt = await latestReportAt();
    const { status, body } = await getJson("/drift/check", { method: "POST" });
    if (status === 202) {
      say("drift-summary", "The drift check is running; the report link has it when it ends.");
      waitForReport();
    } else {
      const drifted = (body.drifted || []).join(", ") || "none";
      await loadDrift();
      say("drift-summary", `Drift check done: ${body.status || "ok"}; drifted: ${drifted}.`, "ok");
    }
  } catch (err) {
    say("drift-summary", err.message, "error");
  } finally {
    button.disabled = false;
  }
}

async function latestReportAt() {
  try {
    const { body } = await getJson("/drift/reports");
    return ((body.reports || [])[0] || {}).at || null;
  } catch {
    return null;
  }
}

function waitForReport() {
  clearInterval(panel.poll);
  let tries = 0;
  panel.poll = setInterval(async () => {
    tries += 1;
    try {
      const { body } = await getJson("/drift/reports");
      const latest = (body.reports || [])[0];
      if (latest && latest.at && latest.at !== panel.lastReportAt) {
        clearInterval(panel.poll);
        panel.lastReportAt = latest.at;
        await loadDrift();
        say("drift-summary", `Drift check done: ${latest.status}; drifted: ${(latest.drifted || []).join(", ") || "none"}.`, "ok");
      }
    } catch (err) {
      clearInterval(panel.poll);
      say("drift-summary", err.message, "error");
    }
    if (tries > 60) clearInterval(panel.poll);
  }, 2000);
}

async function onReportClick(event) {
  if (!state.auth) return; // a plain link: the browser opens it
  event.preventDefault();
  if (!keyReady()) return state.onUnauthorized();
  // The report needs the key, which a link cannot carry: fetch it and save it as a file (a
  // blob: page would inherit this page's policy, which blocks the report's own scripts).
  try {
    const response = await api("/drift/report?format=html");
    const blob = new Blob([await response.blob()], { type: "text/html" });
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: "drift-report.html" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    say("drift-summary", "The Evidently report was saved as drift-report.html.", "ok");
  } catch (err) {
    say("drift-summary", err.message, "error");
  }
}

/** Wire the panel's controls. */
export function initDrift() {
  $("drift-check").addEventListener("click", onDriftCheck);
  $("drift-refresh").addEventListener("click", loadDrift);
  $("drift-all").addEventListener("change", () => panel.status && renderDrift(panel.status));
  $("drift-report").addEventListener("click", onReportClick);
}
