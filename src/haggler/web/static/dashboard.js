// The operator's dashboard: summary, training status and switch, safe learning (the guards, the
// running A/B test and its decision, candidates evaluated or A/B tested on demand, rollbacks),
// learning curves with a moving average, figures per model version, checkpoints with restore,
// and the log of model changes. Everything refreshes when the server says something changed
// (server-sent events) and after each action.
import { ApiError, api, clearErrors, el, label, money, pct, showError, subscribe, when } from "./common.js";

const $ = (id) => document.getElementById(id);
const axisSelect = $("axis");
const windowSelect = $("window");
const dialog = $("operator-dialog");
const dialogForm = $("operator-form");
const tokenInput = $("operator-token");

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

const SOURCES = { starter: "starter model", training: "online training", restore: "restored", rollback: "rollback" };

function renderModels() {
  const rows = models.map((m) => {
    const source = m.source === "rollback" && m.copy_of !== null
      ? el("strong", {}, `rollback to version ${m.copy_of}`)
      : SOURCES[m.source] ?? label(m.source);
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

// --- safe learning -------------------------------------------------------------------------

let safety = null;
let candidates = [];
let evaluating = null; // the version being evaluated, while the request runs
let knownToken = null; // the operator token of the last action that succeeded on this page

const share = (v) => pct(100 * v);
const three = (v) => v.toFixed(3);
const signed = (v) => `${v >= 0 ? "+" : ""}${v.toFixed(3)}`;
const pValue = (p) => (p === null || p === undefined ? "—" : p < 0.001 ? "< 0.001" : String(Number(p.toPrecision(2))));
const splitText = (split) => `${Number((100 * split).toFixed(1))}%`;
const isAuthError = (error) => error instanceof ApiError && (error.status === 401 || error.status === 403);

function figure(e, format) {
  if (!e || e.mean === null || e.mean === undefined) return "—";
  return format(e.mean);
}

function range(e, format) {
  if (!e || e.ci_low === null || e.ci_low === undefined || e.ci_high === null) return "";
  return `${format(e.ci_low)} to ${format(e.ci_high)}`;
}

// A figure and, under it, its 95% interval.
function figureCell(e, format) {
  const ci = range(e, format);
  return el("td", { class: "num" }, el("span", { class: "value" }, figure(e, format)), ci ? el("span", { class: "ci" }, ci) : null);
}

function renderSafetyFacts(s) {
  const promotion = s.promotion === "gated"
    ? `gated: a new version serves only after passing the evaluation gate${s.ab_split > 0 ? " and an A/B test" : ""}`
    : "immediate: every update of the learner serves at once";
  const exploration = s.exploration === "safe"
    ? "safe: near-best counter-offers only, never a random accept or walk-away"
    : "epsilon-greedy: a random legal move at the exploration rate";
  const facts = [
    ["Promotion", el("span", { id: "promotion-mode" }, promotion)],
    ["Exploration", el("span", { id: "exploration-mode" }, exploration)],
    ["A/B split", el("span", { id: "ab-split" }, s.ab_split > 0 ? `${splitText(s.ab_split)} of new negotiations to a challenger` : "0 (the gate alone decides)")],
    ["Auto-rollback", el("span", { id: "auto-rollback", class: s.auto_rollback ? "status-on" : "status-off" }, s.auto_rollback ? "On" : "Off")],
    ["Serving version", el("span", { id: "serving-version" }, s.serving_version ?? "—")],
    ["Known good version", el("span", { id: "known-good-version" }, s.known_good_version ?? "—")],
    ["Promoted / rejected", `${s.promotions} / ${s.rejections} candidates`],
    ["Rollbacks", String(s.rollbacks)],
  ];
  $("safety-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function renderRollback(s) {
  const notice = $("rollback-notice");
  const m = s.last_rollback;
  notice.hidden = !m;
  if (!m) return;
  // The learner writes "rolled back from version X to Y: <why>".
  const said = /^rolled back from version (\d+) to (\d+): (.*)$/s.exec(m.reason ?? "");
  const text = said
    ? `Rolled back from version ${said[1]} to ${said[2]} at ${when(m.created_at)}: ${said[3]}`
    : `Rolled back to version ${m.copy_of ?? "?"} at ${when(m.created_at)}${m.reason ? `: ${m.reason}` : "."}`;
  const now = s.serving_version === m.version
    ? `Its weights serve as version ${m.version}.`
    : `They served as version ${m.version}; version ${s.serving_version ?? "?"} serves now.`;
  notice.replaceChildren(el("strong", {}, text), " ", now);
}

const ARM_FIGURES = [
  ["Deal rate", "deal_rate", share],
  ["Average reward", "reward", three],
  ["Average savings", "savings_pct", pct],
  ["Surplus captured", "surplus", share],
];

function renderRunningTest(test) {
  $("ab-actions").hidden = !test;
  if (!test) {
    $("ab-test").replaceChildren(el("p", { class: "muted", id: "no-ab-test" }, "No A/B test is running. Start one from a candidate below, or let the gate start one (PROMOTION=gated with AB_SPLIT above 0)."));
    return;
  }
  const v = test.verdict;
  const parts = [el("p", { id: "ab-summary" },
    el("strong", {}, `Test ${test.id}: `),
    `challenger version ${test.challenger_version} against champion version ${test.champion_version}; the challenger plays ${splitText(test.split)} of new negotiations (since ${when(test.started_at)}).`)];
  if (!v) {
    parts.push(el("p", { class: "muted" }, "No figures yet: the learner looks at a running test every few seconds."));
    $("ab-test").replaceChildren(...parts);
    return;
  }
  const arms = [["champion", "Champion", test.champion_version], ["challenger", "Challenger", test.challenger_version]];
  const row = (name, cells) => el("tr", {}, el("th", { scope: "row" }, name), ...cells);
  parts.push(el("div", { class: "table-wrap" }, el("table", { id: "ab-arms", class: "arms" },
    el("caption", { class: "sr-only" }, "Figures of each arm with their 95% intervals"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Figure (95% interval)"),
      ...arms.map(([arm, name, version]) => el("th", { scope: "col", class: "num", "data-arm": arm }, `${name} (version ${version})`)))),
    el("tbody", {},
      row("Negotiations", arms.map(([arm]) => el("td", { class: "num", "data-arm": arm }, String(v[arm]?.negotiations ?? "—")))),
      ...ARM_FIGURES.map(([name, key, format]) => row(name, arms.map(([arm]) => figureCell(v[arm]?.[key], format))))))));
  const lift = v.lift;
  const liftText = lift && lift.mean !== null
    ? `${signed(lift.mean)} (always-valid 95% interval ${range(lift, signed) || "—"})`
    : "—";
  parts.push(el("dl", { class: "facts", id: "ab-verdict" },
    el("dt", {}, "Reward lift (challenger − champion)"), el("dd", {}, liftText),
    el("dt", {}, "Always-valid p (reward)"), el("dd", {}, pValue(v.always_valid_p)),
    el("dt", {}, "Always-valid p (deal rate)"), el("dd", {}, pValue(v.deal_rate_p)),
    el("dt", {}, "Stopping rule"), el("dd", { id: "ab-reason" }, v.reason ?? "—")));
  $("ab-test").replaceChildren(...parts);
}

const TEST_STATUS = { running: "running", promoted: "challenger promoted", rejected: "challenger rejected", stopped: "stopped" };
const DECIDED_BY = { rule: "stopping rule", operator: "operator", rollback: "rollback" };

function renderPastTests(tests) {
  const past = tests.filter((t) => t.status !== "running").slice(0, 5);
  const rows = past.map((t) =>
    el("tr", {},
      el("td", {}, `#${t.id}`),
      el("td", {}, `${t.champion_version} → ${t.challenger_version}`),
      el("td", { class: "num" }, splitText(t.split)),
      el("td", { class: `test-${t.status}` }, TEST_STATUS[t.status] ?? t.status),
      el("td", {}, DECIDED_BY[t.decided_by] ?? label(t.decided_by)),
      el("td", { class: "reason" }, t.reason ?? "—"),
      el("td", {}, when(t.ended_at))));
  $("ab-tests").tBodies[0].replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No A/B test has ended yet."))]));
}

// Candidates and rejected versions can be judged again, or tested live against the serving one.
const testable = (m) => (m.status === "candidate" || m.status === "rejected") && m.version !== safety?.serving_version;

function renderCandidates() {
  const running = safety?.running_test;
  const rows = candidates.map((m) => {
    const inTest = running && m.version === running.challenger_version;
    const status = m.version === safety?.serving_version ? "promoted, serving" : inTest ? `${m.status}, in A/B test ${running.id}` : m.status;
    const actions = testable(m) ? [
      el("button", { type: "button", class: "secondary", "data-evaluate": m.version, "aria-label": `Evaluate version ${m.version}`, disabled: evaluating !== null }, evaluating === m.version ? "Evaluating…" : "Evaluate"),
      inTest ? null : el("button", { type: "button", class: "secondary", "data-ab": m.version, "aria-label": `A/B test version ${m.version}` }, "A/B test"),
    ] : [];
    return el("tr", { class: m.source === "rollback" ? "rollback" : null },
      el("td", {}, String(m.version)),
      el("td", {}, el("span", { class: `badge ${m.status}` }, status)),
      el("td", { class: "reason" }, m.reason ?? "—"),
      el("td", {}, SOURCES[m.source] ?? label(m.source)),
      el("td", {}, when(m.created_at)),
      el("td", {}, el("div", { class: "row-actions" }, actions)));
  });
  $("candidates").tBodies[0].replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No model versions of this status."))]));

  // The A/B form offers the same versions, whatever the filter shows.
  const select = $("challenger_version");
  const chosen = select.value;
  const options = models.filter(testable).map((m) => el("option", { value: m.version }, `version ${m.version} (${m.status})`));
  select.replaceChildren(el("option", { value: "" }, options.length ? "Choose a version" : "None to test"), ...options);
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

function renderSafety(s, tests) {
  safety = s;
  renderSafetyFacts(s);
  renderRollback(s);
  renderRunningTest(s.running_test);
  renderPastTests(tests);
  renderCandidates();
  const split = $("split");
  if (!split.value) split.value = String(s.ab_split > 0 ? s.ab_split : 0.2);
}

// --- the result of an evaluation ------------------------------------------------------------

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const count = (v) => (v === null || v === undefined ? "—" : Number.isInteger(v) ? String(v) : v.toFixed(1));
const estimateText = (e, format = three) => {
  const ci = range(e, format);
  return `${figure(e, format)}${ci ? ` (95% interval ${ci})` : ""}`;
};
const table = (id, head, rows) => el("div", { class: "table-wrap" }, el("table", { id, class: "figures" },
  el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { scope: "col", class: i ? "num" : null }, h)))),
  el("tbody", {}, rows.map(([name, ...cells]) => el("tr", {}, el("th", { scope: "row" }, name), cells.map((c) => el("td", { class: "num" }, c)))))));

