// Project pages: connection card polling, one-time token and canary display,
// endpoint validation, prod override confirmations, adapter fields.
"use strict";

(() => {
  const { api, el, toast, errorMessage } = Cogumi;

  function ago(iso) {
    if (!iso) return "never";
    const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 10) return "just now";
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    return Math.floor(seconds / 86400) + " d ago";
  }

  function pollConnection(card) {
    const badge = card.querySelector("[data-conn-badge]");
    const set = (name, text) => { const dd = card.querySelector(`[data-conn="${name}"]`); if (dd) dd.textContent = text; };
    async function tick() {
      const result = await api("GET", card.dataset.connection);
      if (result.ok) {
        const c = result.data;
        badge.textContent = c.connected ? "connected" : "waiting for a heartbeat";
        badge.className = "conn " + (c.connected ? "conn-on" : "conn-off");
        set("last_heartbeat_at", ago(c.last_heartbeat_at));
        set("last_event_at", ago(c.last_event_at));
        set("events_last_minute", String(c.events_last_minute));
        set("sidecars_live", String(c.sidecars_live));
        set("sidecar_version", c.sidecar_version || "—");
      }
      setTimeout(tick, 2000);
    }
    tick();
  }

  function tokenForm(form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = form.querySelector("[name=name]").value || "sidecar";
      const result = await api("POST", form.dataset.createToken, { name });
      if (!result.ok) { toast(errorMessage(result), "error"); return; }
      const once = form.parentElement.querySelector("[data-token-once]");
      const input = once.querySelector("input[readonly]");
      input.value = result.data.token;
      once.hidden = false;
      form.hidden = true;
      input.focus();
      input.select();
    });
  }

  function savedGate(box) {
    const next = document.querySelector("[data-gated]");
    box.addEventListener("change", () => {
      if (!next) return;
      if (box.checked) next.removeAttribute("aria-disabled");
      else next.setAttribute("aria-disabled", "true");
    });
  }

  function gatedLinks() {
    document.addEventListener("click", (event) => {
      const link = event.target.closest("a[aria-disabled=true]");
      if (link) {
        event.preventDefault();
        toast("Create a token and confirm you saved it first.", "error");
      }
    });
  }

  function mintButton(button) {
    button.addEventListener("click", async () => {
      const result = await api("POST", button.dataset.mintCanaries, {});
      if (!result.ok) { toast(errorMessage(result), "error"); return; }
      const once = document.querySelector("[data-canary-once]");
      once.querySelector("#canary-env code").textContent = result.data.snippet.env;
      once.querySelector("#canary-json code").textContent = result.data.snippet.json;
      once.hidden = false;
      button.hidden = true;
    });
  }

  function validateForm(form) {
    const out = document.querySelector("[data-validate-result]");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const url = form.querySelector("[name=agent_test_url]").value.trim();
      const slot = form.querySelector("[data-error-for=agent_test_url]");
      slot.hidden = true;
      const project = form.dataset.project;
      const saved = await api("PATCH", `/api/projects/${project}`, { agent_test_url: url || null });
      if (!saved.ok) {
        const field = (saved.data && saved.data.fields && saved.data.fields[0]) || saved.data || {};
        slot.textContent = field.message || errorMessage(saved);
        slot.hidden = false;
        return;
      }
      out.hidden = false;
      out.className = "validate-result pending";
      out.textContent = "Checking " + url + " …";
      const result = await api("POST", `/api/projects/${project}/validate-agent-endpoint`, {});
      out.replaceChildren();
      if (!result.ok) { out.className = "validate-result bad"; out.textContent = errorMessage(result); return; }
      const v = result.data;
      out.className = "validate-result " + (v.ok ? "good" : "bad");
      out.append(el("strong", { text: v.ok ? "Reachable" : "Not reachable" }));
      const via = v.method ? ` via POST /${v.method}` : "";
      if (v.ok) out.append(` — answered in ${Math.round(v.latency_ms)} ms${via} (HTTP ${v.status_code}).`);
      else out.append(` — ${v.reason || "no answer"}${v.status_code ? " (HTTP " + v.status_code + ")" : ""}.`);
    });
  }

  function overrideDialog() {
    document.addEventListener("click", (event) => {
      const opener = event.target.closest("[data-open-dialog]");
      if (opener) document.getElementById(opener.dataset.openDialog).showModal();
      const closer = event.target.closest("[data-close-dialog]");
      if (closer) closer.closest("dialog").close();
    });
    const form = document.querySelector("form[data-override]");
    if (!form) return;
    const boxes = Array.from(form.querySelectorAll("input[type=checkbox]"));
    const submit = form.querySelector("[type=submit]");
    form.addEventListener("change", () => { submit.disabled = !boxes.every((b) => b.checked); });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const confirmations = Object.fromEntries(boxes.map((b) => [b.name, b.checked]));
      const result = await api("POST", form.dataset.override, { enabled: true, confirmations });
      if (!result.ok) {
        const box = form.querySelector("[data-form-error]");
        box.textContent = errorMessage(result);
        box.hidden = false;
        return;
      }
      window.location.reload();
    });
  }

  function adapterFields(select) {
    const form = select.closest("form");
    const sync = () => {
      for (const group of form.querySelectorAll("[data-adapter-fields]")) {
        const on = group.dataset.adapterFields === select.value;
        group.hidden = !on;
        for (const input of group.querySelectorAll("[name]")) input.disabled = !on;
      }
    };
    select.addEventListener("change", sync);
    sync();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-connection]").forEach(pollConnection);
    document.querySelectorAll("form[data-create-token]").forEach(tokenForm);
    document.querySelectorAll("[data-saved-gate]").forEach(savedGate);
    document.querySelectorAll("[data-mint-canaries]").forEach(mintButton);
    document.querySelectorAll("form[data-validate-endpoint]").forEach(validateForm);
    document.querySelectorAll("[data-adapter-kind]").forEach(adapterFields);
    overrideDialog();
    gatedLinks();
  });
})();
