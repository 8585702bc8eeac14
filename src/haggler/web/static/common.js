// Shared by every page: calls to the API, errors shown next to the field that caused them,
// number formats, the negotiation chart and live updates.

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `request failed (${status})`);
    this.status = status;
    this.detail = detail;
  }
}

// The page's CSRF token: requests that change something and go by the session cookie carry it.
const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content;

export async function api(method, path, { body, token, signingIn = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  else if (csrfToken && method !== "GET") headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "The service cannot be reached. Is it running?");
  }
  const data = await response.json().catch(() => null);
  if (response.status === 401 && !token && !signingIn) {
    // The session ended (expired, or signed out elsewhere): sign in again, then come back.
    location.assign(`/login?${new URLSearchParams({ next: location.pathname })}`);
  }
  if (!response.ok) throw new ApiError(response.status, data?.detail ?? response.statusText);
  return data;
}

const FRIENDLY = [
  [/^Input should be a valid decimal$/, "Enter a number, like 249.90"],
  [/^Input should be a valid integer.*$/, "Enter a whole number"],
  [/^Decimal input should have no more than 2 decimal places$/, "Use at most two decimal places (cents)"],
  [/^Input should be a finite number$/, "Enter a finite number"],
  [/^Field required$/, "Required"],
  [/^Input should be /, "Must be "],
];

export function friendly(message) {
  for (const [pattern, replacement] of FRIENDLY) {
    if (pattern.test(message)) return message.replace(pattern, replacement);
  }
  return message;
}

// The field a FastAPI validation error belongs to: the last name in its location
// (["body", "seller", "simulated", "seed"] -> "seed").
function fieldOf(loc) {
  const names = (loc ?? []).filter((part) => typeof part === "string");
  return names.length > 1 ? names[names.length - 1] : null;
}