const CHECKS = {
  surplus: ["Surplus, held-out sellers", signed],
  deal_rate: ["Deal rate, held-out sellers", (v) => `${v >= 0 ? "+" : ""}${(100 * v).toFixed(1)} pts`],
  reward: ["Reward, logged negotiations", signed],
};
const METHODS = { wdr: "doubly robust (WDR)", pdwis: "PDWIS", on_policy: "as logged" };

// The gate's checks: each a difference candidate − champion, its bound and the threshold.
function checksTable(checks) {
  const rows = Object.entries(checks).map(([name, c]) => {
    const [title, format] = CHECKS[name] ?? [label(name), signed];
    const num = (v) => (v === null || v === undefined ? "—" : format(v));
    return [title, el("span", { class: `check-${c.status}` }, c.status), num(c.value), num(c.bound), num(c.threshold)];
  });
  return table("evaluation-checks", ["Check (candidate − champion)", "Result", "Difference", "Bound compared", "Threshold"], rows);
}

// Off-policy estimates on the logged negotiations: every estimate sent, with its effective
// sample size (how many of the logged negotiations it effectively rests on).
function loggedTable(logged) {
  const rows = [];
  const add = (who, e) => rows.push([`${who}, ${METHODS[e.method] ?? label(e.method)}`, estimateText(e.value), count(e.effective_sample_size), count(e.episodes)]);
  const name = (key) => (key === "behaviour" ? "Logged behaviour" : label(key).replace(/^./, (c) => c.toUpperCase()));
  for (const [key, value] of Object.entries(logged)) {
    if (!isObject(value)) continue;
    if ("method" in value) add(name(key), value);
    else if ("mean" in value) rows.push([`${name(key)} (candidate − champion)`, estimateText(value), "", ""]);
    else { // grouped by method ({"pdwis": {"candidate": ..., "champion": ...}})
      for (const [inner, e] of Object.entries(value)) if (isObject(e) && "method" in e) add(name(inner), e);
    }
  }
  return table("evaluation-logged", ["Reward per negotiation, from the logs", "Estimate (95% interval)", "Effective sample size", "Negotiations"], rows);
}

