// Play the seller against the agent. The page only ever holds the seller's view of the
// negotiation (the server draws the buyer's limit and never sends it here).
import {
  api, checkForm, clearErrors, confirmStep, drawNegotiation, el, loadProducts, money, priceRule, clearWhenRight,
  required, resultCard, showError, turnText, wholeRule, withAcceptedPrices,
} from "./common.js";

const openForm = document.getElementById("open-form");
const moveForm = document.getElementById("move-form");
const select = document.getElementById("product_id");
const listPriceNote = document.getElementById("list-price");
const chart = document.getElementById("chart");
const turnsList = document.getElementById("turns");
const result = document.getElementById("result");
const offerNote = document.getElementById("agent-offer");
const priceInput = document.getElementById("price");
const acceptButton = document.getElementById("accept");
const walkButton = document.getElementById("walk");
const again = document.getElementById("again");
const NAMES = { asks: "Your asks", offers: "Agent's offers" };
const OPEN_RULES = { quantity: wholeRule({ min: 1, max: 1_000_000 }), asking_price: priceRule() };
const MOVE_RULES = { price: required("Enter your counter-offer, or accept or walk away.", priceRule()) };

let products = new Map();
let current = null; // { token, view }

function showListPrice() {
  const product = products.get(select.value);
  listPriceNote.textContent = product ? `List price ${money(product.list_price)} per unit (${product.category})` : "";
}

function lastOffer(view) {
  const offers = view.transcript.filter((t) => t.party === "buyer" && t.move === "counter");
  return offers.length ? offers[offers.length - 1].price : null;
}

function heading(view) {
  if (view.outcome === "deal") return `Deal at ${money(view.deal_price, view.currency)} per unit`;
  const last = view.transcript[view.transcript.length - 1];
  if (view.outcome === "seller_walked") return "You walked away: no deal";
  if (view.outcome === "buyer_walked") return "The agent walked away: no deal";
  return last ? "No deal: the agent's rounds ran out" : "No deal";
}

const units = (n) => `${n} ${n === 1 ? "unit" : "units"}`;

function render(view) {
  const sum = (value) => money(value, view.currency);
  document.getElementById("negotiation-id").textContent = `#${view.id}`;
  // The product stays in view for the whole negotiation, with the list price it is about: above
  // the moves (all a phone shows at first) and beside the chart.
  const about = `${view.quantity} × ${view.product.name}, list price ${sum(view.product.list_price)} per unit`;
  document.getElementById("about").textContent = about;
  document.getElementById("move-about").textContent = about;
  turnsList.replaceChildren(...withAcceptedPrices(view.transcript).map((t) =>
    el("li", { class: t.party }, turnText(t, { seller: "You", buyer: "Agent", currency: view.currency }))));
  drawNegotiation(chart, view.transcript, {
    listPrice: view.product.list_price, maxRounds: view.max_rounds, names: NAMES, dealPrice: view.deal_price,
    currency: view.currency,
  });
  const finished = view.status === "finished";
  moveForm.hidden = finished;
  openForm.hidden = !finished;
  again.hidden = !finished;
  if (finished) {
    const rounds = view.transcript.filter((t) => t.party === "buyer").length;
    resultCard(result, {
      outcome: view.outcome, dealPrice: view.deal_price, listPrice: view.product.list_price,
      quantity: view.quantity, rounds, perspective: "seller", heading: heading(view), currency: view.currency,
    });
    openForm.hidden = true;
    again.focus();
    return;
  }
  result.hidden = true;
  const offer = lastOffer(view);
  const left = view.rounds_left === 1 ? "1 move left" : `${view.rounds_left} moves left`;
  const round = `Round ${view.round} of ${view.max_rounds} (the agent has ${left}).`;
  offerNote.textContent = offer ? `${round} The agent offers ${sum(offer)} per unit.` : round;
  acceptButton.textContent = offer ? `Accept ${sum(offer)}` : "Accept offer";
  acceptButton.disabled = !offer;
  priceInput.value = "";
  priceInput.focus();
}

openForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const values = checkForm(openForm, OPEN_RULES);
  if (!values) return;
  try {
    const started = await api("POST", "/api/sell", {
      body: { product_id: select.value, quantity: values.quantity, asking_price: values.asking_price },
    });
    current = { token: started.seller_token, view: started.negotiation };
    render(current.view);
  } catch (error) {
    showError(openForm, error, { fallbackField: error.status === 404 ? "product_id" : null });
  }
});

async function move(body, fallbackField = null) {
  clearErrors(moveForm);
  for (const button of moveForm.querySelectorAll("button")) button.disabled = true;
  try {
    current.view = await api("POST", `/api/negotiations/${current.view.id}/moves`, { body, token: current.token });
    render(current.view);
  } catch (error) {
    showError(moveForm, error, { fallbackField });
  } finally {
    for (const button of moveForm.querySelectorAll("button")) button.disabled = false;
    acceptButton.disabled = current.view.status !== "open" || !lastOffer(current.view);
  }
}

moveForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const values = checkForm(moveForm, MOVE_RULES);
  if (values) move({ move: "counter", price: values.price }, "price");
});

// Accepting and walking away end the negotiation: each is confirmed first, in words.
acceptButton.addEventListener("click", async () => {
  const { view } = current;
  const offer = lastOffer(view);
  const yes = await confirmStep({
    title: "Accept the agent's offer?",
    message: `Accept ${money(offer, view.currency)} per unit for ${units(view.quantity)}? That is `
      + `${money(Number(offer) * view.quantity, view.currency)} in total for ${view.product.name}; `
      + "the negotiation ends with this deal.",
    confirm: `Accept ${money(offer, view.currency)}`,
    cancel: "Keep negotiating",
  });
  if (yes) move({ move: "accept" });
});
walkButton.addEventListener("click", async () => {
  const { view } = current;
  const offer = lastOffer(view);
  const yes = await confirmStep({
    title: "Walk away?",
    message: `Walk away from negotiation #${view.id}? It ends with no deal`
      + (offer ? `, and the agent's offer of ${money(offer, view.currency)} per unit is lost.` : "."),
    confirm: "Walk away",
    cancel: "Keep negotiating",
    danger: true,
  });
  if (yes) move({ move: "walk_away" });
});
again.addEventListener("click", () => {
  current = null;
  result.hidden = true;
  again.hidden = true;
  openForm.hidden = false;
  turnsList.replaceChildren();
  document.getElementById("negotiation-id").textContent = "";
  document.getElementById("about").textContent = "";
  drawNegotiation(chart, [], { listPrice: products.get(select.value)?.list_price ?? 0, maxRounds: 10, names: NAMES });
  openForm.elements.asking_price.focus();
});
select.addEventListener("change", showListPrice);
clearWhenRight(openForm, OPEN_RULES);
clearWhenRight(moveForm, MOVE_RULES);

try {
  products = await loadProducts(select);
  showListPrice();
  drawNegotiation(chart, [], { listPrice: products.get(select.value)?.list_price ?? 0, maxRounds: 10, names: NAMES });
} catch (error) {
  showError(openForm, error);
}
