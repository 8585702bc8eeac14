// The dashboard's learning curves: six charts over negotiations or time, each with axis titles in
// its units, hover values to fixed decimals, and the moments the serving model changed marked on
// it (restores, rollbacks, promotions, A/B tests starting and ending) as dotted lines whose top
// marker names the event.
import { when } from "./common.js";

const CONFIG = { displayModeBar: false, responsive: true };
const BLUE = "#1f5fbf";
const MUTED = "#5b6475";
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
// Fixed margins, room for the tick labels, axis titles and one line of legend: margins that
// plotly grows to fit (automargin, a legend outside the plot) can cost a chart a second layout.
const MARGIN = { l: 72, r: 16, t: 30, b: 52, autoexpand: false };

const EVENTS = {
  restore: { name: "Restore", color: "#6f42c1", symbol: "diamond" },
  rollback: { name: "Rollback", color: "#b3261e", symbol: "x" },
  promotion: { name: "Promotion", color: "#17703a", symbol: "star" },
  ab_test_start: { name: "A/B test start", color: "#a85d00", symbol: "triangle-right" },
  ab_test_end: { name: "A/B test end", color: "#a85d00", symbol: "triangle-left" },
};

// What each event was, in a sentence (its hover text).
function describeEvent(e) {
  const at = when(e.at, { seconds: true });
  const reason = e.reason ? `<br>${wrap(e.reason)}` : "";
  switch (e.kind) {
    case "restore": return `Restored ${escape(e.checkpoint ?? "a checkpoint")} as version ${e.version}<br>${at}`;
    case "rollback": return `Rolled back: version ${e.version} serves the weights of version ${e.copy_of ?? "?"}<br>${at}${reason}`;
    case "promotion": return `Version ${e.version} promoted to serve<br>${at}${reason}`;
    case "ab_test_start": return `A/B test ${e.ab_test_id} started: version ${e.version} against version ${e.champion_version}<br>${at}`;
    case "ab_test_end": return `A/B test ${e.ab_test_id} ended: version ${e.version} ${e.outcome ?? "stopped"}<br>${at}${reason}`;
    default: return `${e.kind}<br>${at}`;
  }
}

// Hover boxes do not wrap by themselves: a long reason goes on lines of about 60 characters.
function wrap(text, width = 60) {
  const lines = [];
  let line = "";
  for (const word of escape(text).split(" ")) {
    if (line && line.length + word.length > width) { lines.push(line); line = ""; }
    line = line ? `${line} ${word}` : word;
  }
  return [...lines, line].join("<br>");
}

const escape = (text) => String(text).replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]);

// The API's times are UTC (one without a zone is read as UTC); plotly's dates have no zone, so
// each is given as the clock of the browser's time zone, which the axis title names.
function local(iso) {
  const d = new Date(/(Z|[+-]\d\d:?\d\d)$/i.test(iso) ? iso : `${iso}Z`);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}
const ms = (iso) => new Date(/(Z|[+-]\d\d:?\d\d)$/i.test(iso) ? iso : `${iso}Z`).getTime();

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

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(Math.max(1, raw)));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw) ?? 10 * power;
}

// Where each event goes on a chart's x axis. Over time: its moment. Over negotiations: just after
// the last point before it (between two negotiations, or after the last one); one from before
// the chart's first point is left out, unless the chart starts at the very first negotiation.
function eventPositions(events, points, overTime, fromTheStart) {
  if (points.length === 0) return [];
  const first = points[0].t;
  const placed = [];
  for (const e of events) {
    const t = ms(e.at);
    if (overTime) {
      if (t >= first) placed.push({ e, x: local(e.at) });
      continue;
    }
    let before = 0; // points at or before the event (they are in time order)
    while (before < points.length && points[before].t <= t) before += 1;
    if (before === 0 && !fromTheStart) continue;
    placed.push({ e, x: (before === 0 ? points[0].x - 1 : points[before - 1].x) + 0.5 });
  }
  return placed;
}