export function clearErrors(form) {
  for (const el of form.querySelectorAll(".error")) el.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

// Show an API error in words: each validation error next to its field (aliases map API names to
// field ids), anything else in the form's own error line or next to `fallbackField`.
export function showError(form, error, { aliases = {}, fallbackField = null } = {}) {
  clearErrors(form);
  const general = form.querySelector("[data-form-error]") ?? document.querySelector("[data-form-error]");
  const place = (field, message) => {
    const id = aliases[field] ?? field;
    const input = id ? form.querySelector(`#${CSS.escape(id)}`) : null;
    const slot = input ? form.querySelector(`#${CSS.escape(id)}-error`) : null;
    if (input && slot) {
      input.setAttribute("aria-invalid", "true");
      slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
      return input;
    }
    if (general) general.textContent = field ? `${field.replaceAll("_", " ")}: ${message}` : message;
    return null;
  };
  let first = null;
  if (error instanceof ApiError && Array.isArray(error.detail)) {
    for (const item of error.detail) {
      first = place(fieldOf(item.loc), friendly(item.msg)) ?? first;
    }
  } else {
    first = place(fallbackField, error.message);
  }
  first?.focus();
}

const number2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
export const money = (value) => (value === null || value === undefined ? "—" : number2.format(Number(value)));
export const pct = (value, digits = 1) =>
  value === null || value === undefined ? "—" : `${Number(value).toFixed(digits)}%`;
export const when = (iso) =>
  iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" }) : "—";
export const label = (name) => (name ? name.replaceAll("_", " ") : "—");

export const OUTCOMES = {
  deal: "Deal",
  buyer_walked: "Agent walked away",
  seller_walked: "Seller walked away",
  deadline: "No deal by the deadline",
};

// Where a model version came from, in words (the dashboard's model log and candidates).
export const MODEL_SOURCES = { starter: "starter model", training: "online training", restore: "restored", rollback: "rollback" };

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export async function loadProducts(select, { keep = "" } = {}) {
  const products = await api("GET", "/api/products");
  for (const p of products) {
    select.append(el("option", { value: p.id }, `${p.name} (list ${money(p.list_price)})`));
  }
  if (keep) select.value = keep;
  return new Map(products.map((p) => [String(p.id), p]));
}

// One line per move, in words, as the transcript shows it; the seller's side may be "You".
export function turnText(turn, { seller = "Seller", buyer = "Agent" } = {}) {
  const who = turn.party === "seller" ? seller : buyer;
  const verb = (base, third) => (who === "You" ? base : third);
  if (turn.move === "counter") {
    return turn.party === "seller"
      ? `${who} ${verb("ask", "asks")} ${money(turn.price)}`
      : `${who} ${verb("offer", "offers")} ${money(turn.price)}`;
  }
  if (turn.move === "accept") return `${who} ${verb("accept", "accepts")}${turn.price ? ` ${money(turn.price)}` : ""}`;
  return `${who} ${verb("walk", "walks")} away`;
}

// The chart of a negotiation: the seller's asks and the agent's offers by round, with the buyer's
// limit (purchaser pages only) and the list price as lines.
export function drawNegotiation(target, turns, { listPrice, limit = null, maxRounds, names = {}, dealPrice = null }) {
  const asks = turns.filter((t) => t.party === "seller" && t.move === "counter");
  const offers = turns.filter((t) => t.party === "buyer" && t.move === "counter");
  const accepted = turns.find((t) => t.move === "accept");
  const lastRound = Math.max(maxRounds ?? 1, ...turns.map((t) => t.round));
  const xs = [0, lastRound];
  const traces = [
    {
      x: asks.map((t) => t.round), y: asks.map((t) => Number(t.price)), name: names.asks ?? "Seller's asks",
      mode: "lines+markers", line: { color: "#d9480f", width: 3 }, marker: { size: 9 },
    },
    {
      x: offers.map((t) => t.round), y: offers.map((t) => Number(t.price)), name: names.offers ?? "Agent's offers",
      mode: "lines+markers", line: { color: "#1f5fbf", width: 3 }, marker: { size: 9, symbol: "diamond" },
    },
    {
      x: xs, y: [Number(listPrice), Number(listPrice)], name: "List price", mode: "lines",
      line: { color: "#5b6475", dash: "dot", width: 2 }, hoverinfo: "name+y",
    },
  ];
  if (limit !== null) {
    traces.push({
      x: xs, y: [Number(limit), Number(limit)], name: "Your limit", mode: "lines",
      line: { color: "#b3261e", dash: "dash", width: 2 }, hoverinfo: "name+y",
    });
  }
  const deal = accepted?.price ?? dealPrice;
  if (accepted && deal) {
    traces.push({
      x: [accepted.round], y: [Number(deal)], name: "Deal", mode: "markers",
      marker: { size: 18, symbol: "star", color: "#17703a" },
    });
  }
  const layout = {
    margin: { l: 56, r: 12, t: 40, b: 44 },
    xaxis: { title: { text: "Round" }, range: [-0.3, lastRound + 0.3], dtick: lastRound > 12 ? 2 : 1, fixedrange: true },
    yaxis: { title: { text: "Unit price" }, fixedrange: true, rangemode: "normal" },
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
    showlegend: true,
  };
  return window.Plotly.react(target, traces, layout, { displayModeBar: false, responsive: true });
}

// Live updates: the server sends `update` whenever what the pages show has changed.
export function subscribe(onUpdate, onStatus = () => {}, { negotiation = null } = {}) {
  const source = new EventSource(negotiation ? `/api/events?negotiation=${negotiation}` : "/api/events");
  source.addEventListener("update", (event) => onUpdate(JSON.parse(event.data)));
  source.addEventListener("open", () => onStatus(true));
  source.addEventListener("error", () => onStatus(false));
  window.addEventListener("pagehide", () => source.close());
  return source;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A result card: deal or not, the price, savings against list price, rounds, model version.
export function resultCard(container, { outcome, dealPrice, listPrice, quantity, rounds, modelVersion, savingsPerUnit, savingsTotal, savingsPct, perspective = "buyer", heading = null }) {
  const deal = outcome === "deal";
  container.className = `result ${deal ? "deal" : "no-deal"}`;
  const facts = [];
  if (deal) {
    facts.push(["Unit price", money(dealPrice)]);
    facts.push(["Total", money(Number(dealPrice) * quantity)]);
    if (perspective === "buyer") {
      facts.push(["Saved per unit", `${money(savingsPerUnit)} against list ${money(listPrice)}`]);
      facts.push(["Saved in total", `${money(savingsTotal)} (${pct(savingsPct, 2)})`]);
    } else {
      const diff = Number(dealPrice) - Number(listPrice);
      facts.push(["Against list price", `${diff >= 0 ? "+" : ""}${money(diff)} per unit`]);
    }
  }
  facts.push(["Rounds", String(rounds)]);
  if (modelVersion !== undefined) facts.push(["Model version", String(modelVersion)]);
  const title = heading ?? (deal ? `Deal at ${money(dealPrice)}` : `No deal: ${OUTCOMES[outcome].toLowerCase()}`);
  container.replaceChildren(
    el("h3", {}, title),
    el("dl", { class: "facts" }, facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
  );
  container.hidden = false;
}
