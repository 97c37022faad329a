// otel-corr's page. Everything shown comes from spans and log records, which attackers control
// (headers, paths, messages): the DOM is built with text nodes only -- no innerHTML anywhere --
// and the server sends a CSP that forbids inline script and style.
"use strict";
(() => {
  const view = document.getElementById("view");
  const PALETTE = ["#60a5fa", "#34d399", "#f59e0b", "#a78bfa", "#f472b6", "#22d3ee", "#fb923c", "#94a3b8", "#4ade80", "#e879f9"];
  let refreshTimer = null;

  // --- small helpers --------------------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }
  function colour(service) {
    let h = 0;
    for (const c of String(service)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }
  function nsToDate(ns) { return new Date(Number(BigInt(ns) / 1000000n)); }
  const two = (n) => (n < 10 ? "0" : "") + n;
  function clock(ns) {  // HH:MM:SS.mmm, local time (cheap: called for every log line)
    const d = nsToDate(ns);
    const m = d.getMilliseconds();
    return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds()) + "." + (m < 100 ? (m < 10 ? "00" : "0") : "") + m;
  }
  function ms(value) { return value >= 1000 ? (value / 1000).toFixed(2) + " s" : value.toFixed(value < 10 ? 2 : 1) + " ms"; }
  function statusClass(code) { return code ? "status s" + String(code)[0] : "status"; }
  async function getJSON(url) {
    const response = await fetch(url, { headers: { accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    return { ok: response.ok, status: response.status, body };
  }
  function go(path) { history.pushState(null, "", path); render(); }
  function link(path, ...children) {
    return el("a", { href: path, onclick: (e) => { if (!e.metaKey && !e.ctrlKey) { e.preventDefault(); go(path); } } }, ...children);
  }
  function stopRefresh() { if (refreshTimer) { clearInterval(refreshTimer); refreshTimer = null; } }
  function setNav(which) {
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === which);
  }

  // --- requests -------------------------------------------------------------------------------
  async function requestsView() {
    setNav("requests");
    const params = new URLSearchParams(location.search);
    const service = el("select", { name: "service" }, el("option", { value: "", text: "all services" }));
    const route = el("input", { name: "route", placeholder: "e.g. /orders", value: params.get("route") || "" });
    const status = el("select", { name: "status" },
      ...[["", "any status"], ["2xx", "2xx"], ["3xx", "3xx"], ["4xx", "4xx"], ["5xx", "5xx"], ["error", "errors"]]
        .map(([v, t]) => el("option", { value: v, text: t })));
    status.value = params.get("status") || "";
    const minMs = el("input", { name: "min_ms", type: "number", min: "0", step: "any", placeholder: "0", value: params.get("min_ms") || "" });
    const auto = el("input", { type: "checkbox", checked: "checked" });
    const tbody = el("tbody");
    const note = el("div", { class: "empty", text: "Loading…" });
    const form = el("form", { class: "filters card", onsubmit: (e) => { e.preventDefault(); apply(); } },
      el("label", {}, "Service", service), el("label", {}, "Route", route), el("label", {}, "Status", status),
      el("label", {}, "Min duration (ms)", minMs), el("button", { type: "submit", text: "Filter" }),
      el("label", { class: "auto" }, "Auto-refresh", auto));
    const table = el("table", { id: "requests" },
      el("thead", {}, el("tr", {}, ...["Time", "Service", "Request", "Status", "Duration", "Request ID"]
        .map((h, i) => el("th", { class: i === 4 ? "num" : null, text: h })))), tbody);
    view.replaceChildren(form, el("div", { class: "card" }, table, note));
    let knownServices = [];

    function apply() {
      const q = new URLSearchParams();
      for (const [k, input] of [["service", service], ["route", route], ["status", status], ["min_ms", minMs]]) {
        if (input.value) q.set(k, input.value);
      }
      history.replaceState(null, "", "/" + (q.toString() ? "?" + q : ""));
      load();
    }
    async function load() {
      const q = new URLSearchParams(location.search);
      const { ok, body } = await getJSON("/api/ui/requests?" + q);
      if (!ok) { note.textContent = body.error || "Could not load requests."; return; }
      if (JSON.stringify(body.services) !== JSON.stringify(knownServices)) {
        knownServices = body.services || [];
        const current = q.get("service") || "";
        service.replaceChildren(el("option", { value: "", text: "all services" }),
          ...knownServices.map((s) => el("option", { value: s, text: s })));
        service.value = current;
      }
      tbody.replaceChildren(...body.rows.map((r) => {
        const path = "/trace/" + encodeURIComponent(r.trace_id);
        return el("tr", { class: "row", "data-trace": r.trace_id, onclick: () => go(path) },
          el("td", { class: "mono", text: clock(r.time_ns) }),
          el("td", {}, el("span", { class: "swatch", "data-colour": colour(r.service) }), r.service),
          el("td", {}, link(path, r.name)),
          el("td", { class: statusClass(r.status) + (r.error ? " err" : ""), text: r.status ?? (r.error ? "error" : "") }),
          el("td", { class: "num", text: ms(r.duration_ms) }),
          el("td", { class: "mono", text: r.request_id || "" }));
      }));
      for (const sw of tbody.querySelectorAll(".swatch")) sw.style.background = sw.dataset.colour;
      note.textContent = body.rows.length ? "" : "No requests yet. Point OTEL_EXPORTER_OTLP_ENDPOINT at this server's OTLP port.";
    }
    await load();
    stopRefresh();
    refreshTimer = setInterval(() => { if (auto.checked && !document.hidden) load(); }, 3000);
  }

  // --- one trace ------------------------------------------------------------------------------
  async function traceView(id) {
    setNav("");
    stopRefresh();
    view.replaceChildren(el("div", { class: "empty", text: "Loading trace…" }));
    const { ok, body } = await getJSON("/api/ui/trace/" + encodeURIComponent(id));
    if (!ok) {
      view.replaceChildren(el("div", { class: "card notice", text: "No trace found for " + id + "." }));
      return;
    }
    const spans = body.spans;
    // Nanosecond strings become numbers relative to the trace's start once (BigInt only here),
    // so sorting and layout work on plain numbers.
    const base = spans.reduce((m, s) => { const v = BigInt(s.start_ns); return v < m ? v : m; }, BigInt(spans[0].start_ns));
    for (const s of spans) { s.t = Number(BigInt(s.start_ns) - base); s.d = Number(s.duration_ns); }
    for (const log of body.logs) log.t = Number(BigInt(log.time_ns) - base);
    const byId = new Map(spans.map((s) => [s.span_id, s]));
    const children = new Map();
    for (const s of spans) {
      const parent = s.parent_id && byId.has(s.parent_id) ? s.parent_id : null;
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(s);
    }
    const ordered = [];
    (function walk(parent, depth) {
      for (const s of (children.get(parent) || []).sort((a, b) => a.t - b.t)) {
        ordered.push([s, depth]);
        walk(s.span_id, depth + 1);
      }
    })(null, 0);
    const total = spans.reduce((m, s) => Math.max(m, s.t + s.d), 0) || 1;
    const logsBySpan = new Map();
    for (const log of body.logs) {
      const key = log.span_id || "";
      if (!logsBySpan.has(key)) logsBySpan.set(key, []);
      logsBySpan.get(key).push(log);
    }
    const services = [...new Set(spans.map((s) => s.service))];
    // In one trace, services get distinct colours in order of appearance.
    const traceColour = (service) => PALETTE[services.indexOf(service) % PALETTE.length];
    const requestId = body.request_ids[0] || "";
    const copy = el("button", { type: "button", class: "copy", text: "Copy request ID",
      onclick: async () => { try { await navigator.clipboard.writeText(requestId); copy.textContent = "Copied"; } catch { copy.textContent = "Copy failed"; } } });
    const head = el("div", { class: "card trace-head" },
      el("h1", {}, spans.find((s) => !s.parent_id || !byId.has(s.parent_id))?.name || spans[0].name),
      el("span", { class: "pill" }, "request ", el("code", { id: "request-id", text: requestId || "—" })), requestId ? copy : null,
      el("span", { class: "mono muted", text: "trace " + body.trace_id }),
      el("span", { text: spans.length + " spans · " + services.length + " services · " + ms(total / 1e6) }),
      el("span", { class: "legend" }, ...services.map((s) => {
        const sw = el("span", { class: "swatch" }); sw.style.background = traceColour(s);
        return el("span", {}, sw, s);
      })));
    const details = el("div", { class: "card", id: "span-details" }, el("div", { class: "empty", text: "Click a span to see its attributes, events, resource and logs." }));
    const rows = [];
    const axis = el("div", { class: "wf-axis" }, ...[0, 0.25, 0.5, 0.75, 1].map((f) => el("span", { text: ms((total * f) / 1e6) })));
    const waterfall = el("div", { class: "waterfall", id: "waterfall" }, axis);
    for (const [s, depth] of ordered) {
      const offset = s.t / total;
      const width = s.d / total;
      const bar = el("div", { class: "wf-bar" + (s.status === "error" ? " error" : ""), title: s.name });
      bar.style.left = (offset * 100).toFixed(3) + "%";
      bar.style.width = Math.max(width * 100, 0.2).toFixed(3) + "%";
      bar.style.background = traceColour(s.service);
      const dur = el("span", { class: "wf-dur", text: ms(Number(s.duration_ns) / 1e6) });
      dur.style.left = Math.min((offset + width) * 100 + 0.5, 92).toFixed(2) + "%";
      const label = el("div", { class: "wf-label" }, el("span", { class: "svc", text: s.service }), s.status === "error" ? el("span", { class: "err", text: "⚠ " }) : null, s.name,
        s.kind === "client" && s.attributes["url.full"] ? el("span", { class: "svc", text: " " + s.attributes["url.full"] }) : null);
      label.style.paddingLeft = (depth * 14 + 4) + "px";
      const row = el("div", { class: "wf-row span-row", "data-span": s.span_id, onclick: () => select(s, row) }, label, el("div", { class: "wf-track" }, bar, dur));
      rows.push(row);
      waterfall.append(row);
      const logs = logsBySpan.get(s.span_id) || [];
      if (logs.length) {
        const block = el("div", { class: "wf-logs", "data-logs-of": s.span_id }, ...logs.map(logLine));
        block.style.paddingLeft = (depth * 14 + 16) + "px";
        waterfall.append(block);
      }
    }
    const orphanLogs = logsBySpan.get("") || [];
    view.replaceChildren(head, el("div", { class: "card" }, waterfall,
      orphanLogs.length ? el("div", {}, el("h2", { text: "Logs without a span" }), ...orphanLogs.map(logLine)) : null), details);
    view.dataset.rendered = String(Math.round(performance.now()));  // when the trace was on screen (tests, benchmarks)

    function descendants(spanId) {
      const out = [spanId];
      for (const c of children.get(spanId) || []) out.push(...descendants(c.span_id));
      return out;
    }
    function select(span, row) {
      for (const r of rows) r.classList.toggle("selected", r === row);
      let withChildren = false;
      const logsBox = el("div");
      const onlyBtn = el("button", { type: "button", class: "on", text: "This span only" });
      const treeBtn = el("button", { type: "button", text: "This span and its children" });
      function showLogs() {
        onlyBtn.classList.toggle("on", !withChildren);
        treeBtn.classList.toggle("on", withChildren);
        const ids = withChildren ? descendants(span.span_id) : [span.span_id];
        const logs = ids.flatMap((i) => logsBySpan.get(i) || []).sort((a, b) => a.t - b.t);
        logsBox.replaceChildren(...(logs.length ? logs.map(logLine) : [el("div", { class: "empty", text: "No log lines." })]));
      }
      onlyBtn.addEventListener("click", () => { withChildren = false; showLogs(); });
      treeBtn.addEventListener("click", () => { withChildren = true; showLogs(); });
      showLogs();
      details.replaceChildren(
        el("h2", {}, span.name),
        el("div", { class: "details" },
          el("div", {}, el("h2", { text: "Attributes" }), kv({ "span.kind": span.kind, "status": span.status + (span.status_message ? " — " + span.status_message : ""), "span_id": span.span_id, ...span.attributes })),
          el("div", {}, el("h2", { text: "Resource" }), kv(span.resource),
            span.events.length ? el("div", {}, el("h2", { text: "Events" }), ...span.events.map((e) => el("div", {}, el("div", { class: "mono", text: clock(e.time_ns) + " " + e.name }), kv(e.attributes)))) : null)),
        el("h2", { text: "Logs" }), el("div", { class: "toggle" }, onlyBtn, treeBtn), logsBox);
    }
  }
  function kv(obj) {
    return el("div", { class: "kv" }, ...Object.entries(obj || {}).flatMap(([k, v]) => {
      const text = typeof v === "string" ? v : JSON.stringify(v);
      return [el("div", { text: k }), text.includes("\n") ? el("div", {}, folded(text)) : el("div", { class: "mono", text })];
    }));
  }
  function folded(text) {
    // A traceback folds to its last line (the exception itself); click to unfold.
    const lines = String(text).trimEnd().split("\n");
    return el("details", { class: "folded" }, el("summary", { class: "mono", text: lines[lines.length - 1] }), el("pre", { text }));
  }
  function logLine(log) {
    const level = String(log.level || "").toUpperCase();
    return el("div", { class: "log" },
      el("span", { class: "mono", text: clock(log.time_ns) }),
      el("span", { class: "lvl-" + level.replace(/[^A-Z]/g, ""), text: level }),
      el("span", { class: "mono", text: log.logger || log.service || "" }),
      el("span", { class: "msg", text: log.message }),
      log.exception ? folded(log.exception) : null);
  }

  // --- endpoints ------------------------------------------------------------------------------
  async function endpointsView() {
    setNav("endpoints");
    stopRefresh();
    const windowSel = el("select", { name: "window" }, ...[["900", "15 min"], ["3600", "1 hour"], ["21600", "6 hours"], ["86400", "24 hours"], ["604800", "7 days"]].map(([v, t]) => el("option", { value: v, text: t })));
    windowSel.value = new URLSearchParams(location.search).get("window") || "3600";
    const tbody = el("tbody");
    const note = el("div", { class: "empty", text: "Loading…" });
    windowSel.addEventListener("change", () => { history.replaceState(null, "", "/endpoints?window=" + windowSel.value); load(); });
    view.replaceChildren(el("div", { class: "filters card" }, el("label", {}, "Window", windowSel)),
      el("div", { class: "card" }, el("table", { id: "endpoints" }, el("thead", {}, el("tr", {}, ...["Service", "Endpoint", "Requests/min", "Errors", "p50", "p95", "p99", "Requests", "p95 over time"].map((h, i) => el("th", { class: i >= 2 && i <= 6 ? "num" : null, text: h })))), tbody), note));
    async function load() {
      const { ok, body } = await getJSON("/api/ui/endpoints?window=" + windowSel.value);
      if (!ok) { note.textContent = body.error || "Could not load endpoints."; return; }
      tbody.replaceChildren(...body.endpoints.map((e) => el("tr", {},
        el("td", { text: e.service }), el("td", {}, link("/?service=" + encodeURIComponent(e.service) + "&route=" + encodeURIComponent(e.name), e.name)),
        el("td", { class: "num", text: e.rate_per_min.toFixed(2) }),
        el("td", { class: "num" + (e.error_rate > 0 ? " err" : ""), text: (e.error_rate * 100).toFixed(1) + "%" }),
        el("td", { class: "num", text: ms(e.p50_ms) }), el("td", { class: "num", text: ms(e.p95_ms) }), el("td", { class: "num", text: ms(e.p99_ms) }),
        el("td", {}, spark(e.series.count, "#2563eb")), el("td", {}, spark(e.series.p95_ms, "#f59e0b")))));
      note.textContent = body.endpoints.length ? "" : "No requests in this window.";
    }
    await load();
  }
  function spark(values, stroke) {
    const w = 120, h = 24;
    const nums = values.map((v) => (v === null ? 0 : v));
    const max = Math.max(...nums, 1e-9);
    const points = nums.map((v, i) => `${((i / Math.max(nums.length - 1, 1)) * w).toFixed(1)},${(h - (v / max) * (h - 2) - 1).toFixed(1)}`).join(" ");
    const node = svg("svg", { class: "spark", width: w, height: h, viewBox: `0 0 ${w} ${h}` });
    node.append(svg("polyline", { points, fill: "none", stroke, "stroke-width": 1.5 }));
    return node;
  }

  // --- routing --------------------------------------------------------------------------------
  function render() {
    const path = location.pathname;
    if (path.startsWith("/trace/")) return traceView(decodeURIComponent(path.slice(7)));
    if (path === "/endpoints") return endpointsView();
    return requestsView();
  }
  document.getElementById("search").addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = document.getElementById("search-input").value.trim();
    if (q) go("/trace/" + encodeURIComponent(q));
  });
  for (const a of document.querySelectorAll("nav a")) {
    a.addEventListener("click", (e) => { e.preventDefault(); go(a.getAttribute("href")); });
  }
  window.addEventListener("popstate", render);
  render();
})();
