// The operator's dashboard: summary, training status and switch, safe learning (in
// dashboard-safety.js), learning curves with a moving average, figures per model version,
// checkpoints with restore, and the log of model changes. Everything refreshes when the server
// says something changed (server-sent events) and after each action.
import { api, el, label, MODEL_SOURCES, money, pct, subscribe, when } from "./common.js";
import { initSafety, refreshSafety } from "./dashboard-safety.js";
import { askOperator } from "./operator-dialog.js";

const $ = (id) => document.getElementById(id);
const axisSelect = $("axis");
const windowSelect = $("window");

let training = null;
let history = [];
let metrics = [];
let models = [];

// --- figures -------------------------------------------------------------------------------

function movingAverage(values, span) {
  const out = [];
  const kept = [];
  let sum = 0;
  for (const v of values) {
    if (v !== null && v !== undefined && Number.isFinite(v)) {
      kept.push(v);
      sum += v;
      if (kept.length > span) sum -= kept.shift();
    }
    out.push(kept.length ? sum / kept.length : null);
  }
  return out;
}

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

// Live figures of each model version: the finished negotiations it served.
function figuresByVersion() {
  const byVersion = new Map();
  for (const p of metrics) {
    const v = byVersion.get(p.model_version) ?? { n: 0, deals: 0, reward: 0, rewards: 0, savings: 0, saved: 0 };
    v.n += 1;
    v.deals += p.deal ? 1 : 0;
    if (p.reward !== null) { v.reward += p.reward; v.rewards += 1; }
    if (p.savings_pct !== null && p.deal) { v.savings += p.savings_pct; v.saved += 1; }
    byVersion.set(p.model_version, v);
  }
  return byVersion;
}

const dealRate = (v) => (v ? pct((100 * v.deals) / v.n) : "—");
const avgReward = (v) => (v?.rewards ? (v.reward / v.rewards).toFixed(3) : "—");

function renderVersions() {
  const rows = [...figuresByVersion().entries()].sort((a, b) => b[0] - a[0]).map(([version, v]) =>
    el("tr", {},
      el("td", {}, String(version)),
      el("td", { class: "num" }, v.n),
      el("td", { class: "num" }, dealRate(v)),
      el("td", { class: "num" }, avgReward(v)),
      el("td", { class: "num" }, v.saved ? pct(v.savings / v.saved) : "—")));
  $("versions").tBodies[0].replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No finished negotiations yet."))]));
}

// --- charts --------------------------------------------------------------------------------

const CONFIG = { displayModeBar: false, responsive: true };

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(Math.max(1, raw)));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw) ?? 10 * power;
}

function layout(title, yTitle, overTime, xs) {
  // Counts of negotiations get whole-number ticks, about six of them.
  const top = Math.max(1, ...(overTime ? [] : xs));
  return {
    title: { text: title, font: { size: 14 }, x: 0, xanchor: "left" },
    margin: { l: 56, r: 10, t: 32, b: 30 },
    xaxis: overTime ? { type: "date" } : { type: "linear", tick0: 0, dtick: niceStep(top / 6) },
    yaxis: { title: { text: yTitle }, rangemode: "tozero" },
    legend: { orientation: "h", y: -0.18 },
    showlegend: true,
  };
}

function series(target, title, yTitle, xs, ys, { average = true, points = true, asPercent = false, overTime } = {}) {
  const span = Number(windowSelect.value);
  const scale = (v) => (v === null ? null : asPercent ? 100 * v : v);
  const traces = [{
    x: xs, y: ys.map(scale), name: "Each point", mode: "markers", marker: { size: 5, color: "rgba(31,95,191,0.35)" },
  }];
  if (!points) traces[0].visible = "legendonly";
  if (average) {
    traces.push({ x: xs, y: movingAverage(ys, span).map(scale), name: `Moving average (${span})`, mode: "lines", line: { color: "#1f5fbf", width: 3 } });
  } else {
    traces[0].mode = "lines+markers";
    traces[0].name = title;
    traces[0].showlegend = false;
    traces[0].line = { color: "#1f5fbf", width: 2 };
  }
  const empty = xs.length === 0;
  const l = layout(title, yTitle, overTime, xs);
  if (empty) {
    l.annotations = [{ text: "No data yet", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5, font: { color: "#5b6475" } }];
    l.xaxis.visible = false;
    l.yaxis.visible = false;
  }
  return window.Plotly.react(target, traces, l, CONFIG);
}

