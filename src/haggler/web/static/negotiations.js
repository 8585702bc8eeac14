// Past negotiations, newest first, with filters (kept in the address) and live refresh.
import {
  OUTCOMES, api, checkForm, clearErrors, el, label, loadProducts, money, optional, pct, clearWhenRight,
  scrollableTables, showError, stackTable, subscribe, timeEl, wholeRule,
} from "./common.js";

const form = document.getElementById("filters");
const tbody = document.querySelector("#negotiations tbody");
const total = document.getElementById("total");
const empty = document.getElementById("empty");
const prev = document.getElementById("prev");
const next = document.getElementById("next");
const pageNote = document.getElementById("page");
const FIELDS = ["product_id", "outcome", "seller", "model_version"];
const PAGE = 25;
const RULES = { model_version: optional(wholeRule({ min: 0 })) };

// Pages by cursor: a page is "older than negotiation #before" (null: the newest), which costs the
// same however deep it is, where an offset made the store read every row it skipped. `newer`
// holds the cursors of the pages before this one, for "Newer"; `first` is the position of this
// page's first row, for "26–50 of 1,234" (null: not known, for an address without it). The
// filters the list shows are `applied`: those of the address, or the form's when submitted;
// paging keeps them whatever has been typed into the form since.
const MAX_ID = 2 ** 31 - 1;
const count = new Intl.NumberFormat("en-US");
let before = null;
let first = 1;
let newer = [];
let nextCursor = null;
let applied = new URLSearchParams();
let loads = 0;

function idParam(params, name) {
  const value = Number(params.get(name));
  return Number.isSafeInteger(value) && value > 0 && value <= MAX_ID ? value : null;
}

function filtersFromAddress() {
  const params = new URLSearchParams(location.search);
  for (const name of FIELDS) form.elements[name].value = params.get(name) ?? "";
  applied = query();
  before = idParam(params, "before");
  first = before === null ? 1 : idParam(params, "from");
  newer = [];
}

function query() {
  const params = new URLSearchParams();
  for (const name of FIELDS) {
    const value = form.elements[name].value.trim();
    if (value !== "") params.set(name, value);
  }
  return params;
}

// Rounds and model version are "minor": a narrow page leaves them to the negotiation's own page.
function row(n) {
  const r = n.result;
  return el("tr", {},
    el("td", { class: "title" }, el("a", { href: `/negotiations/${n.id}`, "aria-label": `Negotiation ${n.id}` }, `#${n.id}`)),
    el("td", {}, timeEl(n.created_at)),
    el("td", { class: "wrap" }, `${n.product.name}${n.quantity === 1 ? "" : ` × ${n.quantity}`}`),
    el("td", {}, r ? OUTCOMES[r.outcome] : "In progress"),
    el("td", { class: "num" }, r?.deal_price ? money(r.deal_price, n.currency) : "—"),
    el("td", { class: "num" }, r?.deal_price ? pct(r.savings_pct) : "—"),
    el("td", {}, n.seller_kind === "external" ? "person or program" : label(n.seller_strategy)),
    el("td", { class: "num minor" }, r ? r.rounds : "—"),
    el("td", { class: "num minor" }, n.model_version),
  );
}

async function load() {
  const params = new URLSearchParams(applied);
  params.set("limit", PAGE);
  if (before !== null) params.set("before", before);
  // Until this page is here, no paging from the one before; and an answer that a later load
  // (a click, a live refresh) has overtaken is dropped, so rows and labels always match.
  const mine = ++loads;
  prev.disabled = next.disabled = true;
  nextCursor = null;
  try {
    const page = await api("GET", `/api/negotiations?${params}`);
    if (mine !== loads) return;
    clearErrors(form);
    tbody.replaceChildren(...page.items.map(row));
    const matching = `${count.format(page.total)}${page.total_exact ? "" : "+"}`;
    total.textContent = `(${matching})`;
    empty.textContent = before === null ? "No negotiations match." : "No older negotiations.";
    empty.hidden = page.items.length > 0;
    prev.disabled = before === null;
    next.disabled = page.next_before === null;
    nextCursor = page.next_before;
    const last = first === null ? null : first + page.items.length - 1;
    if (!page.items.length) pageNote.textContent = "";
    else if (last === null || (page.total_exact && last > page.total)) {
      pageNote.textContent = `older than #${before}, of ${matching}`;
    } else pageNote.textContent = `${count.format(first)}–${count.format(last)} of ${matching}`;
  } catch (error) {
    if (mine !== loads) return;
    prev.disabled = before === null;
    showError(form, error);
  }
}

function go(cursor, position) {
  before = cursor;
  first = position;
  const params = new URLSearchParams(applied);
  if (before !== null) {
    params.set("before", before);
    if (first !== null) params.set("from", first);
  }
  history.replaceState(null, "", params.size ? `?${params}` : location.pathname);
  load();
}

function newest() {
  applied = query();
  newer = [];
  go(null, 1);
}

function older() {
  if (nextCursor === null) return;
  newer.push({ before, first });
  go(nextCursor, first === null ? null : first + PAGE);
}

function newerPage() {
  // A page opened from its address has no newer cursors here: back to the newest page then.
  const page = newer.pop() ?? { before: null, first: 1 };
  go(page.before, page.first);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (checkForm(form, RULES)) newest();
});
clearWhenRight(form, RULES);
stackTable(document.getElementById("negotiations"));
scrollableTables();
form.addEventListener("reset", () => setTimeout(newest));
prev.addEventListener("click", newerPage);
next.addEventListener("click", older);

try {
  await loadProducts(form.elements.product_id, { keep: new URLSearchParams(location.search).get("product_id") ?? "" });
} catch (error) {
  showError(form, error);
}
filtersFromAddress();
let lastSeen = null;
subscribe((state) => {
  const seen = `${state.negotiations}/${state.finished}`;
  if (lastSeen !== null && seen !== lastSeen && before === null) load();
  lastSeen = seen;
});
await load();
