// Organisation page: role changes, invitations and API keys (secrets shown once).
"use strict";

(() => {
  const { api, toast, errorMessage, formBody } = Cogumi;

  function showOnce(form, selector, value) {
    const once = document.querySelector(selector);
    const input = once.querySelector("input[readonly]");
    input.value = value;
    once.hidden = false;
    input.focus();
    input.select();
    form.reset();
  }

  async function submitOnce(form, path, onDone) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const box = form.querySelector("[data-form-error]");
      box.hidden = true;
      const result = await api("POST", path, formBody(form));
      if (!result.ok) { box.textContent = errorMessage(result); box.hidden = false; return; }
      onDone(result.data);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const select of document.querySelectorAll("[data-member-role]")) {
      select.addEventListener("change", async () => {
        const result = await api("PATCH", select.dataset.memberRole, { role: select.value });
        if (result.ok) toast("Role changed to " + select.value, "ok");
        else { toast(errorMessage(result), "error"); window.setTimeout(() => window.location.reload(), 1500); }
      });
    }
    const invite = document.querySelector("form[data-invite]");
    if (invite) submitOnce(invite, "/api/invitations", (data) => {
      if (data.invite_url) showOnce(invite, "[data-invite-once]", data.invite_url);
      else { toast("Invitation mailed to " + data.email, "ok"); window.setTimeout(() => window.location.reload(), 800); }
    });
    const key = document.querySelector("form[data-create-key]");
    if (key) submitOnce(key, "/api/api-keys", (data) => showOnce(key, "[data-key-once]", data.key));
  });
})();
