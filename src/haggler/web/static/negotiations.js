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

let offset = 0;

function filtersFromAddress() {
  const params = new URLSearchParams(location.search);
  for (const name of FIELDS) form.elements[name].value = params.get(name) ?? "";
  offset = Math.max(0, Number(params.get("offset")) || 0);
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
  const params = query();
  params.set("limit", PAGE);
  params.set("offset", offset);
  try {
    const page = await api("GET", `/api/negotiations?${params}`);
    clearErrors(form);
    tbody.replaceChildren(...page.items.map(row));
    total.textContent = `(${page.total})`;
    empty.hidden = page.items.length > 0;
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE >= page.total;
    pageNote.textContent = page.total ? `${offset + 1}–${offset + page.items.length} of ${page.total}` : "";
  } catch (error) {
    showError(form, error);
  }
}

function go(newOffset) {
  offset = newOffset;
  const params = query();
  if (offset) params.set("offset", offset);
  history.replaceState(null, "", params.size ? `?${params}` : location.pathname);
  load();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (checkForm(form, RULES)) go(0);
});
clearWhenRight(form, RULES);
stackTable(document.getElementById("negotiations"));
scrollableTables();
form.addEventListener("reset", () => setTimeout(() => go(0)));
prev.addEventListener("click", () => go(Math.max(0, offset - PAGE)));
next.addEventListener("click", () => go(offset + PAGE));

try {
  await loadProducts(form.elements.product_id, { keep: new URLSearchParams(location.search).get("product_id") ?? "" });
} catch (error) {
  showError(form, error);
}
filtersFromAddress();
let lastSeen = null;
subscribe((state) => {
  const seen = `${state.negotiations}/${state.finished}`;
  if (lastSeen !== null && seen !== lastSeen && offset === 0) load();
  lastSeen = seen;
});
await load();
