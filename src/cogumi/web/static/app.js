// COGUMI AI Protect: shared page behaviour. Data is only ever written with
// textContent; no HTML is built from strings anywhere in this file.
"use strict";

const Cogumi = (() => {
  function csrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)cogumi_csrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") init.headers["X-CSRF-Token"] = csrfToken();
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      return { ok: false, status: 0, data: { message: "The server could not be reached." } };
    }
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (err) { data = null; }
    }
    return { ok: response.ok, status: response.status, data };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function toast(message, kind) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.className = "toast " + (kind || "");
    box.hidden = false;
    clearTimeout(box._timer);
    box._timer = setTimeout(() => { box.hidden = true; }, 4000);
  }

  function errorMessage(result) {
    const data = result.data || {};
    if (result.status === 403) return data.message ? "Not allowed: " + data.message : "Not allowed.";
    return data.message || "Something went wrong (HTTP " + result.status + ").";
  }

  function setPath(target, path, value) {
    const parts = path.split(".");
    let node = target;
    for (const part of parts.slice(0, -1)) node = node[part] = node[part] || {};
    node[parts[parts.length - 1]] = value;
  }

  function readField(input) {
    const type = input.dataset.type || "";
    if (type === "list") return input.value.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
    if (type === "int") return input.value === "" ? null : Number(input.value);
    if (type === "nullable") return input.value.trim() === "" ? null : input.value;
    if (type === "json") { try { return JSON.parse(input.value); } catch (err) { return input.value; } }
    if (input.type === "checkbox") return input.checked;
    return input.value;
  }

  function formBody(form) {
    const body = {};
    const multi = {};
    for (const input of form.querySelectorAll("[name]")) {
      if (input.disabled || input.dataset.skip !== undefined) continue;
      if (input.dataset.type === "multi") {
        multi[input.name] = multi[input.name] || [];
        if (input.checked) multi[input.name].push(input.value);
        continue;
      }
      if (input.type === "radio") {
        if (input.checked) setPath(body, input.name, input.value);
        continue;
      }
      setPath(body, input.name, readField(input));
    }
    for (const [name, values] of Object.entries(multi)) setPath(body, name, values);
    return body;
  }

  function clearErrors(form) {
    for (const p of form.querySelectorAll("[data-error-for], [data-form-error]")) {
      p.hidden = true;
      p.textContent = "";
    }
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  }

  function showErrors(form, result) {
    const fields = (result.data && result.data.fields) || [];
    let placed = false;
    const named = result.data && result.data.field ? [{ field: result.data.field, message: result.data.message }] : [];
    for (const item of fields.concat(named)) {
      const name = String(item.field || "").split(".")[0];
      const slot = form.querySelector(`[data-error-for="${CSS.escape(item.field)}"]`) ||
        form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
      if (!slot) continue;
      slot.textContent = item.message;
      slot.hidden = false;
      const input = form.querySelector(`[name="${CSS.escape(item.field)}"]`) || form.querySelector(`[name="${CSS.escape(name)}"]`);
      if (input) input.setAttribute("aria-invalid", "true");
      placed = true;
    }
    const general = form.querySelector("[data-form-error]");
    if (general && (!placed || result.status !== 422)) {
      general.textContent = errorMessage(result);
      general.hidden = false;
    } else if (!general && !placed) {
      toast(errorMessage(result), "error");
    }
    const first = form.querySelector("[aria-invalid]");
    if (first) first.focus();
  }

  function fill(template, data) {
    return template.replace(/\{(\w+)\}/g, (_, key) => encodeURIComponent(data && data[key] !== undefined ? data[key] : ""));
  }

  async function submitForm(event) {
    const form = event.target.closest("form[data-api]");
    if (!form) return;
    event.preventDefault();
    const [method, pathTemplate] = form.dataset.api.split(" ");
    clearErrors(form);
    const button = form.querySelector("[type=submit]");
    if (button) button.disabled = true;
    const body = formBody(form);
    const result = await api(method, pathTemplate, body);
    if (button) button.disabled = false;
    if (!result.ok) {
      showErrors(form, result);
      form.dispatchEvent(new CustomEvent("api:error", { detail: result, bubbles: true }));
      return;
    }
    form.dispatchEvent(new CustomEvent("api:success", { detail: result.data, bubbles: true }));
    if (form.dataset.redirect) window.location.assign(fill(form.dataset.redirect, result.data));
    else if (form.dataset.reload !== undefined) window.location.reload();
    else if (form.dataset.success) toast(form.dataset.success, "ok");
  }

  async function actionButton(button) {
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    const result = await api(button.dataset.method || "POST", button.dataset.apiAction,
      button.dataset.body ? JSON.parse(button.dataset.body) : undefined);
    button.disabled = false;
    if (!result.ok) { toast(errorMessage(result), "error"); return; }
    button.dispatchEvent(new CustomEvent("api:success", { detail: result.data, bubbles: true }));
    if (button.dataset.redirect) window.location.assign(fill(button.dataset.redirect, result.data));
    else if (button.dataset.noReload === undefined) window.location.reload();
  }

  async function copy(button) {
    const source = document.querySelector(button.dataset.copy);
    const text = source ? (source.value !== undefined && source.tagName === "INPUT" ? source.value : source.textContent) : "";
    try {
      await navigator.clipboard.writeText(text);
    } catch (err) {
      const area = el("textarea", { class: "sr-only" });
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    const before = button.textContent;
    button.textContent = "Copied";
    button.dataset.copied = "true";
    setTimeout(() => { button.textContent = before; }, 1500);
  }

  // Accessible tabs: arrow keys move between tabs, Enter/Space or click selects.
  function selectTab(tab, focus) {
    const list = tab.closest("[role=tablist]");
    for (const other of list.querySelectorAll("[role=tab]")) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      const panel = document.getElementById(other.getAttribute("aria-controls"));
      if (panel) panel.hidden = !selected;
    }
    if (focus) tab.focus();
    list.dispatchEvent(new CustomEvent("tab:selected", { detail: tab, bubbles: true }));
  }

  function tabKeys(event) {
    const tab = event.target.closest("[role=tab]");
    if (!tab) return;
    const tabs = Array.from(tab.closest("[role=tablist]").querySelectorAll("[role=tab]"));
    const index = tabs.indexOf(tab);
    const moves = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
    if (event.key in moves) {
      event.preventDefault();
      selectTab(tabs[(index + moves[event.key] + tabs.length) % tabs.length], true);
    } else if (event.key === "Home") { event.preventDefault(); selectTab(tabs[0], true); }
    else if (event.key === "End") { event.preventDefault(); selectTab(tabs[tabs.length - 1], true); }
  }

  function init() {
    document.addEventListener("submit", submitForm);
    document.addEventListener("click", (event) => {
      const action = event.target.closest("[data-api-action]");
      if (action) { event.preventDefault(); actionButton(action); return; }
      const copyButton = event.target.closest("[data-copy]");
      if (copyButton) { copy(copyButton); return; }
      const tab = event.target.closest("[role=tab]");
      if (tab && tab.closest("[role=tablist]")) { selectTab(tab, false); return; }
      const logout = event.target.closest("[data-logout]");
      if (logout) {
        api("POST", "/api/auth/logout").then(() => window.location.assign("/login"));
      }
    });
    document.addEventListener("keydown", tabKeys);
    const switcher = document.querySelector("[data-org-switcher]");
    if (switcher) {
      switcher.addEventListener("change", async () => {
        const result = await api("POST", `/api/orgs/${encodeURIComponent(switcher.value)}/switch`);
        if (result.ok) window.location.assign("/");
        else toast(errorMessage(result), "error");
      });
    }
  }

  document.addEventListener("DOMContentLoaded", init);
  return { api, el, toast, errorMessage, selectTab, formBody, csrfToken };
})();
