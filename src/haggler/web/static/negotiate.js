// The purchaser's page: start a negotiation with a simulated seller and watch it round by round.
import {
  api, checkForm, drawNegotiation, el, loadProducts, money, optional, parsePrice, priceRule, clearWhenRight,
  resultCard, showError, sleep, turnText, wholeRule, withAcceptedPrices,
} from "./common.js";

const form = document.getElementById("negotiate-form");
const select = document.getElementById("product_id");
const limitInput = document.getElementById("max_unit_price");
const listPriceNote = document.getElementById("list-price");
const chart = document.getElementById("chart");
const turnsList = document.getElementById("turns");
const result = document.getElementById("result");
const startButton = document.getElementById("start");
const STEP_MS = 450;

// The limits the API sets (api/schemas.py), checked here first.
const RULES = {
  quantity: wholeRule({ min: 1, max: 1_000_000 }),
  max_unit_price: priceRule(),
  max_rounds: wholeRule({ min: 1, max: 100 }),
  seed: optional(wholeRule({ min: 0 })),
};

let products = new Map();
let shown = false; // a negotiation is on the chart

function drawEmpty() {
  if (shown) return;
  const limit = parsePrice(limitInput.value).value;
  drawNegotiation(chart, [], {
    listPrice: products.get(select.value)?.list_price ?? 0,
    limit: limit === undefined ? null : Number(limit),
    maxRounds: Number(form.elements.max_rounds.value) || 10,
  });
}

function showListPrice() {
  const product = products.get(select.value);
  listPriceNote.textContent = product ? `List price ${money(product.list_price)} per unit (${product.category})` : "";
  if (product && !limitInput.dataset.touched) limitInput.value = (Number(product.list_price) * 0.9).toFixed(2);
}

// What the API is sent: the checked values, prices as plain decimals ("1,250.00" -> "1250.00").
function body(values) {
  const seller = { kind: "simulated", strategy: form.elements.strategy.value };
  if (values.seed !== undefined) seller.seed = values.seed;
  return {
    product_id: select.value,
    quantity: values.quantity,
    max_unit_price: values.max_unit_price,
    max_rounds: values.max_rounds,
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
  const currency = negotiation.currency;
  const turns = withAcceptedPrices(negotiation.transcript);
  turnsList.replaceChildren();
  for (let i = 1; i <= turns.length; i++) {
    const turn = turns[i - 1];
    turnsList.append(el("li", { class: turn.party }, turnText(turn, { currency })));
    await drawNegotiation(chart, negotiation.transcript.slice(0, i), { ...options, currency });
    await sleep(STEP_MS);
  }
  const r = negotiation.result;
  resultCard(result, {
    outcome: r.outcome, dealPrice: r.deal_price, listPrice: negotiation.product.list_price,
    quantity: negotiation.quantity, rounds: r.rounds, modelVersion: negotiation.model_version,
    savingsPerUnit: r.savings_per_unit, savingsTotal: r.savings_total, savingsPct: r.savings_pct, currency,
  });
  result.append(el("p", {}, el("a", { href: `/negotiations/${negotiation.id}` }, `Negotiation #${negotiation.id}: transcript`)));
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const values = checkForm(form, RULES);
  if (!values) return;
  startButton.disabled = true;
  result.hidden = true;
  try {
    const negotiation = await api("POST", "/api/negotiations", { body: body(values) });
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

clearWhenRight(form, RULES);
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
