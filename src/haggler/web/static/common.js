// Shared by every page: calls to the API, forms checked in the browser with errors shown next to
// the field that caused them, money and date formats, tables that fit a phone, a confirmation
// step, the negotiation chart and live updates.

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

// Mark a field as wrong, with `message` in its error slot (the element `#<id>-error` its
// aria-describedby names); false when the form has no such field.
function markInvalid(form, id, message) {
  const input = id ? form.querySelector(`#${CSS.escape(id)}`) : null;
  const slot = input ? form.querySelector(`#${CSS.escape(id)}-error`) : null;
  if (!input || !slot) return false;
  input.setAttribute("aria-invalid", "true");
  slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
  return true;
}

// Show an API error in words: each validation error next to its field (aliases map API names to
// field ids), anything else in the form's own error line or next to `fallbackField`.
export function showError(form, error, { aliases = {}, fallbackField = null } = {}) {
  clearErrors(form);
  const general = form.querySelector("[data-form-error]") ?? document.querySelector("[data-form-error]");
  const place = (field, message) => {
    const id = aliases[field] ?? field;
    if (markInvalid(form, id, message)) return form.querySelector(`#${CSS.escape(id)}`);
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

// --- forms, checked in the browser before anything is sent -----------------------------------
// A rule reads a field's text and gives {value} (the text to send) or {error} (what to show next
// to the field). The server checks everything again; these only spare a round trip, and speak
// the same words as its answers (see FRIENDLY).

const MAX_PRICE = 1_000_000_000n;
const SPACES = /[\s\u00a0\u202f\u2009]+/gu;

// A unit price as people type it, to the plain decimal the API takes ("1250.00"): thousands
// separated by commas, spaces or apostrophes ("1,250.00", "1 250.00", "1'250.00"), a decimal
// comma ("12,50", "1.250,00"), the currency before or after ("EUR 12", "12 €"). A comma followed
// by exactly three digits separates thousands ("1,250" is 1250.00), as in the prices shown here.
export function parsePrice(text, { currency = CURRENCY } = {}) {
  let s = String(text).replace(SPACES, " ").trim();
  for (const sign of [currency, "€", "$", "£"].filter(Boolean)) {
    if (s.toUpperCase().startsWith(sign)) s = s.slice(sign.length).trim();
    if (s.toUpperCase().endsWith(sign)) s = s.slice(0, -sign.length).trim();
  }
  const unreadable = { error: "Enter a number, like 1,250.00" };
  if (s === "") return unreadable;
  if (/^[-\u2212]\s*[\d.,]/.test(s)) return { error: "Must be greater than 0" };
  const lastDot = s.lastIndexOf(".");
  const lastComma = s.lastIndexOf(",");
  let point = null; // the decimal separator, if any
  if (lastDot >= 0 && lastComma >= 0) point = lastDot > lastComma ? "." : ",";
  else if (lastDot >= 0) point = s.indexOf(".") === lastDot ? "." : null; // "1.250.000": thousands
  else if (lastComma >= 0) point = s.indexOf(",") === lastComma && /,\d{1,2}$/.test(s) ? "," : null;
  const at = point ? s.lastIndexOf(point) : s.length;
  let whole = s.slice(0, at);
  const fraction = point ? s.slice(at + 1) : "";
  if (!/^\d*$/.test(whole)) {
    const grouped = /^\d{1,3}([ ,'.\u2019])\d{3}(?:\1\d{3})*$/.exec(whole);
    if (!grouped || grouped[1] === point) return unreadable;
    whole = whole.replace(/\D/g, "");
  }
  if (!/^\d*$/.test(fraction) || whole + fraction === "") return unreadable;
  if (fraction.length > 2) return { error: "Use at most two decimal places (cents)" };
  const units = BigInt(whole || "0");
  const cents = fraction.padEnd(2, "0");
  if (units === 0n && cents === "00") return { error: "Must be greater than 0" };
  if (units > MAX_PRICE || (units === MAX_PRICE && cents !== "00")) {
    return { error: "Must be at most 1,000,000,000" };
  }
  return { value: `${units}.${cents}` };
}

// A whole number (thousands may be separated as in a price), from `min` to `max`.
export function parseWhole(text, { min = 0, max = null } = {}) {
  const s = String(text).replace(SPACES, " ").trim();
  const match = /^([-\u2212]?)(\d{1,3}(?:([ ,'\u2019])\d{3})(?:\3\d{3})*|\d+)$/.exec(s);
  if (!match) return { error: "Enter a whole number" };
  const number = BigInt(match[2].replace(/\D/g, "")) * (match[1] ? -1n : 1n);
  if (number < BigInt(min)) return { error: `Must be greater than or equal to ${min}` };
  if (max !== null && number > BigInt(max)) return { error: `Must be less than or equal to ${max}` };
  return { value: String(number) };
}

// Rules for checkForm: each takes the field's text.
export const priceRule = (options = {}) => (text) => parsePrice(text, options);
export const wholeRule = (options = {}) => (text) => parseWhole(text, options);
export const optional = (rule) => (text) => (String(text).trim() === "" ? { value: undefined } : rule(text));
export const required = (message, rule) => (text) => (String(text).trim() === "" ? { error: message } : rule(text));

// Check `form` against `rules` ({field id: rule}): every problem is shown next to its field and
// the first wrong field gets the focus. The values to send, or null if anything is wrong.
export function checkForm(form, rules) {
  clearErrors(form);
  const values = {};
  let first = null;
  for (const [id, rule] of Object.entries(rules)) {
    const input = form.querySelector(`#${CSS.escape(id)}`);
    const checked = rule(input.value);
    if ("error" in checked) {
      markInvalid(form, id, checked.error);
      first ??= input;
    } else if (checked.value !== undefined) values[id] = checked.value;
  }
  first?.focus();
  return first ? null : values;
}

// A field marked wrong loses its message as soon as what is typed in it is right. (Only then, and
// as it is typed: a message that changed when the field is left would move the button being
// clicked from under the pointer.)
export function clearWhenRight(form, rules) {
  form.addEventListener("input", (event) => {
    const input = event.target;
    const rule = rules[input.id];
    if (!rule || input.getAttribute("aria-invalid") !== "true" || "error" in rule(input.value)) return;
    input.removeAttribute("aria-invalid");
    const slot = form.querySelector(`#${CSS.escape(input.id)}-error`);
    if (slot) slot.textContent = "";
  });
}

// The catalogue's currency (the CURRENCY setting), which the page carries for what it shows
// before the API has answered; every view of a negotiation carries it too.
export const CURRENCY = document.querySelector('meta[name="currency"]')?.content ?? "";

const number2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
// A sum in figures only ("1,250.00"), where the currency is said once nearby.
export const amount = (value) => (value === null || value === undefined ? "—" : number2.format(Number(value)));
// A sum with its currency: "1,250.00 EUR".
export const money = (value, currency = CURRENCY) =>
  value === null || value === undefined ? "—" : `${amount(value)}${currency ? ` ${currency}` : ""}`;
export const pct = (value, digits = 1) =>
  value === null || value === undefined ? "—" : `${Number(value).toFixed(digits)}%`;

// A moment with its year and the browser's time zone, so that no date is ambiguous:
// "4 Dec 2026, 14:05 UTC" (with `seconds`, "4 Dec 2026, 14:05:09 UTC"). The API's times are UTC;
// one without a zone is read as UTC.
const DATE = { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" };
const dates = new Intl.DateTimeFormat("en-GB", DATE);
const datesToTheSecond = new Intl.DateTimeFormat("en-GB", { ...DATE, second: "2-digit" });
const moment = (iso) => new Date(/(Z|[+-]\d\d:?\d\d)$/i.test(iso) ? iso : `${iso}Z`);
export const when = (iso, { seconds = false } = {}) =>
  iso ? (seconds ? datesToTheSecond : dates).format(moment(iso)) : "—";
// A date for a table cell: to the minute, with the second in its tooltip.
export const timeEl = (iso) =>
  iso ? el("time", { datetime: iso, title: when(iso, { seconds: true }) }, when(iso)) : "—";
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
    // The name only: the list price is said next to the field, so nothing is cut off.
    select.append(el("option", { value: p.id }, p.name));
  }
  if (keep) select.value = keep;
  return new Map(products.map((p) => [String(p.id), p]));
}

// One line per move, in words, as the transcript shows it; the seller's side may be "You".
export function turnText(turn, { seller = "Seller", buyer = "Agent", currency = CURRENCY } = {}) {
  const who = turn.party === "seller" ? seller : buyer;
  const verb = (base, third) => (who === "You" ? base : third);
  if (turn.move === "counter") {
    return turn.party === "seller"
      ? `${who} ${verb("ask", "asks")} ${money(turn.price, currency)}`
      : `${who} ${verb("offer", "offers")} ${money(turn.price, currency)}`;
  }
  if (turn.move === "accept") return `${who} ${verb("accept", "accepts")}${turn.price ? ` ${money(turn.price, currency)}` : ""}`;
  return `${who} ${verb("walk", "walks")} away`;
}

// The transcript with each accept priced: the API sends an accept without a price, which is the
// other side's last counter-offer.
export function withAcceptedPrices(transcript) {
  const last = {};
  return transcript.map((turn) => {
    if (turn.move === "counter") last[turn.party] = turn.price;
    if (turn.move !== "accept" || turn.price) return turn;
    return { ...turn, price: last[turn.party === "seller" ? "buyer" : "seller"] ?? null };
  });
}

// The chart of a negotiation: the seller's asks and the agent's offers by round, with the buyer's
// limit (purchaser pages only) and the list price as lines.
export function drawNegotiation(target, turns, { listPrice, limit = null, maxRounds, names = {}, dealPrice = null, currency = CURRENCY }) {
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
    yaxis: { title: { text: currency ? `Unit price (${currency})` : "Unit price" }, fixedrange: true, rangemode: "normal" },
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
export function resultCard(container, { outcome, dealPrice, listPrice, quantity, rounds, modelVersion, savingsPerUnit, savingsTotal, savingsPct, perspective = "buyer", heading = null, currency = CURRENCY }) {
  const deal = outcome === "deal";
  const sum = (value) => money(value, currency);
  container.className = `result ${deal ? "deal" : "no-deal"}`;
  const facts = [];
  if (deal) {
    facts.push(["Unit price", sum(dealPrice)]);
    facts.push([`Total (${quantity} ${quantity === 1 ? "unit" : "units"})`, sum(Number(dealPrice) * quantity)]);
    if (perspective === "buyer") {
      facts.push(["Saved per unit", `${sum(savingsPerUnit)} against list ${sum(listPrice)}`]);
      facts.push(["Saved in total", `${sum(savingsTotal)} (${pct(savingsPct, 2)})`]);
    } else {
      const diff = Number(dealPrice) - Number(listPrice);
      facts.push(["Against list price", `${diff >= 0 ? "+" : ""}${sum(diff)} per unit`]);
    }
  }
  facts.push(["Rounds", String(rounds)]);
  if (modelVersion !== undefined) facts.push(["Model version", String(modelVersion)]);
  const title = heading ?? (deal ? `Deal at ${sum(dealPrice)}` : `No deal: ${OUTCOMES[outcome].toLowerCase()}`);
  container.replaceChildren(
    el("h3", {}, title),
    el("dl", { class: "facts" }, facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
  );
  container.hidden = false;
}

// --- tables that fit the page --------------------------------------------------------------

// A table of class "stack" becomes one card per row on a phone, each value under its column's
// name (app.css): its cells carry that name, kept up to date as the rows change.
export function stackTable(table) {
  const label = () => {
    const names = [...table.tHead.rows[0].cells].map((th) => th.dataset.label ?? th.textContent.trim());
    for (const row of table.tBodies[0].rows) {
      [...row.cells].forEach((cell, i) => { cell.dataset.label = names[i] ?? ""; });
    }
  };
  new MutationObserver(label).observe(table.tBodies[0], { childList: true });
  label();
}

// A table wider than the page scrolls inside its .table-wrap, never the page: such a wrap can be
// reached and scrolled from the keyboard, named after its table; one that fits is no tab stop.
export function scrollableTables(root = document) {
  for (const wrap of root.querySelectorAll(".table-wrap")) {
    if (wrapsWatched.has(wrap)) continue; // a page that redraws its tables calls this again
    wrapsWatched.add(wrap);
    wrapWatcher.observe(wrap);
    const table = wrap.querySelector("table");
    if (table) wrapWatcher.observe(table);
    markScrollable(wrap);
  }
}

const wrapsWatched = new WeakSet();
const wrapWatcher = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const wrap = entry.target.closest(".table-wrap");
    if (wrap) markScrollable(wrap);
  }
});

function markScrollable(wrap) {
  const table = wrap.querySelector("table");
  if (wrap.scrollWidth > wrap.clientWidth + 1) {
    wrap.tabIndex = 0;
    wrap.setAttribute("role", "region");
    const name = table?.getAttribute("aria-labelledby");
    if (name) wrap.setAttribute("aria-labelledby", name);
    else wrap.setAttribute("aria-label", "Table (scrolls sideways)");
  } else {
    for (const attr of ["tabindex", "role", "aria-labelledby", "aria-label"]) wrap.removeAttribute(attr);
  }
}

// --- a confirmation step ------------------------------------------------------------------

let confirmDialog = null;

function buildConfirmDialog() {
  const dialog = el("dialog", { id: "confirm-dialog", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-message" },
    el("form", { method: "dialog" },
      el("h2", { id: "confirm-title" }),
      el("p", { id: "confirm-message" }),
      el("div", { class: "actions" },
        el("button", { type: "submit", value: "yes", id: "confirm-yes" }),
        el("button", { type: "submit", value: "no", id: "confirm-no", class: "secondary" }))));
  document.body.append(dialog);
  return dialog;
}

// Ask before something that cannot be undone: a dialog says what will happen; true once
// confirmed, false if cancelled (the cancel button or Escape).
export function confirmStep({ title, message, confirm, cancel = "Cancel", danger = false }) {
  confirmDialog ??= buildConfirmDialog();
  const dialog = confirmDialog;
  const yes = dialog.querySelector("#confirm-yes");
  const no = dialog.querySelector("#confirm-no");
  dialog.querySelector("#confirm-title").textContent = title;
  dialog.querySelector("#confirm-message").textContent = message;
  yes.textContent = confirm;
  yes.className = danger ? "danger" : "";
  no.textContent = cancel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
    (danger ? no : yes).focus(); // a step that loses something does not go ahead on Enter
  });
}
