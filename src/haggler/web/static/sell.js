// Play the seller against the agent. The page only ever holds the seller's view of the
// negotiation (the server draws the buyer's limit and never sends it here).
import { api, clearErrors, drawNegotiation, el, loadProducts, money, resultCard, showError, turnText } from "./common.js";

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
const again = document.getElementById("again");
const NAMES = { asks: "Your asks", offers: "Agent's offers" };
const WHO = { seller: "You", buyer: "Agent" };

let products = new Map();
let current = null; // { token, view }

function showListPrice() {
  const product = products.get(select.value);
  listPriceNote.textContent = product ? `List price ${money(product.list_price)} per unit` : "";
}

function lastOffer(view) {
  const offers = view.transcript.filter((t) => t.party === "buyer" && t.move === "counter");
  return offers.length ? offers[offers.length - 1].price : null;
}

function heading(view) {
  if (view.outcome === "deal") return `Deal at ${money(view.deal_price)}`;
  const last = view.transcript[view.transcript.length - 1];
  if (view.outcome === "seller_walked") return "You walked away: no deal";
  if (view.outcome === "buyer_walked") return "The agent walked away: no deal";
  return last ? "No deal: the agent's rounds ran out" : "No deal";
}

function render(view) {
  document.getElementById("negotiation-id").textContent = `#${view.id}`;
  // The product stays in view for the whole negotiation, with the list price it is about.
  document.getElementById("about").textContent =
    `${view.quantity} × ${view.product.name}, list price ${money(view.product.list_price)} ${view.currency} per unit`;
  turnsList.replaceChildren(...view.transcript.map((t) => el("li", { class: t.party }, turnText(t, WHO))));
  turnsList.scrollTop = turnsList.scrollHeight;
  drawNegotiation(chart, view.transcript, { listPrice: view.product.list_price, maxRounds: null, names: NAMES, dealPrice: view.deal_price });
  const finished = view.status === "finished";
  moveForm.hidden = finished;
  openForm.hidden = !finished;
  again.hidden = !finished;
  if (finished) {
    const rounds = view.transcript.filter((t) => t.party === "buyer").length;
    resultCard(result, {
      outcome: view.outcome, dealPrice: view.deal_price, listPrice: view.product.list_price,
      quantity: view.quantity, rounds, perspective: "seller", heading: heading(view),
    });
    openForm.hidden = true;
    again.focus();
    return;
  }
  result.hidden = true;
  const offer = lastOffer(view);
  const left = view.rounds_left === 1 ? "1 move left" : `${view.rounds_left} moves left`;
  const round = `Round ${view.round} of ${view.max_rounds} (the agent has ${left}).`;
  offerNote.textContent = offer ? `${round} The agent offers ${money(offer)} ${view.currency} per unit.` : round;
  acceptButton.textContent = offer ? `Accept ${money(offer)}` : "Accept offer";
  acceptButton.disabled = !offer;
  priceInput.value = "";
  priceInput.focus();
}

openForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(openForm);
  const value = (name) => openForm.elements[name].value.trim();
  try {
    const started = await api("POST", "/api/sell", {
      body: { product_id: value("product_id"), quantity: value("quantity"), asking_price: value("asking_price") },
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
  const price = priceInput.value.trim();
  if (price === "") {
    showError(moveForm, new Error("Enter your counter-offer, or accept or walk away."), { fallbackField: "price" });
    return;
  }
  move({ move: "counter", price }, "price");
});
acceptButton.addEventListener("click", () => move({ move: "accept" }));
document.getElementById("walk").addEventListener("click", () => move({ move: "walk_away" }));
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

try {
  products = await loadProducts(select);
  showListPrice();
  drawNegotiation(chart, [], { listPrice: products.get(select.value)?.list_price ?? 0, maxRounds: 10, names: NAMES });
} catch (error) {
  showError(openForm, error);
}
