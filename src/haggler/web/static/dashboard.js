// The operator's dashboard: summary, training status and switch, safe learning (in
// dashboard-safety.js), learning curves with a moving average and the model events on them (in
// dashboard-charts.js), figures per model version, checkpoints with restore, and the log of model
// changes. Everything refreshes when the server says something changed (server-sent events) and
// after each action.
import { api, el, label, MODEL_SOURCES, money, pct, scrollableTables, stackTable, subscribe, when } from "./common.js";
import { drawCharts } from "./dashboard-charts.js";
import { initSafety, refreshSafety } from "./dashboard-safety.js";
import { askOperator } from "./operator-dialog.js";

const $ = (id) => document.getElementById(id);
const axisSelect = $("axis");
const windowSelect = $("window");

let training = null;
let summary = null;
let history = [];
let metrics = [];
let models = [];
let events = [];

const METRICS_LIMIT = 1000;
const VERSION_ROWS = 12;

// plotly.js loads deferred while this module (async) asks for the data; the charts wait for it
// (or for the page to have loaded without it: then they say so).
const plotlyLoaded = new Promise((resolve) => {
  if (window.Plotly || document.readyState === "complete") {
    resolve();
    return;
  }
  const script = document.querySelector("script[src^='/vendor/plotly']");
  script?.addEventListener("load", () => resolve(), { once: true });
  script?.addEventListener("error", () => resolve(), { once: true });
  window.addEventListener("load", () => resolve(), { once: true });
});

// --- figures -------------------------------------------------------------------------------

function estimate(e, format) {
  if (e.mean === null) return "—";
  return format(e.mean);
}

function interval(e, format) {
  return e.ci_low === null ? "" : `95% CI ${format(e.ci_low)} – ${format(e.ci_high)}`;
}

function renderSummary(s) {
  const share = (v) => pct(100 * v);
  const stats = [
    ["Negotiations", String(s.negotiations), `${s.finished} finished`],
    ["Deal rate", estimate(s.deal_rate, share), interval(s.deal_rate, share)],
    ["Average reward", estimate(s.average_reward, (v) => v.toFixed(3)), interval(s.average_reward, (v) => v.toFixed(3))],
    ["Average savings", estimate(s.average_savings_pct, pct), interval(s.average_savings_pct, pct)],
    ["Saved in total", money(s.savings_total), "against list prices"],
    ["Average rounds", estimate(s.average_rounds, (v) => v.toFixed(1)), interval(s.average_rounds, (v) => v.toFixed(1))],
  ];
  $("summary").replaceChildren(...stats.map(([name, value, note]) =>
    el("div", { class: "stat" }, el("div", { class: "label" }, name), el("div", { class: "value" }, value), el("div", { class: "ci" }, note))));
}

function renderTraining(t) {
  training = t;
  const facts = [
    ["Online training", el("span", { class: t.enabled ? "status-on" : "status-off" }, t.enabled ? "On" : "Off")],
    ["Model version", el("span", { id: "model-version" }, String(t.model_version))],
    ["Exploration rate", t.enabled ? t.epsilon.toFixed(3) : `${t.epsilon.toFixed(3)} (greedy while off)`],
    ["Replay buffer", t.replay_buffer_size.toLocaleString()],
    ["Negotiations trained on", t.negotiations_trained.toLocaleString()],
    ["Last loss", t.last_loss === null ? "—" : t.last_loss.toFixed(4)],
    ["Last checkpoint", t.last_checkpoint ?? "—"],
    ["Update delay (median)", t.update_delay_median_s === null ? "—" : `${t.update_delay_median_s.toFixed(2)} s`],
  ];
  if (t.learner_running !== null && t.learner_running !== undefined) {
    facts.splice(1, 0, ["Learner", t.learner_running ? "running" : el("span", { class: "error" }, "stopped")]);
  }
  if (t.checkpoint_error) facts.push(["Checkpoint error", el("span", { class: "error" }, t.checkpoint_error)]);
  $("training").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("toggle-training").textContent = t.enabled ? "Turn training off" : "Turn training on";
}

