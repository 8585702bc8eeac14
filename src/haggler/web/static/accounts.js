// The operator's accounts page: create accounts, issue and revoke tokens, disable and enable.
import { api, clearErrors, confirmStep, el, scrollableTables, showError, stackTable, timeEl } from "./common.js";

const $ = (id) => document.getElementById(id);
const form = $("account-form");
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$/;
const ROLES = { purchaser: "Purchaser", seller: "Seller", operator: "Operator" };

function showPurchaserField() {
  $("purchaser-field").hidden = $("role").value !== "seller";
}
$("role").addEventListener("change", showPurchaserField);

// Checked here first, so a typo gets its message next to the field without a round trip.
function problems() {
  const found = [];
  const name = $("name").value.trim();
  if (!name) found.push(["name", "Enter a name."]);
  else if (!NAME.test(name)) found.push(["name", "Use letters, digits, '.', '_' and '-' (at most 50)."]);
  const password = $("password").value;
  if (password && password.length < 10) found.push(["password", "Use at least 10 characters, or none."]);
  return found;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  const found = problems();
  if (found.length) {
    for (const [field, message] of found) {
      $(field).setAttribute("aria-invalid", "true");
      $(`${field}-error`).textContent = message;
    }
    $(found[0][0]).focus();
    return;
  }
  const role = $("role").value;
  const body = { name: $("name").value.trim(), role };
  if ($("password").value) body.password = $("password").value;
  if (role === "seller" && $("purchaser").value) body.purchaser = $("purchaser").value;
  $("create").disabled = true;
  try {
    await api("POST", "/api/accounts", { body });
    form.reset();
    showPurchaserField();
    await refresh();
  } catch (error) {
    showError(form, error, { fallbackField: "name" });
  } finally {
    $("create").disabled = false;
  }
});

// `ask`: a confirmation ({title, message, confirm}) before an action that locks someone out.
function actionButton(text, onClick, cls = "secondary", ask = null) {
  const button = el("button", { type: "button", class: `${cls} small` }, text);
  button.addEventListener("click", async () => {
    if (ask && !(await confirmStep({ ...ask, danger: true }))) return;
    button.disabled = true;
    $("accounts-error").textContent = "";
    try {
      await onClick();
      await refresh();
    } catch (error) {
      $("accounts-error").textContent = error.message;
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function renderAccounts(accounts, me) {
  const body = $("accounts").tBodies[0];
  body.replaceChildren(
    ...accounts.map((a) =>
      el(
        "tr",
        {},
        el("td", { class: "title" }, a.name),
        el("td", {}, ROLES[a.role], a.purchaser ? el("span", { class: "muted" }, ` → ${a.purchaser}`) : null),
        el("td", {}, a.can_sign_in ? "password or token" : "tokens only"),
        el("td", {}, a.disabled ? "disabled" : "active"),
        el(
          "td",
          {},
          el(
          "div",
          { class: "row-actions" },
          actionButton("New token", async () => {
            const issued = await api("POST", `/api/accounts/${encodeURIComponent(a.name)}/tokens`, { body: { label: "issued on the accounts page" } });
            $("new-token-value").textContent = issued.token;
            $("new-token").hidden = false;
          }),
          a.name === me
            ? null
            : actionButton(a.disabled ? "Enable" : "Disable", () =>
                api("PUT", `/api/accounts/${encodeURIComponent(a.name)}/disabled`, { body: { disabled: !a.disabled } }),
                a.disabled ? "secondary" : "danger",
                a.disabled ? null : {
                  title: `Disable ${a.name}?`,
                  message: `${a.name} can no longer sign in, and its tokens stop working until an operator enables it again.`,
                  confirm: "Disable",
                }),
          ),
        ),
      ),
    ),
  );
  const purchasers = accounts.filter((a) => a.role === "purchaser" && !a.disabled);
  $("purchaser").replaceChildren(
    el("option", { value: "" }, "— none yet —"),
    ...purchasers.map((a) => el("option", { value: a.name }, a.name)),
  );
}

function renderTokens(tokens) {
  const body = $("tokens").tBodies[0];
  body.replaceChildren(
    ...tokens.map((t) =>
      el(
        "tr",
        {},
        el("td", { class: "num" }, t.id),
        el("td", {}, t.account),
        el("td", {}, t.label),
        el("td", {}, timeEl(t.created_at)),
        el("td", {}, t.revoked ? "revoked" : "active"),
        el("td", {}, t.revoked ? null : actionButton("Revoke", () => api("DELETE", `/api/tokens/${t.id}`), "danger", {
          title: `Revoke token ${t.id}?`,
          message: `Token ${t.id} of ${t.account} ("${t.label}") stops working at once, for good; a program that uses it needs a new one.`,
          confirm: "Revoke",
        })),
      ),
    ),
  );
}

async function refresh() {
  const [accounts, tokens, me] = await Promise.all([api("GET", "/api/accounts"), api("GET", "/api/tokens"), api("GET", "/api/me")]);
  renderAccounts(accounts, me.name);
  renderTokens(tokens);
}

stackTable($("accounts"));
stackTable($("tokens"));
scrollableTables();
showPurchaserField();
refresh().catch((error) => {
  $("accounts-error").textContent = error.message;
});
