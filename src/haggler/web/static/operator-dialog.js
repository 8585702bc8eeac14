// The operator's confirmation on the dashboard: a dialog that asks for the operator token (and,
// for decisions, a reason) before an action runs, and remembers the token of the last action
// that succeeded on this page.
import { ApiError, clearErrors, showError } from "./common.js";

const $ = (id) => document.getElementById(id);
const dialog = $("operator-dialog");
const dialogForm = $("operator-form");
const tokenInput = $("operator-token");

let knownToken = null; // the operator token of the last action that succeeded on this page
let pending = null;

export const isAuthError = (error) => error instanceof ApiError && (error.status === 401 || error.status === 403);

export const rememberedToken = () => knownToken;

export function forgetToken() {
  knownToken = null;
}

// `reason`: also ask why (kept with the decision); `form`: where errors other than the token's
// are shown (the dialog closes); `busy`: the confirm button's text while the action runs.
export function askOperator({ title, message, confirm, action, reason = false, form = null, busy = null }) {
  clearErrors(dialogForm);
  $("dialog-title").textContent = title;
  $("dialog-message").textContent = message;
  $("dialog-confirm").textContent = confirm;
  $("reason-field").hidden = !reason;
  $("reason").value = "";
  pending = { action, reason, form, confirm, busy };
  dialog.showModal();
  (reason ? $("reason") : tokenInput).focus();
}

dialogForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(dialogForm);
  const { action, reason, form, confirm, busy } = pending;
  const why = $("reason").value.trim();
  if (reason && !why) {
    showError(dialogForm, new Error("Say why: the reason is kept with the decision."), { fallbackField: "reason" });
    return;
  }
  const token = tokenInput.value.trim();
  if (!token) {
    showError(dialogForm, new Error("Enter the operator token."), { fallbackField: "operator-token" });
    return;
  }
  const button = $("dialog-confirm");
  button.disabled = true;
  if (busy) button.textContent = busy;
  try {
    await action(token, { reason: why });
    knownToken = token;
    dialog.close();
  } catch (error) {
    if (isAuthError(error)) showError(dialogForm, error, { fallbackField: "operator-token" });
    else if (form) {
      knownToken = token;
      dialog.close();
      showError(form, error);
    } else showError(dialogForm, error);
  } finally {
    button.disabled = false;
    button.textContent = confirm;
  }
});
$("dialog-cancel").addEventListener("click", () => dialog.close());