// Live figures of each model version: the finished negotiations it served (of those loaded),
// and when the first and the last of them ended.
function figuresByVersion() {
  const byVersion = new Map();
  for (const p of metrics) {
    const v = byVersion.get(p.model_version) ?? { n: 0, deals: 0, reward: 0, rewards: 0, savings: 0, saved: 0, first: p.finished_at, last: p.finished_at };
    v.n += 1;
    v.deals += p.deal ? 1 : 0;
    if (p.reward !== null) { v.reward += p.reward; v.rewards += 1; }
    if (p.savings_pct !== null && p.deal) { v.savings += p.savings_pct; v.saved += 1; }
    v.last = p.finished_at;
    byVersion.set(p.model_version, v);
  }
  return byVersion;
}

const dealRate = (v) => (v ? pct((100 * v.deals) / v.n) : "—");
const avgReward = (v) => (v?.rewards ? (v.reward / v.rewards).toFixed(3) : "—");

// "4 Dec 2026, 14:05 – 14:09 UTC": when a version's negotiations ended, in the browser's zone.
const SPAN = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
const instant = (iso) => new Date(/(Z|[+-]\d\d:?\d\d)$/i.test(iso) ? iso : `${iso}Z`);
const span = (first, last) => SPAN.formatRange(instant(first), instant(last));

const servingVersion = () => training?.model_version ?? null;
const newestVersion = () => models[0]?.version ?? null;

const badge = (kind, text) => el("span", { class: `badge ${kind}` }, text);
const nowCell = (badges, note = null) =>
  el("td", { class: "now-cell" }, badges.length ? el("span", { class: "now" }, badges) : "—", note ? el("span", { class: "sub" }, note) : null);

function renderVersions() {
  const figures = figuresByVersion();
  // The serving and the newest versions always have a row, figures or not; then the others,
  // newest first.
  const shown = [...new Set([servingVersion(), newestVersion(), ...[...figures.keys()].sort((a, b) => b - a)])]
    .filter((v) => v !== null)
    .slice(0, VERSION_ROWS)
    .sort((a, b) => b - a);
  const rows = shown.map((version) => {
    const v = figures.get(version);
    const badges = [];
    if (version === servingVersion()) badges.push(badge("serving", "serving"));
    // The newest version stored may be a candidate waiting, or one the gate turned away.
    const status = models[0]?.status;
    if (version === newestVersion()) badges.push(badge("newest", status && status !== "promoted" ? `newest, ${status}` : "newest"));
    return el("tr", { class: version === servingVersion() ? "serving" : null, "data-version": version },
      el("td", { class: "title" }, `Version ${version}`),
      nowCell(badges),
      el("td", { class: "num" }, v ? v.n : 0),
      el("td", { class: "num" }, dealRate(v)),
      el("td", { class: "num" }, avgReward(v)),
      el("td", { class: "num" }, v?.saved ? pct(v.savings / v.saved) : "—"),
      el("td", { class: "measured" }, v ? span(v.first, v.last) : "no finished negotiation yet"));
  });
  $("versions").tBodies[0].replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No finished negotiations yet."))]));
  const hidden = [...figures.keys()].filter((v) => !shown.includes(v)).length;
  $("versions-note").textContent = `Live figures of the finished negotiations each version served, of the newest ${METRICS_LIMIT.toLocaleString("en-US")}.${hidden > 0 ? ` ${hidden} older versions not shown.` : ""}`;
}

// --- charts --------------------------------------------------------------------------------

const CHARTS = ["loss", "reward", "success", "savings", "buffer", "epsilon"];