// Both models on the same held-out simulated sellers.
function suiteTable(suite) {
  const c = suite.candidate ?? {};
  const h = suite.champion ?? {};
  const rows = [
    ["Negotiations (feasible)", `${count(c.negotiations)} (${count(c.feasible)})`, `${count(h.negotiations)} (${count(h.feasible)})`],
    ["Deal rate where a deal was possible", estimateText(c.agreement_rate_feasible, share), estimateText(h.agreement_rate_feasible, share)],
    ["Surplus captured", estimateText(c.normalised_surplus, share), estimateText(h.normalised_surplus, share)],
    ["Average savings", estimateText(c.savings_pct, pct), estimateText(h.savings_pct, pct)],
    ["Average reward", estimateText(c.reward), estimateText(h.reward)],
  ];
  return table("evaluation-suite", ["Held-out simulated sellers", "Candidate", "Champion"], rows);
}

function renderEvaluation(result) {
  const box = $("evaluation");
  box.className = `evaluation result ${result.passed ? "deal" : "no-deal"}`;
  box.removeAttribute("aria-busy");
  const f = result.figures ?? {};
  const parts = [
    el("h4", { id: "evaluation-title" }, `Version ${result.version} against serving version ${result.champion_version}: ${result.passed ? "passes the gate" : "does not pass the gate"}`),
    el("p", { id: "evaluation-reason" }, result.reason),
  ];
  if (isObject(f.checks)) parts.push(checksTable(f.checks));
  if (isObject(f.logged) && f.logged.episodes) parts.push(loggedTable(f.logged));
  else if (isObject(f.logged)) parts.push(el("p", { class: "muted" }, "No logged negotiations to estimate the reward from yet."));
  if (isObject(f.suite)) parts.push(suiteTable(f.suite));
  if (typeof f.seconds === "number") parts.push(el("p", { class: "muted" }, `Judged in ${f.seconds.toFixed(1)} s.`));
  box.replaceChildren(...parts);
  box.hidden = false;
}