// One trace per kind of event: a dotted line from the bottom to the top of the plot at each
// (on a second y axis from 0 to 1), its marker at the top, with the event's sentence on hover.
// The page's key (#event-key) names the kinds once for all the charts: in each chart's legend
// they took a second line, which the fixed top margin cut off.
function eventTraces(placed) {
  const traces = [];
  for (const [kind, style] of Object.entries(EVENTS)) {
    const mine = placed.filter((p) => p.e.kind === kind);
    if (mine.length === 0) continue;
    const text = mine.flatMap((p) => { const d = describeEvent(p.e); return [d, d, null]; });
    traces.push({
      x: mine.flatMap((p) => [p.x, p.x, null]),
      y: mine.flatMap(() => [0, 1, null]),
      yaxis: "y2",
      name: style.name,
      mode: "lines+markers",
      line: { color: style.color, width: 1.5, dash: "dot" },
      marker: { color: style.color, symbol: style.symbol, size: mine.flatMap(() => [0, 11, 0]) },
      customdata: text,
      hovertemplate: "%{customdata}<extra></extra>",
      meta: { event: kind },
      showlegend: false,
      cliponaxis: false,
    });
  }
  return traces;
}

// A chart: its series (each point, a moving average or steps) with the events on it.
function chart(target, spec, { overTime, span, events, fromTheStart }) {
  const { xs, ts, ys, xTitle, xHover, yTitle, format, suffix = "", average = true, steps = false, scale = 1, range = null } = spec;
  const y = (v) => (v === null || v === undefined ? null : scale * v);
  const moment = spec.ids ? "Negotiation #%{customdata}, ended %{x|%d %b %Y, %H:%M:%S}" : "%{x|%d %b %Y, %H:%M:%S}";
  const hover = (name) => `${overTime ? moment : xHover}<br>${name}: %{y:${format}}${suffix}<extra></extra>`;
  const xsShown = overTime ? ts.map(local) : xs;
  // Short names in a narrow chart (a phone): the legend above the plot keeps to one line.
  const narrow = target.clientWidth < 520;
  const averageName = `${narrow ? "Average" : "Moving average"} of ${span}`;
  const traces = [];
  if (average) {
    traces.push({
      x: xsShown, y: ys.map(y), customdata: spec.ids, name: narrow ? "Each" : spec.pointsName, mode: "markers", marker: { size: 5, color: "rgba(31,95,191,0.35)" },
      // Shown on a click on its legend entry: each point is an SVG path of its own, and with 200
      // of them a chart took 2-3 times as long to draw (the dashboard's first load, measured).
      hovertemplate: hover(spec.pointName ?? yTitle), visible: "legendonly",
    });
    traces.push({
      x: xsShown, y: movingAverage(ys, span).map(y), customdata: spec.ids, name: averageName, mode: "lines", line: { color: BLUE, width: 3 },
      hovertemplate: hover(`Moving average of ${span}`),
    });
  } else {
    traces.push({
      x: xsShown, y: ys.map(y), name: spec.name, mode: xs.length > 60 ? "lines" : "lines+markers",
      line: { color: BLUE, width: 2.5, shape: steps ? "hv" : "linear" }, marker: { size: 5 },
      hovertemplate: hover(spec.name), showlegend: false,
    });
  }
  const empty = xs.length === 0;
  const placed = empty ? [] : eventPositions(events, xs.map((x, i) => ({ x, t: ms(ts[i]) })), overTime, fromTheStart);
  traces.push(...eventTraces(placed));
  const top = Math.max(1, ...xs, ...placed.map((p) => (overTime ? 0 : p.x)));
  const layout = {
    font: { family: getComputedStyle(document.body).fontFamily, size: 12, color: "#1d2330" },
    margin: overTime ? { ...MARGIN, b: 66 } : MARGIN, // dates take two lines
    xaxis: {
      title: { text: overTime ? `Time (${ZONE})` : xTitle },
      ...(overTime ? { type: "date" } : { type: "linear", tick0: 0, dtick: niceStep(top / 6), tickformat: ",d", rangemode: "tozero" }),
    },
    yaxis: {
      title: { text: yTitle }, exponentformat: "none", separatethousands: true,
      rangemode: "tozero", ...(range ? { range } : {}), ticksuffix: suffix,
    },
    yaxis2: { overlaying: "y", range: [0, 1], visible: false, fixedrange: true },
    // Above the plot, from the left edge of the chart rather than of the plot: more room for
    // one line of names in a narrow chart.
    legend: { orientation: "h", x: -(MARGIN.l - 4) / Math.max(100, target.clientWidth - MARGIN.l - MARGIN.r), xanchor: "left", y: 1.02, yanchor: "bottom" },
    showlegend: traces.some((t) => t.showlegend !== false),
    hovermode: "closest",
    hoverlabel: { align: "left" },
  };
  if (empty) {
    layout.annotations = [{ text: "No data yet", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5, font: { color: MUTED, size: 14 } }];
    layout.xaxis.visible = false;
    layout.yaxis.visible = false;
  }
  return window.Plotly.react(target, traces, layout, CONFIG);
}

