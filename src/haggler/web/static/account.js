// The signed-in account in the header: signing out ends the session on the server too.
import { api } from "./common.js";

document.getElementById("sign-out")?.addEventListener("click", async () => {
  try {
    await api("DELETE", "/api/session");
  } finally {
    location.assign("/login");
  }
});
