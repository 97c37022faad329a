// otel-corr's page. Everything shown comes from spans and log records, which attackers control
// (headers, paths, messages): the DOM is built with text nodes only -- no innerHTML anywhere --
// and the server sends a CSP that forbids inline script and style.
"use strict";
(() => {
  const view = document.getElementById("view");
  // Ten hues apart from one another (no red: red marks errors); colour() picks one per service name.
  const PALETTE = ["#60a5fa", "#34d399", "#f59e0b", "#a78bfa", "#f472b6", "#22d3ee", "#a3e635", "#94a3b8", "#a16207", "#e879f9"];
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
  // The one colour of a service on every view (list, trace, endpoints, map): a hash of its name,
  // so a service keeps its colour across pages, reloads and traces.
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
  function ymd(d) { return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()); }
  function hm(d) { return two(d.getHours()) + ":" + two(d.getMinutes()); }
  function when(ns) {  // a row's time: today's rows show the clock, other days' rows the date too
    const d = nsToDate(ns);
    return ymd(d) === ymd(new Date()) ? clock(ns) : ymd(d) + " " + hm(d) + ":" + two(d.getSeconds());
  }
  function localInput(date) { return ymd(date) + "T" + hm(date); }  // the value of an <input type=datetime-local>
  function count(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }
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
  const RANGES = [["", "any time"], ["15m", "last 15 min"], ["1h", "last 1 hour"], ["6h", "last 6 hours"], ["24h", "last 24 hours"], ["7d", "last 7 days"], ["custom", "custom…"]];
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
    // The time range lives in the URL (lookback=1h, or start/end in RFC 3339), so a link shares it.
    const range = el("select", { name: "range" }, ...RANGES.map(([v, t]) => el("option", { value: v, text: t })));
    const from = el("input", { name: "from", type: "datetime-local" });
    const to = el("input", { name: "to", type: "datetime-local" });
    if (params.get("start") || params.get("end")) {
      range.value = "custom";
      for (const [input, key] of [[from, "start"], [to, "end"]]) {
        const date = new Date(params.get(key) || "");
        if (!isNaN(date)) input.value = localInput(date);
      }
    } else {
      range.value = RANGES.some(([v]) => v && v === params.get("lookback")) ? params.get("lookback") : "";
    }
    const custom = el("span", { class: "custom-range" }, el("label", {}, "From", from), el("label", {}, "To", to));
    custom.hidden = range.value !== "custom";
    range.addEventListener("change", () => { custom.hidden = range.value !== "custom"; if (range.value !== "custom") apply(); });
    const auto = el("input", { type: "checkbox", checked: "checked" });
    const tbody = el("tbody");
    const note = el("div", { class: "empty", text: "Loading…" });
    const form = el("form", { class: "filters card", onsubmit: (e) => { e.preventDefault(); apply(); } },
      el("label", {}, "Time range", range), custom,
      el("label", {}, "Service", service), el("label", {}, "Route", route), el("label", {}, "Status", status),
      el("label", {}, "Min duration (ms)", minMs), el("button", { type: "submit", text: "Filter" }),
      el("label", { class: "auto" }, "Auto-refresh", auto));
    const table = el("table", { id: "requests" },
      el("thead", {}, el("tr", {}, ...["Time", "Service", "Request", "Status", "Duration", "Request ID"]
        .map((h, i) => el("th", { class: i === 4 ? "num" : null, text: h })))), tbody);
    const plot = el("div", { class: "scatter-box", id: "scatter" });
    const plotCard = el("div", { class: "card" }, el("h2", { text: "Latency over time" }), plot);
    view.replaceChildren(form, plotCard, el("div", { class: "card" }, el("div", { class: "table-scroll" }, table), note));
    let knownServices = [];
    let shown = null;  // the rows on screen: a refresh that changes nothing keeps them (and hover, focus)

    function apply() {
      const q = new URLSearchParams();
      if (range.value === "custom") {
        for (const [input, key] of [[from, "start"], [to, "end"]]) {
          const date = new Date(input.value);
          if (input.value && !isNaN(date)) q.set(key, date.toISOString());
        }
      } else if (range.value) {
        q.set("lookback", range.value);
      }
      for (const [k, input] of [["service", service], ["route", route], ["status", status], ["min_ms", minMs]]) {
        if (input.value) q.set(k, input.value);
      }
      history.replaceState(null, "", "/" + (q.toString() ? "?" + q : ""));
      load();
    }
    async function load() {
      const q = new URLSearchParams(location.search);
      const { ok, body } = await getJSON("/api/ui/requests?" + q);
      if (!ok) {
        note.textContent = body.error || "Could not load requests.";
        tbody.replaceChildren();
        shown = null;
        plotCard.hidden = true;
        return;
      }
      if (JSON.stringify(body.services) !== JSON.stringify(knownServices)) {
        knownServices = body.services || [];
        const current = q.get("service") || "";
        service.replaceChildren(el("option", { value: "", text: "all services" }),
          ...knownServices.map((s) => el("option", { value: s, text: s })));
        service.value = current;
      }
      note.textContent = body.rows.length ? ""
        : q.get("lookback") || q.get("start") || q.get("end") ? "No requests in this time range."
          : "No requests yet. Point OTEL_EXPORTER_OTLP_ENDPOINT at this server's OTLP port.";
      const rowsKey = JSON.stringify(body.rows);
      if (rowsKey === shown) return;
      shown = rowsKey;
      tbody.replaceChildren(...body.rows.map((r) => {
        const path = "/trace/" + encodeURIComponent(r.trace_id);
        const sw = el("span", { class: "swatch" });
        sw.style.background = colour(r.service);
        return el("tr", { class: "row", "data-trace": r.trace_id, onclick: () => go(path) },
          el("td", { class: "mono when", title: nsToDate(r.time_ns).toString(), text: when(r.time_ns) }),
          el("td", {}, sw, r.service),
          el("td", {}, link(path, r.name)),
          el("td", { class: statusClass(r.status) + (r.error ? " err" : ""), text: r.status ?? (r.error ? "error" : "") }),
          el("td", { class: "num", text: ms(r.duration_ms) }),
          el("td", { class: "mono", text: r.request_id || "" }));
      }));
      plotCard.hidden = !body.rows.length;
      plot.replaceChildren(...(body.rows.length ? [scatter(body.rows, plot.clientWidth || 800)] : []));
    }
    await load();
    stopRefresh();
    refreshTimer = setInterval(() => { if (auto.checked && !document.hidden) load(); }, 3000);
  }

  // Latency over time of the listed requests: x = start time, y = duration, errors in red.
  // Hovering or focusing a dot shows its values; clicking it (or Enter) opens its trace.
  function scatter(rows, width) {
    const w = Math.max(280, width), h = 180, left = 62, right = 14, top = 22, bottom = 40;
    const times = rows.map((r) => Number(BigInt(r.time_ns) / 1000000n));
    let t0 = Math.min(...times), t1 = Math.max(...times);
    if (t1 - t0 < 1000) { t0 -= 30000; t1 += 30000; }  // one request (or a burst): a minute around it
    const pad = (t1 - t0) * 0.03;
    t0 -= pad; t1 += pad;
    const yMax = Math.max(...rows.map((r) => r.duration_ms), 0.001) * 1.1;
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (w - left - right);
    const y = (v) => h - bottom - (v / yMax) * (h - top - bottom);
    const node = svg("svg", { class: "scatter", width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "Latency over time of the listed requests" });
    const axis = svg("g", { class: "axis" });
    axis.append(svg("line", { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom }), svg("line", { x1: left, y1: top, x2: left, y2: h - bottom }));
    const text = (attrs, value, tag = "text") => { const t = svg(tag, attrs); t.textContent = value; return t; };
    for (const f of [0, 0.5, 1]) {
      const v = (yMax / 1.1) * f;
      axis.append(svg("line", { class: "grid", x1: left, y1: y(v), x2: w - right, y2: y(v) }),
        text({ x: left - 6, y: y(v) + 4, "text-anchor": "end" }, ms(v)));
    }
    const spansDays = ymd(new Date(t0)) !== ymd(new Date(t1));
    const ticks = w < 500 ? 3 : 5;
    for (let i = 0; i < ticks; i++) {
      const t = t0 + ((t1 - t0) * (i + 0.5)) / ticks;
      const d = new Date(t);
      axis.append(svg("line", { x1: x(t), y1: h - bottom, x2: x(t), y2: h - bottom + 4 }),
        text({ x: x(t), y: h - bottom + 16, "text-anchor": "middle" }, (spansDays ? (d.getMonth() + 1) + "/" + d.getDate() + " " : "") + hm(d) + (spansDays ? "" : ":" + two(d.getSeconds()))));
    }
    axis.append(text({ class: "axis-title", x: (left + w - right) / 2, y: h - 4, "text-anchor": "middle" }, "time (start of request)"),
      text({ class: "axis-title", x: 4, y: 12, "text-anchor": "start" }, "duration ↑"));
    const readout = text({ class: "scatter-readout", x: w - right, y: 14, "text-anchor": "end" }, "");
    node.append(axis, readout);
    rows.forEach((r, i) => {
      const label = r.name + " · " + ms(r.duration_ms) + " · " + when(r.time_ns) + " · " + r.service + (r.error ? " · error" : "");
      const path = "/trace/" + encodeURIComponent(r.trace_id);
      const dot = svg("circle", { class: "dot" + (r.error ? " error" : ""), cx: x(times[i]).toFixed(1), cy: y(r.duration_ms).toFixed(1), r: 4.5,
        tabindex: 0, role: "link", "aria-label": label, "data-trace": r.trace_id });
      dot.append(text({}, label, "title"));  // SVG's own tooltip (a <title> child is not drawn)
      const show = () => { readout.textContent = label; };
      dot.addEventListener("mouseenter", show);
      dot.addEventListener("focus", show);
      dot.addEventListener("click", () => go(path));
      dot.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(path); } });
      node.append(dot);
    });
    return node;
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
      s.up = parent;
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
    const requestId = body.request_ids[0] || "";
    const copy = el("button", { type: "button", class: "copy", text: "Copy request ID",
      onclick: async () => { try { await navigator.clipboard.writeText(requestId); copy.textContent = "Copied"; } catch { copy.textContent = "Copy failed"; } } });
    const head = el("div", { class: "card trace-head" },
      el("h1", {}, spans.find((s) => !s.parent_id || !byId.has(s.parent_id))?.name || spans[0].name),
      el("span", { class: "pill" }, "request ", el("code", { id: "request-id", text: requestId || "—" })), requestId ? copy : null,
      el("span", { class: "mono muted", text: "trace " + body.trace_id }),
      el("span", { id: "trace-summary", text: count(spans.length, "span") + " · " + count(services.length, "service") + " · " + ms(total / 1e6) }),
      el("span", { class: "legend" }, ...services.map((s) => {
        const sw = el("span", { class: "swatch" }); sw.style.background = colour(s);
        return el("span", {}, sw, s);
      })));
    const details = el("div", { class: "card", id: "span-details" }, el("div", { class: "empty", text: "Click a span to see its attributes, events, resource and logs." }));
    const rows = [];
    const entries = [];  // [span, row, its log block or null], in waterfall order
    const collapsed = new Set();
    const axis = el("div", { class: "wf-axis" }, ...[0, 0.25, 0.5, 0.75, 1].map((f) => el("span", { text: ms((total * f) / 1e6) })));
    const waterfall = el("div", { class: "waterfall", id: "waterfall" }, axis);
    for (const [s, depth] of ordered) {
      const offset = s.t / total;
      const width = s.d / total;
      const bar = el("div", { class: "wf-bar" + (s.status === "error" ? " error" : ""), title: s.name });
      bar.style.left = (offset * 100).toFixed(3) + "%";
      bar.style.width = Math.max(width * 100, 0.2).toFixed(3) + "%";
      bar.style.background = colour(s.service);
      // The duration has its own column beside the track: never drawn over a bar.
      const dur = el("span", { class: "wf-dur", text: ms(Number(s.duration_ns) / 1e6) });
      const hidden = descendants(s.span_id).length - 1;
      const toggle = hidden ? el("button", { type: "button", class: "wf-toggle", "aria-expanded": "true", "data-toggle": s.span_id,
        "aria-label": "Hide the " + count(hidden, "span") + " under " + s.name, text: "▾",
        onclick: (e) => { e.stopPropagation(); fold(s.span_id, toggle, hidden); } }) : el("span", { class: "wf-toggle-space" });
      const label = el("div", { class: "wf-label" }, toggle, el("span", { class: "svc", text: s.service }), s.status === "error" ? el("span", { class: "err", text: "⚠ " }) : null, s.name,
        s.kind === "client" && s.attributes["url.full"] ? el("span", { class: "svc", text: " " + s.attributes["url.full"] }) : null);
      label.style.paddingLeft = (depth * 14 + 2) + "px";
      const row = el("div", { class: "wf-row span-row", "data-span": s.span_id, onclick: () => select(s, row) }, label, el("div", { class: "wf-track" }, bar), dur);
      rows.push(row);
      waterfall.append(row);
      const logs = logsBySpan.get(s.span_id) || [];
      let block = null;
      if (logs.length) {
        block = el("div", { class: "wf-logs", "data-logs-of": s.span_id }, ...logs.map(logLine));
        block.style.paddingLeft = (depth * 14 + 16) + "px";
        waterfall.append(block);
      }
      entries.push([s, row, block]);
    }
    const orphanLogs = logsBySpan.get("") || [];
    view.replaceChildren(head, el("div", { class: "card" }, waterfall,
      orphanLogs.length ? el("div", {}, el("h2", { text: "Logs without a span" }), ...orphanLogs.map(logLine)) : null), details);
    view.dataset.rendered = String(Math.round(performance.now()));  // when the trace was on screen (tests, benchmarks)

    function fold(spanId, button, hidden) {
      const open = collapsed.has(spanId);
      if (open) collapsed.delete(spanId); else collapsed.add(spanId);
      button.setAttribute("aria-expanded", String(open));
      button.textContent = open ? "▾" : "▸ " + hidden + " hidden";
      button.setAttribute("aria-label", (open ? "Hide the " : "Show the ") + count(hidden, "span") + " under " + byId.get(spanId).name);
      // Parents come before their children in the waterfall: one pass decides every row.
      const gone = new Set();
      for (const [s, row, block] of entries) {
        const hide = s.up !== null && (gone.has(s.up) || collapsed.has(s.up));
        if (hide) gone.add(s.span_id);
        row.hidden = hide;
        if (block) block.hidden = hide;
      }
    }
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
      el("span", { class: "mono when", text: clock(log.time_ns) }),
      el("span", { class: "lvl lvl-" + level.replace(/[^A-Z]/g, ""), text: level }),
      el("span", { class: "mono logger", text: log.logger || log.service || "" }),
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