// Every chart from the learner's updates (`history`), the finished negotiations (`metrics`, the
// newest of `finished` in all) and the model events; resolves once all are drawn.
export function drawCharts(targets, { history, metrics, finished, events, overTime, span }) {
  // The learner's updates count the negotiations learned from; the negotiations are numbered in
  // the order they ended, counting those before the window loaded.
  const before = Math.max(0, finished - metrics.length);
  const h = {
    xs: history.map((p) => p.negotiations), ts: history.map((p) => p.at),
    xTitle: "Negotiations learned from", xHover: "Update after %{x:,d} negotiations", pointsName: "Each update",
  };
  const m = {
    xs: metrics.map((_, i) => before + i + 1), ts: metrics.map((p) => p.finished_at),
    ids: metrics.map((p) => p.id),
    xTitle: "Negotiations finished", xHover: "Negotiation #%{customdata}, no. %{x:,d} to finish", pointsName: "Each negotiation",
  };
  const options = { overTime, span, events };
  const fromHistory = { ...options, fromTheStart: history.length > 0 && history[0].negotiations <= 1 };
  const fromMetrics = { ...options, fromTheStart: before === 0 };
  return Promise.all([
    chart(targets.loss, { ...h, ys: history.map((p) => p.loss), yTitle: "Loss (Huber, per update)", pointName: "Loss", format: ".4f", average: true }, fromHistory),
    chart(targets.reward, { ...m, ys: metrics.map((p) => p.reward), yTitle: "Reward (−1 to 1)", pointName: "Reward", format: ".3f" }, fromMetrics),
    chart(targets.success, { ...m, ys: metrics.map((p) => (p.deal ? 1 : 0)), yTitle: "Deals (% of negotiations)", pointName: "Deal", format: ".1f", suffix: "%", scale: 100, range: [0, 100] }, fromMetrics),
    chart(targets.savings, { ...m, ys: metrics.map((p) => (p.deal ? p.savings_pct : null)), yTitle: "Saving (% of list price)", pointName: "Saving", format: ".1f", suffix: "%" }, fromMetrics),
    chart(targets.buffer, { ...h, ys: history.map((p) => p.replay_buffer_size), yTitle: "Experiences (transitions)", name: "Replay buffer", format: ",d", average: false, steps: true }, fromHistory),
    chart(targets.epsilon, { ...h, ys: history.map((p) => p.epsilon), yTitle: "Exploration rate ε", name: "Exploration rate", format: ".3f", average: false, steps: true }, fromHistory),
  ]);
}
