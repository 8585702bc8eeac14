// The "Safe learning" section of the dashboard: the guards, the running A/B test and its
// decision, past tests, model versions and candidates evaluated or A/B tested on demand, and
// the notice of the last rollback.
import { api, clearErrors, el, label, MODEL_SOURCES, pct, showError, when } from "./common.js";
import { askOperator } from "./operator-dialog.js";

const $ = (id) => document.getElementById(id);

let safety = null;
let candidates = [];
let models = []; // the dashboard's model log: the A/B form offers its testable versions
let evaluating = null; // the version being evaluated, while the request runs
let refreshAll = async () => {};

// `refresh` reloads the whole dashboard, after an action here has changed something.
export function initSafety({ refresh }) {
  refreshAll = refresh;
}

const share = (v) => pct(100 * v);
const three = (v) => v.toFixed(3);
const signed = (v) => `${v >= 0 ? "+" : ""}${v.toFixed(3)}`;
const pValue = (p) => (p === null || p === undefined ? "—" : p < 0.001 ? "< 0.001" : String(Number(p.toPrecision(2))));
const splitText = (split) => `${Number((100 * split).toFixed(1))}%`;

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
      el("td", {}, MODEL_SOURCES[m.source] ?? label(m.source)),
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

// Judging a version changes nothing: it runs at once, without a confirmation.
async function evaluate(version) {
  setEvaluating(version);
  try {
    renderEvaluation(await api("POST", `/api/models/${version}/evaluate`));
  } catch (error) {
    const box = $("evaluation");
    box.className = "evaluation result no-deal";
    box.removeAttribute("aria-busy");
    box.replaceChildren(el("p", { class: "error", role: "alert" }, `Could not evaluate version ${version}: ${error.message}`));
  } finally {
    setEvaluating(null);
  }
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
  if (!Number.isFinite(split) || split < 0.05 || split > 0.95) {
    showError(form, new Error("Enter a share from 0.05 to 0.95, like 0.2."), { fallbackField: "split" });
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
      await refreshAll();
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
      await refreshAll();
    },
  });
}

$("promote-challenger").addEventListener("click", () => decide("promote"));
$("reject-challenger").addEventListener("click", () => decide("reject"));

// --- loading -------------------------------------------------------------------------------

// `modelLog`: the model log the dashboard has just loaded; kept for the A/B form.
export async function refreshSafety(modelLog = models) {
  models = modelLog;
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