function setEvaluating(version) {
  evaluating = version;
  renderCandidates();
  if (version === null) return;
  const box = $("evaluation");
  box.className = "evaluation busy";
  box.setAttribute("aria-busy", "true");
  box.replaceChildren(el("p", {}, `Evaluating version ${version} against serving version ${safety?.serving_version ?? "?"} on logged negotiations and held-out simulated sellers: a second or two…`));
  box.hidden = false;
}

async function evaluate(version) {
  const run = async (token) => {
    setEvaluating(version);
    try {
      renderEvaluation(await api("POST", `/api/models/${version}/evaluate`, { token }));
    } catch (error) {
      if (isAuthError(error)) {
        $("evaluation").hidden = true;
        throw error; // shown next to the token
      }
      const box = $("evaluation");
      box.className = "evaluation result no-deal";
      box.removeAttribute("aria-busy");
      box.replaceChildren(el("p", { class: "error", role: "alert" }, `Could not evaluate version ${version}: ${error.message}`));
    } finally {
      setEvaluating(null);
    }
  };
  if (knownToken) {
    try {
      await run(knownToken);
      return;
    } catch {
      knownToken = null; // asked again below
    }
  }
  askOperator({
    title: `Evaluate version ${version}?`,
    message: `Version ${version} is judged as the gate would judge it, against the serving version ${safety?.serving_version ?? "?"}: on the newest logged negotiations and on held-out simulated sellers. It takes a second or two and changes nothing.`,
    confirm: "Evaluate",
    busy: "Evaluating…",
    action: run,
  });
}

$("candidates").addEventListener("click", (event) => {
  const evaluateButton = event.target.closest("button[data-evaluate]");
  if (evaluateButton) {
    evaluate(Number(evaluateButton.dataset.evaluate));
    return;
  }
  const abButton = event.target.closest("button[data-ab]");
  if (abButton) {
    $("challenger_version").value = abButton.dataset.ab;
    clearErrors($("ab-form"));
    $("split").focus();
    $("split").select();
  }
});

$("candidate-status").addEventListener("change", () => refreshSafety());

// --- A/B tests: start one, decide one --------------------------------------------------------