async function redraw() {
  await plotlyLoaded;
  if (!window.Plotly) {
    $("charts-error").textContent = "The charts could not be drawn: the charting library did not load. Reload the page.";
    return;
  }
  $("charts-error").textContent = "";
  const targets = Object.fromEntries(CHARTS.map((name) => [name, $(`chart-${name}`)]));
  await drawCharts(targets, {
    history,
    metrics,
    finished: summary?.finished ?? metrics.length,
    events,
    overTime: axisSelect.value === "time",
    span: Number(windowSelect.value),
  });
}

// --- checkpoints and model changes ---------------------------------------------------------

const signed = (v) => `${v >= 0 ? "+" : ""}${v.toFixed(3)}`;
const CHECKS = {
  surplus: ["surplus", signed],
  deal_rate: ["deal rate", (v) => `${v >= 0 ? "+" : ""}${(100 * v).toFixed(1)} pts`],
  reward: ["reward", signed],
};

// The evaluation gate's verdict on a version, and when it was judged (as the candidate was
// stored); a version that served at once was never judged.
function gateCell(model) {
  const judged = model?.evaluation;
  if (!model) return el("td", { class: "measured" }, "—", el("span", { class: "sub" }, "not in the recent model log"));
  if (!judged || typeof judged.passed !== "boolean") {
    return el("td", { class: "measured" }, "not judged", el("span", { class: "sub" }, "served at once, without the gate"));
  }
  const checks = Object.entries(judged.checks ?? {})
    .filter(([, c]) => typeof c?.value === "number")
    .map(([name, c]) => {
      const [title, format] = CHECKS[name] ?? [label(name), signed];
      return `${title} ${format(c.value)}`;
    });
  return el("td", { class: "measured" },
    el("span", { class: judged.passed ? "check-passed" : "check-failed" }, judged.passed ? "passed" : "rejected"),
    ` ${when(model.created_at)}`,
    checks.length ? el("span", { class: "sub" }, `against version ${judged.champion_version}: ${checks.join(", ")}`) : null);
}

function renderCheckpoints(checkpoints) {
  // A checkpoint holds the version the learner had published when it saved it.
  const versionOf = new Map(history.filter((p) => p.checkpoint).map((p) => [p.checkpoint, p.model_version]));
  for (const m of models) {
    if (m.source === "training" && m.checkpoint && !versionOf.has(m.checkpoint)) versionOf.set(m.checkpoint, m.version);
  }
  const byVersion = new Map(models.map((m) => [m.version, m]));
  const serving = byVersion.get(servingVersion());
  const figures = figuresByVersion();
  const newest = checkpoints.at(-1)?.name;
  const rows = [...checkpoints].reverse().map((c) => {
    const version = versionOf.get(c.name) ?? null;
    const live = figures.get(version);
    // It serves as its own version, or as the copy a restore (or a rollback) made of it.
    const restored = serving?.source === "restore" && serving.checkpoint === c.name;
    const rolledBack = serving?.source === "rollback" && version !== null && serving.copy_of === version;
    const servingNow = (version !== null && version === servingVersion()) || restored || rolledBack;
    const badges = [];
    if (servingNow) badges.push(badge("serving", "serving"));
    if (c.name === newest) badges.push(badge("newest", "newest"));
    const note = restored ? `restored as version ${serving.version}` : rolledBack ? `rolled back to, as version ${serving.version}` : null;
    return el("tr", { class: servingNow ? "serving" : null },
      el("td", { class: "title" }, c.name),
      el("td", { class: "num" }, version ?? "—"),
      nowCell(badges, note),
      el("td", { class: "num" }, c.negotiations),
      el("td", { class: "measured" }, live ? `${dealRate(live)} deals, reward ${avgReward(live)}` : "—",
        el("span", { class: "sub" }, live ? `${live.n} negotiations, ${span(live.first, live.last)}` : "none of those loaded")),
      gateCell(byVersion.get(version)),
      el("td", {}, when(c.saved_at)),
      el("td", { class: "num minor" }, `${(c.size_bytes / 1024).toFixed(0)} KiB`),
      el("td", {}, el("button", { type: "button", class: "secondary", "data-checkpoint": c.name, "aria-label": `Restore ${c.name}` }, "Restore")));
  });
  $("checkpoints").tBodies[0].replaceChildren(...rows);
  $("no-checkpoints").hidden = rows.length > 0;
}

