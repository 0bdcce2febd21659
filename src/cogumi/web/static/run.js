// The run page: exploit feed, timeline replay, evidence tabs and proof drawer.
// Agent and attacker text is hostile: it only ever reaches the DOM through
// textContent (Cogumi.el), never as markup.
"use strict";

(() => {
  const { api, el, toast, errorMessage, selectTab } = Cogumi;
  const DATA = JSON.parse(document.getElementById("run-data").textContent);
  const RUN_ID = DATA.run.id;
  const WINDOW = 150; // rows rendered per list before "show earlier"
  const KIND_ICON = { confirmed: "⚠", attempt: "➜", blocked: "⛔", info: "ℹ", quota: "⏸" };
  const KIND_TEXT = { confirmed: "Confirmed exploit", attempt: "Attempt", blocked: "Blocked", info: "Info", quota: "Quota stop" };
  const CLASS_TEXT = {
    attacker_sink: "Attacker sink", internal_api: "Internal API", tool: "Tool",
    llm_provider: "LLM provider", public_internet: "Public internet", unknown: "Unknown",
  };

  const state = {
    run: DATA.run,
    steps: new Map(),
    findings: new Map(),
    events: [],
    eventsById: new Map(),
    lastSeq: 0,
    cursor: 0,
    follow: true,
    playing: null,
    netFilter: null,
    shown: { conversation: WINDOW, network: WINDOW },
    loadingEvents: null,
    source: null,
    reportVersion: DATA.report ? DATA.report.version : null,
  };

  const $ = (sel) => document.querySelector(sel);
  const isTerminal = () => DATA.terminal.includes(state.run.status);
  const scriptLabel = (id) => (id ? (DATA.scripts[id] ? `${id} · ${DATA.scripts[id]}` : id) : "");
  const maxSeq = () => Math.max(state.lastSeq, ...Array.from(state.steps.values(), (s) => s.seq_end || 0));
  const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
  const words = (v) => String(v || "").replace(/_/g, " ");

  // ---------- data ----------
  function addStep(step) {
    state.steps.set(step.id, step);
  }
  function orderedSteps() {
    return Array.from(state.steps.values()).sort((a, b) =>
      (a.seq_end ?? a.seq_start ?? 0) - (b.seq_end ?? b.seq_start ?? 0) || String(a.ts).localeCompare(String(b.ts)));
  }
  async function loadEvents() {
    if (state.loadingEvents) return state.loadingEvents;
    state.loadingEvents = (async () => {
      let added = 0;
      for (;;) {
        const result = await api("GET", `/api/runs/${RUN_ID}/events?after_seq=${state.lastSeq}&limit=1000`);
        if (!result.ok) break;
        for (const ev of result.data.items) {
          if (state.eventsById.has(ev.id)) continue;
          state.events.push(ev);
          state.eventsById.set(ev.id, ev);
          state.lastSeq = Math.max(state.lastSeq, ev.seq || 0);
          added += 1;
        }
        if (result.data.next_after_seq === null) break;
      }
      return added;
    })();
    try { return await state.loadingEvents; } finally { state.loadingEvents = null; }
  }

  // ---------- header ----------
  function renderHeader() {
    const run = state.run;
    const slot = $("[data-run-status]");
    slot.replaceChildren(el("span", { class: `status status-${run.status}`, text: words(run.status) }));
    const score = run.risk_score;
    $("[data-risk-num]").textContent = score === null || score === undefined ? "—" : String(score);
    $("[data-risk-meter]").value = score || 0;
    const failure = $("[data-run-failure]");
    failure.textContent = run.failure_reason || "";
    failure.hidden = !run.failure_reason;
    $("[data-live]").hidden = isTerminal();
    const cancel = $("[data-cancel-run]");
    if (cancel && isTerminal()) cancel.remove();
    const generate = $("[data-report-generate]");
    if (generate) generate.hidden = !isTerminal();
  }

  // ---------- report ----------
  // POST is idempotent per run version: 200 with the stored report when the run
  // is unchanged, 202 while the job renders it; asking again is how we wait.
  const REPORT_WAIT_MS = 120000;
  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function reportStatus(text) {
    const status = $("[data-report-status]");
    status.textContent = text || "";
    status.hidden = !text;
  }
  function reportError(text) {
    const box = $("[data-report-error]");
    box.textContent = text || "";
    box.hidden = !text;
  }
  function showReport(version) {
    state.reportVersion = version;
    $("[data-report-view]").hidden = false;
    $("[data-report-md]").hidden = false;
    const generate = $("[data-report-generate]");
    if (generate) generate.textContent = "Update report";
    reportStatus(`Report v${version} ready`);
  }
  async function generateReport(button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    reportError("");
    reportStatus("Generating report…");
    const started = Date.now();
    let delay = 700;
    try {
      for (;;) {
        const result = await api("POST", `/api/runs/${RUN_ID}/report`);
        if (!result.ok) {
          reportStatus(state.reportVersion ? `Report v${state.reportVersion}` : "");
          reportError(`Report not generated: ${errorMessage(result)}`);
          return;
        }
        if (result.data.state === "ready") { showReport(result.data.version); return; }
        const waited = Date.now() - started;
        if (waited > REPORT_WAIT_MS) {
          reportStatus(state.reportVersion ? `Report v${state.reportVersion}` : "");
          reportError("The report is taking longer than expected. Try again in a minute.");
          return;
        }
        reportStatus(`Generating report… ${Math.round(waited / 1000)} s`);
        await pause(delay);
        delay = Math.min(delay * 1.5, 4000);
      }
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  // ---------- feed ----------
  function stepItem(step) {
    const finding = step.finding_id ? state.findings.get(step.finding_id) : null;
    const li = el("li", {
      class: `step kind-${step.step_kind} sev-border-${step.severity}`, id: `step-${step.id}`,
      "data-seq": step.seq_end ?? step.seq_start ?? 0,
    });
    li.append(
      el("div", { class: "step-top" },
        el("span", { class: "step-icon", "aria-hidden": "true", text: KIND_ICON[step.step_kind] || "•" }),
        el("span", { class: "step-kind", text: KIND_TEXT[step.step_kind] || step.step_kind }),
        el("span", { class: `sev sev-${step.severity}` }, el("span", { class: "sev-dot", "aria-hidden": "true" }), step.severity),
        step.status ? el("span", { class: "muted small", text: words(step.status) }) : null,
        el("time", { class: "muted small", datetime: step.ts, text: time(step.ts) })),
      el("h3", { class: "step-title", text: step.claim_title }),
      step.claim_summary ? el("p", { class: "step-summary", text: step.claim_summary }) : null,
      el("div", { class: "step-foot" },
        step.script_id ? el("span", { class: "script-label", text: scriptLabel(step.script_id) }) : null,
        step.attack_style ? el("span", { class: "chip style-chip", text: words(step.attack_style) }) : null,
        finding ? el("span", { class: "muted small", text: `score ${finding.score} · confidence ${Math.round(finding.confidence * 100)}%` }) : null,
        (step.evidence_event_ids || []).length
          ? el("button", { type: "button", class: "btn small proof-btn", "data-proof-step": step.id,
              "aria-label": `Proof for: ${step.claim_title}`, text: "Proof" })
          : null));
    return li;
  }

  function renderFeed() {
    const list = $("[data-feed]");
    const steps = orderedSteps();
    const have = new Set(Array.from(list.children, (li) => li.id));
    for (const step of steps) {
      const id = `step-${step.id}`;
      const node = stepItem(step);
      if (have.has(id)) list.querySelector(`#${CSS.escape(id)}`).replaceWith(node);
      else list.append(node);
    }
    // keep DOM order equal to story order
    for (const step of steps) list.append(list.querySelector(`#${CSS.escape("step-" + step.id)}`));
    $("[data-feed-empty]").hidden = steps.length > 0;
    const confirmed = steps.filter((s) => s.step_kind === "confirmed").length;
    $("[data-feed-count]").textContent = `${steps.length} steps · ${confirmed} confirmed`;
    applyCursorToFeed();
  }

  // ---------- conversation ----------
  function messages() { return state.events.filter((e) => e.type === "agent.message"); }
  function visible(list) { return list.filter((e) => (e.seq || 0) <= state.cursor); }

  function matchChips(ev) {
    if (!ev.matches || !ev.matches.length) return null;
    return el("ul", { class: "matches" }, ...ev.matches.map((m) =>
      el("li", { class: "chip match-chip" }, el("strong", { text: m.kind }), " ", el("code", { text: m.preview || "" }))));
  }

  function bubble(ev) {
    const p = ev.payload_redacted || {};
    const who = ev.actor === "adversary" ? "Adversary" : "Agent";
    return el("li", { class: `bubble from-${ev.actor}`, id: `ev-${ev.id}`, "data-seq": ev.seq },
      el("div", { class: "bubble-meta" },
        el("strong", { text: who }),
        p.script_id ? el("span", { class: "script-label", text: scriptLabel(p.script_id) + (p.script_step_id ? ` · ${p.script_step_id}` : "") }) : null,
        p.attack_style ? el("span", { class: "chip style-chip", text: words(p.attack_style) }) : null,
        p.session_id ? el("span", { class: "muted small", text: `session ${String(p.session_id).slice(0, 8)}` }) : null,
        el("span", { class: "muted small", text: `#${ev.seq}` })),
      el("p", { class: "bubble-text", text: p.text_redacted ?? p.summary ?? "" }),
      ev.error ? el("p", { class: "form-error small", text: ev.error }) : null,
      matchChips(ev));
  }

  function renderWindowed(kind, listSel, items, make) {
    const list = $(listSel);
    const limit = state.shown[kind];
    const slice = items.slice(Math.max(0, items.length - limit));
    list.replaceChildren(...slice.map(make));
    $(`[data-more="${kind}"]`).hidden = items.length <= limit;
    $(`[data-empty="${kind}"]`).hidden = items.length > 0;
  }

  function renderConversation() {
    const items = visible(messages());
    renderWindowed("conversation", "[data-chat]", items, bubble);
    $('[data-count="conversation"]').textContent = String(messages().length);
  }

  // ---------- network ----------
  function networkEvents() { return state.events.filter((e) => e.channel === "http"); }

  function netCard(ev) {
    const d = ev.destination || {};
    const h = ev.http || {};
    const p = ev.payload_redacted || {};
    const cls = d.classification || "unknown";
    const target = `${d.host || "?"}${d.port && ![80, 443].includes(d.port) ? ":" + d.port : ""}${d.path || ""}`;
    return el("li", { class: `net-card net-${cls}`, id: `ev-${ev.id}`, "data-seq": ev.seq },
      el("div", { class: "net-top" },
        el("span", { class: `chip class-chip class-${cls}`, text: CLASS_TEXT[cls] || cls }),
        el("strong", { class: "mono", text: `${h.method || (ev.type === "request" ? "CONNECT" : "")} ${target}` }),
        d.sensitive_path ? el("span", { class: "chip warn-chip", text: `sensitive path ${d.sensitive_path}` }) : null,
        ev.type === "blocked" ? el("span", { class: "chip warn-chip", text: "blocked" }) : null),
      el("p", { class: "small" },
        h.status_code ? `HTTP ${h.status_code} · ` : "",
        `${h.bytes_out ?? 0} B out · ${h.bytes_in ?? 0} B in`,
        h.duration_ms !== undefined && h.duration_ms !== null ? ` · ${h.duration_ms} ms` : "",
        ` · #${ev.seq} · ${time(ev.ts)}`),
      p.summary ? el("p", { class: "small muted", text: p.summary }) : null,
      p.body_redacted_preview ? bodyPreview(String(p.body_redacted_preview)) : null,
      matchChips(ev));
  }

  // A JSON body is shown as its fields (path and value), never as a raw blob.
  const MAX_FIELDS = 40;
  function fields(value, path, out) {
    if (out.length >= MAX_FIELDS) return out;
    if (value !== null && typeof value === "object") {
      const entries = Array.isArray(value) ? value.map((v, i) => [String(i + 1), v]) : Object.entries(value);
      if (!entries.length) out.push([path || "body", "(empty)"]);
      for (const [key, item] of entries) fields(item, path ? `${path} › ${key}` : key, out);
      return out;
    }
    out.push([path || "body", value === null ? "(none)" : String(value)]);
    return out;
  }
  function bodyPreview(text) {
    let parsed = null;
    try { parsed = JSON.parse(text); } catch (err) { parsed = null; }
    if (parsed === null || typeof parsed !== "object") {
      return el("pre", { class: "preview", text: text.slice(0, 2000) });
    }
    const rows = fields(parsed, "", []);
    return el("ul", { class: "preview body-fields", "aria-label": "Request body fields" },
      ...rows.slice(0, MAX_FIELDS).map(([key, value]) => el("li", {}, el("code", { text: key }), " ", value.slice(0, 500))));
  }

  function renderNetFilters() {
    const box = $("[data-net-filters]");
    const counts = {};
    for (const ev of networkEvents()) {
      const cls = (ev.destination && ev.destination.classification) || "unknown";
      counts[cls] = (counts[cls] || 0) + 1;
    }
    const chip = (key, text, n) => el("button", {
      type: "button", class: "chip filter", "aria-pressed": String(state.netFilter === key),
      "data-net-filter": key === null ? "" : key, text: `${text} (${n})`,
    });
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    box.replaceChildren(chip(null, "All", total),
      ...Object.keys(CLASS_TEXT).filter((k) => counts[k]).map((k) => chip(k, CLASS_TEXT[k], counts[k])));
  }

  function renderNetwork() {
    let items = visible(networkEvents());
    if (state.netFilter) items = items.filter((e) => ((e.destination && e.destination.classification) || "unknown") === state.netFilter);
    renderNetFilters();
    renderWindowed("network", "[data-net]", items, netCard);
    $('[data-count="network"]').textContent = String(networkEvents().length);
  }

  // ---------- findings ----------
  function triageForm(f) {
    const t = f.triage || {};
    const id = f.id;
    const form = el("form", { class: "triage", "data-triage": id, "aria-label": `Triage ${f.title}` });
    const field = (label, input) => el("div", { class: "tfield" }, el("label", { for: input.id, text: label }), input);
    const select = el("select", { id: `tr-status-${id}`, name: "status" },
      ...["open", "fixed", "accepted"].map((s) => el("option", { value: s, selected: t.status === s, text: s })));
    const owner = el("input", { id: `tr-owner-${id}`, name: "owner", value: t.owner || "", maxlength: 320 });
    const eta = el("input", { id: `tr-eta-${id}`, name: "eta", type: "date", value: t.eta || "" });
    const why = el("textarea", { id: `tr-why-${id}`, name: "why_it_works", rows: 2, maxlength: 4000 });
    why.value = t.why_it_works || "";
    const verify = el("textarea", { id: `tr-verify-${id}`, name: "verification_step", rows: 2, maxlength: 4000 });
    verify.value = t.verification_step || "";
    const error = el("p", { class: "form-error", role: "alert", hidden: true });
    form.append(
      el("div", { class: "triage-row" }, field("Status", select), field("Owner", owner), field("ETA", eta)),
      field("Why it works", why), field("Verification step", verify), error,
      el("button", { type: "submit", class: "btn small primary", text: "Save triage" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      const body = {
        status: select.value, owner: owner.value.trim() || null, eta: eta.value || null,
        why_it_works: why.value, verification_step: verify.value,
      };
      const result = await api("PATCH", `/api/findings/${id}`, body);
      if (!result.ok) { error.textContent = errorMessage(result); error.hidden = false; return; }
      state.findings.set(id, result.data);
      toast("Triage saved", "ok");
      renderFindings();
    });
    return form;
  }

  function triageView(f) {
    const t = f.triage || {};
    return el("dl", { class: "kv small" },
      el("dt", { text: "Triage" }), el("dd", { text: t.status || "open" }),
      el("dt", { text: "Owner" }), el("dd", { text: t.owner || "—" }),
      el("dt", { text: "ETA" }), el("dd", { text: t.eta || "—" }),
      el("dt", { text: "Why it works" }), el("dd", { text: t.why_it_works || "—" }),
      el("dt", { text: "Verification step" }), el("dd", { text: t.verification_step || "—" }));
  }

  function findingCard(f) {
    const owasp = [...((f.owasp && f.owasp.llm) || []), ...((f.owasp && f.owasp.agentic) || [])];
    const stepId = Array.from(state.steps.values()).find((s) => s.finding_id === f.id);
    return el("li", { class: `finding-card sev-border-${f.severity} ${f.status === "confirmed" ? "is-confirmed" : ""}`, id: `finding-${f.id}` },
      el("div", { class: "step-top" },
        el("span", { class: `sev sev-${f.severity}` }, el("span", { class: "sev-dot", "aria-hidden": "true" }), f.severity),
        el("span", { class: `chip status-chip st-${f.status}`, text: f.status }),
        el("span", { class: "muted small", text: `score ${f.score} · confidence ${Math.round(f.confidence * 100)}% · ${scriptLabel(f.script_id)}` })),
      el("h3", { text: f.title }),
      f.summary ? el("p", { text: f.summary }) : null,
      owasp.length ? el("p", { class: "small" }, "OWASP: ", ...owasp.map((o) => el("span", { class: "chip", text: o }))) : null,
      el("button", { type: "button", class: "btn small proof-btn", "data-proof-finding": f.id, text: "Proof",
        "aria-label": `Proof for: ${f.title}`, hidden: !(f.evidence_event_ids || []).length && !stepId }),
      f.remediation_md ? el("details", { class: "remediation" }, el("summary", { text: "Remediation" }),
        el("pre", { class: "prose", text: f.remediation_md })) : null,
      DATA.can_triage ? triageForm(f) : triageView(f));
  }

  function renderFindings() {
    const items = Array.from(state.findings.values()).sort((a, b) => b.score - a.score);
    $("[data-findings]").replaceChildren(...items.map(findingCard));
    $('[data-empty="findings"]').hidden = items.length > 0;
    const open = items.filter((f) => (f.triage || {}).status === "open").length;
    $('[data-count="findings"]').textContent = String(items.length) + (open ? ` (${open} open)` : "");
  }

  // ---------- policy & memory ----------
  function policyItem(ev) {
    const p = ev.payload_redacted || {};
    return el("li", { id: `ev-${ev.id}`, "data-seq": ev.seq, class: "policy-item" },
      el("strong", { text: words(p.reason || ev.type) }), " ",
      el("span", { class: "muted small", text: `#${ev.seq} · ${time(ev.ts)}` }),
      p.summary ? el("p", { class: "small", text: p.summary }) : null);
  }
  function renderPolicy() {
    const items = state.events.filter((e) => e.channel === "policy" || e.type === "policy.violation");
    $("[data-policy]").replaceChildren(...items.map(policyItem));
    $('[data-empty="policy"]').hidden = items.length > 0;
    $('[data-count="policy"]').textContent = items.length ? String(items.length) : "";
  }
  function renderMemory() {
    const steps = orderedSteps().filter((s) => s.script_id === "S4");
    const turns = messages().filter((e) => (e.payload_redacted || {}).script_id === "S4");
    const nodes = steps.map((s) => el("li", { class: `policy-item kind-${s.step_kind}` },
      el("strong", { text: s.claim_title }), " ", el("span", { class: "muted small", text: words(s.status) }),
      s.claim_summary ? el("p", { class: "small", text: s.claim_summary }) : null,
      el("button", { type: "button", class: "btn small proof-btn", "data-proof-step": s.id, text: "Proof", "aria-label": `Proof for: ${s.claim_title}` })));
    const sessions = new Set(turns.map((e) => (e.payload_redacted || {}).session_id).filter(Boolean));
    if (turns.length) nodes.push(el("li", { class: "muted small", text: `${turns.length} messages across ${sessions.size} session(s); see them in Conversation.` }));
    $("[data-memory]").replaceChildren(...nodes);
    $('[data-empty="memory"]').hidden = nodes.length > 0;
    $('[data-count="memory"]').textContent = steps.length ? String(steps.length) : "";
  }

  // ---------- timeline ----------
  function renderMarkers() {
    const box = $("[data-markers]");
    const max = Math.max(maxSeq(), 1);
    const markers = [];
    for (const step of orderedSteps()) {
      const seq = step.seq_start ?? step.seq_end;
      if (seq === null || seq === undefined) continue;
      let kind = null;
      if (step.step_kind === "confirmed") kind = "confirmed";
      else if (step.status === "started") kind = "start";
      else if (step.step_kind === "attempt") kind = "attempt";
      if (!kind) continue;
      const mark = el("button", {
        type: "button", class: `mk mk-${kind}`, "data-jump-seq": seq,
        "aria-label": `${step.claim_title} (event ${seq})`, title: step.claim_title,
      });
      mark.style.left = `${((seq - 0) / max) * 100}%`;
      markers.push(mark);
    }
    box.replaceChildren(...markers);
  }

  function applyCursorToFeed() {
    for (const li of document.querySelectorAll("[data-feed] > li")) {
      li.classList.toggle("future", Number(li.dataset.seq) > state.cursor);
    }
  }

  function describePosition() {
    const ev = state.events.filter((e) => (e.seq || 0) <= state.cursor).pop();
    const max = maxSeq();
    const where = ev ? ` · ${time(ev.ts)} · ${(ev.payload_redacted || {}).script_id || ev.type}` : "";
    $("[data-position]").textContent = `Event ${state.cursor} of ${max}${where}`;
  }

  function setCursor(seq, opts) {
    const max = maxSeq();
    state.cursor = Math.max(0, Math.min(seq, max));
    state.follow = state.cursor >= max && !(opts && opts.unfollow);
    const scrubber = $("[data-scrubber]");
    scrubber.max = String(max);
    scrubber.value = String(state.cursor);
    scrubber.setAttribute("aria-valuetext", `event ${state.cursor} of ${max}`);
    $("[data-latest]").hidden = state.follow || (isTerminal() && state.playing === null && state.cursor >= max);
    applyCursorToFeed();
    renderConversation();
    renderNetwork();
    describePosition();
  }

  async function loadStory() {
    const story = await api("GET", `/api/runs/${RUN_ID}/story`);
    if (story.ok) for (const step of story.data.items) addStep(step); // keyed by id: no doubles
  }

  function renderAll() {
    renderHeader();
    renderFeed();
    renderFindings();
    renderPolicy();
    renderMemory();
    renderMarkers();
    setCursor(state.follow ? maxSeq() : state.cursor);
  }

  // ---------- replay ----------
  function stopPlaying() {
    if (state.playing !== null) clearInterval(state.playing);
    state.playing = null;
    const button = $("[data-play]");
    button.textContent = "▶ Replay";
    button.setAttribute("aria-pressed", "false");
  }
  function play() {
    if (state.playing !== null) { stopPlaying(); return; }
    const seqs = state.events.map((e) => e.seq || 0).filter(Boolean).sort((a, b) => a - b);
    if (!seqs.length) return;
    if (state.cursor >= maxSeq()) setCursor(0, { unfollow: true });
    const button = $("[data-play]");
    button.textContent = "⏸ Pause";
    button.setAttribute("aria-pressed", "true");
    const speed = Number($("[data-speed]").value) || 1;
    state.playing = setInterval(() => {
      const next = seqs.find((s) => s > state.cursor);
      if (next === undefined) { stopPlaying(); setCursor(maxSeq()); return; }
      setCursor(next, { unfollow: true });
      const node = document.querySelector(`[data-chat] > li[data-seq="${next}"], [data-net] > li[data-seq="${next}"]`);
      if (node) node.scrollIntoView({ block: "nearest" });
    }, 600 / speed);
  }

  // ---------- proof drawer ----------
  function proofCards(ids, labels) {
    const cards = [];
    ids.forEach((eventId) => {
      const ev = state.eventsById.get(String(eventId));
      const label = labels.get(String(eventId));
      if (!ev) {
        cards.push(el("li", { class: "proof-card" }, el("p", { class: "muted", text: "Event not loaded yet." })));
        return;
      }
      const p = ev.payload_redacted || {};
      let title = "System marker";
      let body = p.summary || words(p.marker || ev.type);
      if (ev.type === "agent.message") {
        title = ev.actor === "adversary" ? "Adversary message" : "Agent reply";
        body = p.text_redacted ?? p.summary ?? "";
      } else if (ev.channel === "http") {
        const d = ev.destination || {};
        const h = ev.http || {};
        title = `Network call · ${CLASS_TEXT[d.classification] || d.classification || "unknown"}`;
        body = `${h.method || "CONNECT"} ${d.host || ""}${d.path || ""}` +
          (h.status_code ? ` → HTTP ${h.status_code}` : "") + ` · ${h.bytes_out ?? 0} B out`;
      } else if (ev.channel === "policy" || ev.type === "policy.violation") {
        title = "Policy";
      }
      cards.push(el("li", { class: `proof-card pc-${ev.type.replace(".", "-")}` },
        el("div", { class: "proof-top" },
          el("strong", { text: title }),
          label ? el("span", { class: "chip", text: label }) : null,
          el("span", { class: "muted small", text: `#${ev.seq} · ${time(ev.ts)}` }),
          el("button", { type: "button", class: "btn small", "data-jump-event": ev.id, text: "Jump", "aria-label": `Jump to ${title} (event ${ev.seq})` })),
        el("p", { class: "proof-body", text: body })));
      for (const m of ev.matches || []) {
        cards.push(el("li", { class: "proof-card pc-match" },
          el("div", { class: "proof-top" },
            el("strong", { text: "Detector match" }),
            el("span", { class: "chip match-chip", text: m.kind }),
            el("button", { type: "button", class: "btn small", "data-jump-event": ev.id, text: "Jump", "aria-label": `Jump to the ${m.kind} match (event ${ev.seq})` })),
          el("p", { class: "proof-body" }, "Preview ", el("code", { text: m.preview || "" }),
            m.confidence !== undefined ? ` · confidence ${Math.round(m.confidence * 100)}%` : "",
            " · the value itself is never stored")));
      }
    });
    return cards;
  }

  async function openProof(title, summary, ids, labels, opener) {
    if (ids.some((id) => !state.eventsById.has(String(id)))) await loadEvents();
    const drawer = $("[data-drawer]");
    $("[data-drawer-title]").textContent = title;
    $("[data-drawer-summary]").textContent = summary || "";
    $("[data-proof]").replaceChildren(...proofCards(ids, labels));
    drawer.hidden = false;
    drawer._opener = opener;
    drawer.querySelector("[data-drawer-close]").focus();
  }

  function proofForStep(stepId, opener) {
    const step = state.steps.get(stepId);
    if (!step) return;
    const finding = step.finding_id ? state.findings.get(step.finding_id) : null;
    const labels = new Map((finding ? finding.narrative_steps : []).map((n) => [String(n.event_id), n.label]));
    const ids = finding && finding.evidence_event_ids.length ? finding.evidence_event_ids : step.evidence_event_ids;
    openProof(step.claim_title, step.claim_summary, ids, labels, opener);
  }
  function proofForFinding(findingId, opener) {
    const f = state.findings.get(findingId);
    if (!f) return;
    const labels = new Map((f.narrative_steps || []).map((n) => [String(n.event_id), n.label]));
    openProof(f.title, f.summary, f.evidence_event_ids, labels, opener);
  }
  function closeDrawer() {
    const drawer = $("[data-drawer]");
    drawer.hidden = true;
    if (drawer._opener && document.body.contains(drawer._opener)) drawer._opener.focus();
  }

  function jumpToEvent(eventId) {
    const ev = state.eventsById.get(String(eventId));
    if (!ev) return;
    stopPlaying();
    let tab = "conversation";
    if (ev.channel === "http") { tab = "network"; state.netFilter = null; }
    else if (ev.channel === "policy" || ev.type === "policy.violation") tab = "policy";
    else if (ev.type === "marker") tab = null;
    // make sure the target row is inside the rendered window
    const kind = tab === "network" ? "network" : "conversation";
    if (tab === "conversation" || tab === "network") state.shown[kind] = Math.max(state.shown[kind], WINDOW);
    setCursor(ev.seq || 0, { unfollow: true });
    if (tab) selectTab(document.getElementById(`tab-${tab}`), false);
    const node = document.getElementById(`ev-${ev.id}`);
    for (const old of document.querySelectorAll(".jumped")) old.classList.remove("jumped");
    if (node) {
      node.classList.add("jumped");
      node.scrollIntoView({ block: "center" });
    }
    const step = orderedSteps().filter((s) => (s.seq_end ?? s.seq_start ?? 0) <= (ev.seq || 0)).pop();
    if (step) {
      const li = document.getElementById(`step-${step.id}`);
      if (li) { li.classList.add("jumped"); li.scrollIntoView({ block: "nearest" }); }
    }
  }

  // ---------- live ----------
  let refreshTimer = null;
  function scheduleRefresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      const added = await loadEvents();
      if (added) renderAll();
    }, 250);
  }

  function connect() {
    if (isTerminal() || !window.EventSource) return;
    // The browser resends Last-Event-ID by itself when it reconnects.
    const source = new EventSource(`/api/runs/${RUN_ID}/stream`, { withCredentials: true });
    state.source = source;
    source.addEventListener("story.step.created", (msg) => {
      addStep(JSON.parse(msg.data));
      scheduleRefresh();
      renderAll();
    });
    source.addEventListener("finding.created", (msg) => {
      const f = JSON.parse(msg.data);
      state.findings.set(f.id, f);
      renderFindings();
    });
    source.addEventListener("quota.warning", (msg) => {
      const data = JSON.parse(msg.data);
      toast(`Quota warning: ${data.message || data.quota || "limit near"}`, "error");
    });
    source.addEventListener("run.status", async (msg) => {
      const data = JSON.parse(msg.data);
      Object.assign(state.run, {
        status: data.status, failure_reason: data.failure_reason, risk_score: data.risk_score,
      });
      renderHeader();
      if (isTerminal()) {
        source.close();
        clearInterval(poller);
        // Anything missed on the stream (a dropped connection, a late step) comes back here.
        await Promise.all([loadEvents(), loadStory()]);
        const findings = await api("GET", `/api/runs/${RUN_ID}/findings`);
        if (findings.ok) for (const f of findings.data.items) state.findings.set(f.id, f);
        renderAll();
      }
    });
    // Sidecar traffic does not come over the stream: poll the events while live.
    const poller = setInterval(() => { if (!isTerminal()) scheduleRefresh(); }, 2000);
  }

  // ---------- wiring ----------
  function wire() {
    document.addEventListener("click", (event) => {
      const t = event.target;
      const proofStep = t.closest("[data-proof-step]");
      if (proofStep) { proofForStep(proofStep.dataset.proofStep, proofStep); return; }
      const proofFinding = t.closest("[data-proof-finding]");
      if (proofFinding) { proofForFinding(proofFinding.dataset.proofFinding, proofFinding); return; }
      const jump = t.closest("[data-jump-event]");
      if (jump) { jumpToEvent(jump.dataset.jumpEvent); return; }
      const mark = t.closest("[data-jump-seq]");
      if (mark) { stopPlaying(); setCursor(Number(mark.dataset.jumpSeq), { unfollow: true }); return; }
      if (t.closest("[data-drawer-close]")) { closeDrawer(); return; }
      const generate = t.closest("[data-report-generate]");
      if (generate) { if (!generate.disabled) generateReport(generate); return; }
      if (t.closest("[data-play]")) { play(); return; }
      if (t.closest("[data-latest]")) { stopPlaying(); setCursor(maxSeq()); return; }
      const filter = t.closest("[data-net-filter]");
      if (filter) { state.netFilter = filter.dataset.netFilter || null; renderNetwork(); return; }
      const more = t.closest("[data-more]");
      if (more) { state.shown[more.dataset.more] += WINDOW; setCursor(state.cursor, { unfollow: !state.follow }); }
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !$("[data-drawer]").hidden) closeDrawer();
    });
    const scrubber = $("[data-scrubber]");
    scrubber.addEventListener("input", () => { stopPlaying(); setCursor(Number(scrubber.value), { unfollow: true }); });
    const cancel = $("[data-cancel-run]");
    if (cancel) cancel.addEventListener("api:success", (e) => { toast("Cancel requested", "ok"); Object.assign(state.run, e.detail); renderHeader(); });
  }

  async function start() {
    for (const step of DATA.story) addStep(step);
    for (const f of DATA.findings) state.findings.set(f.id, f);
    wire();
    renderAll();
    await loadEvents();
    renderAll();
    const wanted = new URLSearchParams(window.location.search).get("finding");
    if (wanted && state.findings.has(wanted)) {
      selectTab(document.getElementById("tab-findings"), false);
      const card = document.getElementById(`finding-${wanted}`);
      if (card) { card.classList.add("jumped"); card.scrollIntoView({ block: "start" }); }
    }
    connect();
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", start);
})();
