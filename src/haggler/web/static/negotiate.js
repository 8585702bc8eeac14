// The purchaser's page: start a negotiation with a simulated seller and watch it round by round.
import { api, clearErrors, drawNegotiation, el, loadProducts, money, resultCard, showError, sleep, turnText } from "./common.js";

const form = document.getElementById("negotiate-form");
const select = document.getElementById("product_id");
const limitInput = document.getElementById("max_unit_price");
const listPriceNote = document.getElementById("list-price");
const chart = document.getElementById("chart");
const turnsList = document.getElementById("turns");
const result = document.getElementById("result");
const startButton = document.getElementById("start");
const STEP_MS = 450;

let products = new Map();
let shown = false; // a negotiation is on the chart

function drawEmpty() {
  if (shown) return;
  const limit = Number(limitInput.value);
  drawNegotiation(chart, [], {
    listPrice: products.get(select.value)?.list_price ?? 0,
    limit: Number.isFinite(limit) && limit > 0 ? limit : null,
    maxRounds: Number(form.elements.max_rounds.value) || 10,
  });
}

function showListPrice() {
  const product = products.get(select.value);
  listPriceNote.textContent = product ? `List price ${money(product.list_price)} per unit` : "";
  if (product && !limitInput.dataset.touched) limitInput.value = (Number(product.list_price) * 0.9).toFixed(2);
}

function body() {
  const value = (name) => form.elements[name].value.trim();
  const seller = { kind: "simulated", strategy: value("strategy") };
  if (value("seed") !== "") seller.seed = value("seed");
  return {
    product_id: value("product_id"),
    quantity: value("quantity"),
    max_unit_price: value("max_unit_price"),
    max_rounds: value("max_rounds"),
    seller,
  };
}

async function replay(negotiation) {
  const options = {
    listPrice: negotiation.product.list_price,
    limit: negotiation.max_unit_price,
    maxRounds: negotiation.max_rounds,
    dealPrice: negotiation.result?.deal_price,
  };
  turnsList.replaceChildren();
  for (let i = 1; i <= negotiation.transcript.length; i++) {
    const turn = negotiation.transcript[i - 1];
    turnsList.append(el("li", { class: turn.party }, turnText(turn)));
    turnsList.scrollTop = turnsList.scrollHeight;
    await drawNegotiation(chart, negotiation.transcript.slice(0, i), options);
    await sleep(STEP_MS);
  }
  const r = negotiation.result;
  resultCard(result, {
    outcome: r.outcome, dealPrice: r.deal_price, listPrice: negotiation.product.list_price,
    quantity: negotiation.quantity, rounds: r.rounds, modelVersion: negotiation.model_version,
    savingsPerUnit: r.savings_per_unit, savingsTotal: r.savings_total, savingsPct: r.savings_pct,
  });
  result.append(el("p", {}, el("a", { href: `/negotiations/${negotiation.id}` }, `Negotiation #${negotiation.id}: transcript`)));
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  startButton.disabled = true;
  result.hidden = true;
  try {
    const negotiation = await api("POST", "/api/negotiations", { body: body() });
    shown = true;
    const live = document.getElementById("live-title");
    if (live.getBoundingClientRect().top > window.innerHeight / 2) live.scrollIntoView({ behavior: "smooth" });
    await replay(negotiation);
  } catch (error) {
    showError(form, error, {
      fallbackField: error.status === 404 ? "product_id" : null,
      aliases: { seller: "strategy" },
    });
  } finally {
    startButton.disabled = false;
  }
});

limitInput.addEventListener("input", () => {
  limitInput.dataset.touched = "1";
  drawEmpty();
});
select.addEventListener("change", () => {
  showListPrice();
  drawEmpty();
});

try {
  products = await loadProducts(select);
  showListPrice();
  drawEmpty();
} catch (error) {
  showError(form, error);
}
