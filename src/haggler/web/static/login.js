// The sign-in form: the API sets the session cookie; then on to the page that asked for it.
import { api, showError } from "./common.js";

const form = document.getElementById("sign-in");

// Only a path of this site (never "//elsewhere"): the page asked for before signing in.
function nextPage() {
  const next = new URLSearchParams(location.search).get("next") ?? "/";
  return next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = form.elements.name.value.trim();
  const password = form.elements.password.value;
  if (!name || !password) {
    showError(form, new Error(name ? "Enter your password." : "Enter your name."), {
      fallbackField: name ? "password" : "name",
    });
    return;
  }
  const button = document.getElementById("sign-in-button");
  button.disabled = true;
  try {
    await api("POST", "/api/session", { body: { name, password }, signingIn: true });
    location.assign(nextPage());
  } catch (error) {
    showError(form, error, { fallbackField: "password" });
  } finally {
    button.disabled = false;
  }
});
