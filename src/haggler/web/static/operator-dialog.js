// The operator's confirmation on the dashboard: a dialog that says what an action will do (and,
// for decisions, asks why) before it runs. The operator is signed in: the session cookie and the
// page's CSRF token authorise the action.
import { ApiError, clearErrors, showError } from "./common.js";

const $ = (id) => document.getElementById(id);
const dialog = $("operator-dialog");
const dialogForm = $("operator-form");

let pending = null;

export const isAuthError = (error) => error instanceof ApiError && (error.status === 401 || error.status === 403);

// `reason`: also ask why (kept with the decision); `form`: where errors are shown once the dialog
// closes; `busy`: the confirm button's text while the action runs.
export function askOperator({ title, message, confirm, action, reason = false, form = null, busy = null }) {
  clearErrors(dialogForm);
  $("dialog-title").textContent = title;
  $("dialog-message").textContent = message;
  $("dialog-confirm").textContent = confirm;
  $("reason-field").hidden = !reason;
  $("reason").value = "";
  pending = { action, reason, form, confirm, busy };
  dialog.showModal();
  (reason ? $("reason") : $("dialog-confirm")).focus();
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
  const button = $("dialog-confirm");
  button.disabled = true;
  if (busy) button.textContent = busy;
  try {
    await action(null, { reason: why });
    dialog.close();
  } catch (error) {
    if (form && !isAuthError(error)) {
      dialog.close();
      showError(form, error);
    } else showError(dialogForm, error);
  } finally {
    button.disabled = false;
    button.textContent = confirm;
  }
});
$("dialog-cancel").addEventListener("click", () => dialog.close());