function drawCharts() {
  const overTime = axisSelect.value === "time";
  const hx = history.map((p) => (overTime ? p.at : p.negotiations));
  const mx = metrics.map((p, i) => (overTime ? p.finished_at : i + 1));
  series($("chart-loss"), "Training loss", "Huber loss", hx, history.map((p) => p.loss), { overTime });
  series($("chart-reward"), "Average reward per negotiation", "Reward", mx, metrics.map((p) => p.reward), { overTime });
  series($("chart-success"), "Success rate", "Deals (%)", mx, metrics.map((p) => (p.deal ? 1 : 0)), { asPercent: true, points: false, overTime });
  series($("chart-savings"), "Savings against list price", "Savings (%)", mx, metrics.map((p) => (p.deal ? p.savings_pct : null)), { overTime });
  series($("chart-buffer"), "Replay buffer size", "Experiences", hx, history.map((p) => p.replay_buffer_size), { average: false, overTime });
  series($("chart-epsilon"), "Exploration rate", "Epsilon", hx, history.map((p) => p.epsilon), { average: false, overTime });
}

// --- checkpoints and model changes ---------------------------------------------------------

function renderCheckpoints(checkpoints) {
  // A checkpoint holds the version the learner had published when it saved it.
  const versionOf = new Map(history.filter((p) => p.checkpoint).map((p) => [p.checkpoint, p.model_version]));
  const figures = figuresByVersion();
  const rows = [...checkpoints].reverse().map((c) => {
    const version = versionOf.get(c.name);
    const live = figures.get(version);
    return el("tr", {},
      el("td", {}, c.name),
      el("td", { class: "num" }, version ?? "—"),
      el("td", { class: "num" }, c.negotiations),
      el("td", { class: "num" }, live ? `${dealRate(live)} of ${live.n}` : "—"),
      el("td", { class: "num" }, avgReward(live)),
      el("td", {}, when(c.saved_at)),
      el("td", { class: "num" }, `${(c.size_bytes / 1024).toFixed(0)} KiB`),
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
  try {
    const [summary, status, hist, points, changes, checkpoints] = await Promise.all([
      api("GET", "/api/summary"),
      api("GET", "/api/training"),
      api("GET", "/api/training/history?limit=500"),
      api("GET", "/api/metrics/negotiations?limit=1000"),
      api("GET", "/api/models?limit=50"),
      api("GET", "/api/checkpoints"),
    ]);
    history = hist.points;
    metrics = points.points;
    models = changes;
    renderSummary(summary);
    renderTraining(status);
    renderVersions();
    renderModels();
    renderCheckpoints(checkpoints);
    drawCharts();
    $("training-error").textContent = "";
  } catch (error) {
    $("training-error").textContent = `Could not load the dashboard: ${error.message}`;
  }
  await refreshSafety(models); // after the model log: the A/B form offers its candidates
}

let scheduled = false;
async function refreshSoon() {  // several events in one second make one refresh
  if (scheduled) return;
  scheduled = true;
  await new Promise((resolve) => setTimeout(resolve, 250));
  scheduled = false;
  await refresh();
}

axisSelect.addEventListener("change", drawCharts);
windowSelect.addEventListener("change", drawCharts);
initSafety({ refresh });
await refresh();
subscribe(
  () => refreshSoon(),
  (live) => { $("live-status").textContent = live ? "Live: updates as negotiations finish." : "Live updates paused: reconnecting…"; },
);
