// One negotiation as the purchaser sees it: terms, result, chart and transcript.
import {
  ApiError, OUTCOMES, api, drawNegotiation, el, label, money, resultCard, scrollableTables, showError, subscribe, when,
  withAcceptedPrices,
} from "./common.js";

const root = document.getElementById("negotiation");
const id = root.dataset.id;
const terms = document.getElementById("terms");
const result = document.getElementById("result");
const tbody = document.querySelector("#transcript tbody");

function moveText(turn) {
  if (turn.move === "counter") return turn.party === "seller" ? "asks" : "offers";
  return turn.move === "accept" ? "accepts" : "walks away";
}

function facts(n) {
  const sum = (value) => money(value, n.currency);
  const rows = [
    ["Product", `${n.product.name} (${n.product.category})`],
    ["Quantity", n.quantity],
    ["List price", `${sum(n.product.list_price)} per unit`],
    ["Your limit", `${sum(n.max_unit_price)} per unit`],
    ["Rounds allowed", n.max_rounds],
    ["Seller", n.seller_kind === "external" ? "a person or program" : label(n.seller_strategy)],
    ["Model version", n.model_version],
    ["Status", n.result ? OUTCOMES[n.result.outcome] : "In progress"],
    ["Reward", n.reward === null ? "—" : n.reward.toFixed(3)],
    ["Started", when(n.created_at, { seconds: true })],
    ["Finished", when(n.finished_at, { seconds: true })],
  ];
  terms.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
}

// The page was found, but the API no longer finds the negotiation (or never did): say so in
// place of the empty terms, chart and transcript.
function notFound() {
  root.replaceChildren(el("div", { class: "card narrow", role: "alert" },
    el("p", {}, `There is no negotiation ${id} among yours: it may never have existed, or it belongs to another purchaser.`),
    el("p", {}, el("a", { href: "/negotiations" }, "See your negotiations"))));
}

async function load() {
  let n;
  try {
    n = await api("GET", `/api/negotiations/${id}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) notFound();
    else showError(root, error);
    return null;
  }
  facts(n);
  tbody.replaceChildren(...withAcceptedPrices(n.transcript).map((t) =>
    el("tr", {}, el("td", { class: "num" }, t.round), el("td", {}, t.party === "seller" ? "Seller" : "Agent"),
      el("td", {}, moveText(t)), el("td", { class: "num" }, t.price === null ? "—" : money(t.price, n.currency)))));
  await drawNegotiation(document.getElementById("chart"), n.transcript, {
    listPrice: n.product.list_price, limit: n.max_unit_price, maxRounds: n.max_rounds, dealPrice: n.result?.deal_price,
    currency: n.currency,
  });
  if (n.result) {
    const r = n.result;
    resultCard(result, {
      outcome: r.outcome, dealPrice: r.deal_price, listPrice: n.product.list_price, quantity: n.quantity,
      rounds: r.rounds, modelVersion: n.model_version, savingsPerUnit: r.savings_per_unit,
      savingsTotal: r.savings_total, savingsPct: r.savings_pct, currency: n.currency,
    });
  }
  return n;
}

scrollableTables();
const first = await load();
if (first && first.status === "open") {  // a person or program is still playing: follow it live
  let seen = first.transcript.length;
  const source = subscribe((state) => {
    if (state.negotiation?.turns === seen) return;
    seen = state.negotiation?.turns;
    load().then((n) => { if (n?.status === "finished") source.close(); });
  }, () => {}, { negotiation: id });
}