function renderModels() {
  const rows = models.map((m) => {
    const source = m.source === "rollback" && m.copy_of !== null
      ? el("strong", {}, `rollback to version ${m.copy_of}`)
      : MODEL_SOURCES[m.source] ?? label(m.source);
    return el("tr", { class: m.source === "rollback" ? "rollback" : null },
      el("td", {}, String(m.version)),
      el("td", {}, when(m.created_at)),
      el("td", {}, source),
      el("td", {}, m.status),
      el("td", { class: "reason" }, m.reason ?? "—"),
      el("td", {}, m.checkpoint ?? "—"),
      el("td", { class: "num" }, m.negotiations));
  });
  $("models").tBodies[0].replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No model changes recorded."))]));
}

// --- the operator's actions ---------------------------------------------------------------

$("checkpoints").addEventListener("click", (event) => {
  const name = event.target.closest("button[data-checkpoint]")?.dataset.checkpoint;
  if (!name) return;
  askOperator({
    title: "Restore this checkpoint?",
    message: `${name} will serve every negotiation from now on (and keep learning if training is on), replacing model version ${training?.model_version ?? "?"}.`,
    confirm: "Restore",
    action: async (token) => {
      const status = await api("POST", "/api/checkpoints/restore", { body: { checkpoint: name }, token });
      renderTraining(status);
      $("restore-status").textContent = `Restored ${name}: now serving model version ${status.model_version}.`;
      await refresh();
    },
  });
});

$("toggle-training").addEventListener("click", () => {
  const enable = !training?.enabled;
  askOperator({
    title: enable ? "Turn online training on?" : "Turn online training off?",
    message: enable
      ? "The agent will learn from every finished negotiation and explore at the configured rate."
      : "The agent will stop learning and act greedily.",
    confirm: enable ? "Turn on" : "Turn off",
    action: async (token) => {
      renderTraining(await api("PUT", "/api/training", { body: { enabled: enable }, token }));
      await refresh();
    },
  });
});

// --- loading -------------------------------------------------------------------------------

async function refresh() {
  let drawn = null;
  try {
    const [totals, status, hist, points, changes, checkpoints, modelEvents] = await Promise.all([
      api("GET", "/api/summary"),
      api("GET", "/api/training"),
      api("GET", "/api/training/history?limit=500"),
      api("GET", `/api/metrics/negotiations?limit=${METRICS_LIMIT}`),
      api("GET", "/api/models?limit=50"),
      api("GET", "/api/checkpoints"),
      api("GET", "/api/safety/events?limit=200"),
    ]);
    summary = totals;
    history = hist.points;
    metrics = points.points;
    models = changes;
    events = modelEvents;
    renderSummary(summary);
    renderTraining(status);
    renderVersions();
    renderModels();
    renderCheckpoints(checkpoints);
    drawn = redraw();
    $("training-error").textContent = "";
  } catch (error) {
    $("training-error").textContent = `Could not load the dashboard: ${error.message}`;
  }
  await Promise.all([drawn, refreshSafety(models)]); // the A/B form offers the model log's candidates
  scrollableTables(); // tables the safety section drew anew scroll sideways from the keyboard too
}

let scheduled = false;
async function refreshSoon() {  // several events in one second make one refresh
  if (scheduled) return;
  scheduled = true;
  await new Promise((resolve) => setTimeout(resolve, 250));
  scheduled = false;
  await refresh();
}

axisSelect.addEventListener("change", redraw);
windowSelect.addEventListener("change", redraw);
stackTable($("versions"));
stackTable($("checkpoints"));
initSafety({ refresh });
await refresh();
subscribe(
  () => refreshSoon(),
  (live) => { $("live-status").textContent = live ? "Live: updates as negotiations finish." : "Live updates paused: reconnecting…"; },
);