$("ab-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  const version = Number($("challenger_version").value);
  const raw = $("split").value.trim().replace(",", ".");
  const split = raw === "" ? NaN : Number(raw);
  if (!version) {
    showError(form, new Error("Choose the version to test."), { fallbackField: "challenger_version" });
    return;
  }
  if (!Number.isFinite(split) || split <= 0 || split >= 1) {
    showError(form, new Error("Enter a share above 0 and below 1, like 0.2."), { fallbackField: "split" });
    return;
  }
  const running = safety?.running_test;
  if (running) {
    showError(form, new Error(`A/B test ${running.id} is running: promote or reject its challenger before starting another.`));
    return;
  }
  askOperator({
    title: `Start an A/B test of version ${version}?`,
    message: `Version ${version} will play ${splitText(split)} of new negotiations against the serving version ${safety?.serving_version ?? "?"}, until the stopping rule or you decide.`,
    confirm: "Start the test",
    form,
    action: async (token) => {
      const test = await api("POST", "/api/ab-tests", { body: { challenger_version: version, split }, token });
      $("ab-status").textContent = `A/B test ${test.id} started: version ${test.challenger_version} plays ${splitText(test.split)} of new negotiations against version ${test.champion_version}.`;
      await refresh();
      $("ab-title").scrollIntoView({ block: "nearest" });
    },
  });
});

function decide(decision) {
  const test = safety?.running_test;
  if (!test) return;
  const promote = decision === "promote";
  const { challenger_version: challenger, champion_version: champion } = test;
  askOperator({
    title: promote ? `Promote version ${challenger}?` : `Reject version ${challenger}?`,
    message: promote
      ? `A/B test ${test.id} ends and version ${challenger} serves every negotiation from now on, replacing version ${champion}.`
      : `A/B test ${test.id} ends, version ${challenger} is marked rejected and version ${champion} serves every negotiation.`,
    confirm: promote ? "Promote" : "Reject",
    reason: true,
    action: async (token, { reason }) => {
      const ended = await api("POST", `/api/ab-tests/${test.id}/decision`, { body: { decision, reason }, token });
      $("ab-status").textContent = promote
        ? `A/B test ${ended.id} ended: version ${challenger} promoted, it now serves every negotiation.`
        : `A/B test ${ended.id} ended: version ${challenger} rejected, version ${champion} serves on.`;
      await refresh();
    },
  });
}

$("promote-challenger").addEventListener("click", () => decide("promote"));
$("reject-challenger").addEventListener("click", () => decide("reject"));

// --- the operator's confirmation (token + confirm) -----------------------------------------

let pending = null;

// `reason`: also ask why (kept with the decision); `form`: where errors other than the token's
// are shown (the dialog closes); `busy`: the confirm button's text while the action runs.
function askOperator({ title, message, confirm, action, reason = false, form = null, busy = null }) {
  clearErrors(dialogForm);
  $("dialog-title").textContent = title;
  $("dialog-message").textContent = message;
  $("dialog-confirm").textContent = confirm;
  $("reason-field").hidden = !reason;
  $("reason").value = "";
  pending = { action, reason, form, confirm, busy };
  dialog.showModal();
  (reason ? $("reason") : tokenInput).focus();
}

dialogForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(dialogForm);
  const { action, reason, form, confirm, busy } = pending;
  const why = $("reason").value.trim();
  if (reason && !why) {
    showError(dialogForm, new Error("Say why: the reason is kept with the decision."), { fallbackField: "reason" });
    return;
  }
  const token = tokenInput.value.trim();
  if (!token) {
    showError(dialogForm, new Error("Enter the operator token."), { fallbackField: "operator-token" });
    return;
  }
  const button = $("dialog-confirm");
  button.disabled = true;
  if (busy) button.textContent = busy;
  try {
    await action(token, { reason: why });
    knownToken = token;
    dialog.close();
  } catch (error) {
    if (isAuthError(error)) showError(dialogForm, error, { fallbackField: "operator-token" });
    else if (form) {
      knownToken = token;
      dialog.close();
      showError(form, error);
    } else showError(dialogForm, error);
  } finally {
    button.disabled = false;
    button.textContent = confirm;
  }
});
$("dialog-cancel").addEventListener("click", () => dialog.close());

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

async function refreshSafety() {
  try {
    const status = $("candidate-status").value;
    const [s, tests, listed] = await Promise.all([
      api("GET", "/api/safety"),
      api("GET", "/api/ab-tests?limit=6"),
      api("GET", `/api/models?limit=20${status ? `&status=${status}` : ""}`),
    ]);
    candidates = listed;
    renderSafety(s, tests);
    $("safety-error").textContent = "";
  } catch (error) {
    $("safety-error").textContent = `Could not load safe learning: ${error.message}`;
  }
}

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
  await refreshSafety(); // after the model log: the A/B form offers its candidates
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
await refresh();
subscribe(
  () => refreshSoon(),
  (live) => { $("live-status").textContent = live ? "Live: updates as negotiations finish." : "Live updates paused: reconnecting…"; },
);
