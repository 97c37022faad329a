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
  // `primary`: the view's own read across shards (its list, search, endpoints, map): a whole answer
  // clears the banner.  Any answer that lacks a shard (the header every face sends) raises it.
  async function getJSON(url, primary = false) {
    const response = await fetch(url, { headers: { accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    const warning = response.headers.get("x-otel-corr-missing") || (body && typeof body.warning === "string" ? body.warning : "");
    if (warning) partial(warning);
    else if (primary) partial("");
    return { ok: response.ok, status: response.status, body };
  }
  // A ClickHouse shard that did not answer: the banner says results may be missing until an answer is whole.
  function partial(warning) {
    const banner = document.getElementById("partial");
    if (!banner) return;
    banner.textContent = warning ? "Partial results: " + bounded(warning, 400) : "";
    banner.hidden = !warning;
  }
  function go(path) { history.pushState(null, "", path); render(); }
  function link(path, ...children) { return linkWith(path, {}, ...children); }
  function linkWith(path, props, ...children) {
    return el("a", { ...props, href: path, onclick: (e) => { if (!e.metaKey && !e.ctrlKey) { e.preventDefault(); e.stopPropagation(); go(path); } } }, ...children);
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
    // With ?q= the list is the search's results (the box's text, in this time range and service).
    const query = (params.get("q") || "").trim();
    searchScope = scopeOf(params);
    document.getElementById("search-input").value = query;
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
    // A search is narrowed by the time range and the service; route, status and duration are part of its
    // language (status:5xx duration>500ms), so their fields are the list's only.
    const listOnly = (label) => (query ? null : label);
    const form = el("form", { class: "filters card", onsubmit: (e) => { e.preventDefault(); apply(); } },
      el("label", {}, "Time range", range), custom,
      el("label", {}, "Service", service), listOnly(el("label", {}, "Route", route)), listOnly(el("label", {}, "Status", status)),
      listOnly(el("label", {}, "Min duration (ms)", minMs)), el("button", { type: "submit", text: query ? "Search" : "Filter" }),
      listOnly(el("label", { class: "auto" }, "Auto-refresh", auto)));
    const table = el("table", { id: query ? "search-results" : "requests" },
      el("thead", {}, el("tr", {}, ...["Time", "Service", "Request", "Status", "Duration", "Request ID"]
        .map((h, i) => el("th", { class: i === 4 ? "num" : null, text: h })))), tbody);
    const plot = el("div", { class: "scatter-box", id: "scatter" });
    const plotCard = el("div", { class: "card" }, el("h2", { text: "Latency over time" }), plot);
    const searchHead = query ? el("div", { class: "search-head" },
      el("h2", {}, "Requests matching ", el("code", { id: "search-query", text: bounded(query, 200) })),
      el("span", { id: "search-count", class: "muted" }),
      link("/" + (searchScope.toString() ? "?" + searchScope : ""), "clear search")) : null;
    if (query) plotCard.hidden = true;
    view.replaceChildren(form, plotCard, el("div", { class: "card" }, searchHead, el("div", { class: "table-scroll" }, table), note));
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
      const fields = query ? [["service", service]] : [["service", service], ["route", route], ["status", status], ["min_ms", minMs]];
      for (const [k, input] of fields) {
        if (input.value) q.set(k, input.value);
      }
      if (query) q.set("q", query);
      searchScope = scopeOf(q);
      history.replaceState(null, "", "/" + (q.toString() ? "?" + q : ""));
      load();
    }
    async function load() {
      const q = new URLSearchParams(location.search);
      if (query) return loadResults(q);
      const { ok, body } = await getJSON("/api/ui/requests?" + q, true);
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
    // The search's results: each request with the line(s) that matched under it. An ID that names a
    // trace opens it (replacing this URL, so Back does not come here to be sent on again).
    async function loadResults(q) {
      const api = new URLSearchParams(scopeOf(q));
      api.set("q", query);
      note.textContent = "Searching…";
      note.hidden = false;
      const asked = location.href;
      let answer;
      try {
        answer = await getJSON("/api/search?" + api, true);
      } catch (err) {
        answer = { ok: false, status: 0, body: { error: "the server did not answer (" + err.message + ")" } };
      }
      if (location.href !== asked) return;  // another search (or page) since: this answer is stale
      const { ok, status, body } = answer;
      if (ok && body.opened) {
        const best = (body.results || []).find((r) => r.trace_id === body.opened);
        history.replaceState(null, "", "/trace/" + encodeURIComponent(body.opened) + (best && best.matches && best.matches[0] ? fragment(best.matches[0]) : ""));
        return render();
      }
      if (!ok) {
        // {"error": ...} (the search's 400), or Jaeger's envelope (a 503 when the query runs out of time).
        const reason = bounded(typeof body.error === "string" ? body.error
          : (Array.isArray(body.errors) && body.errors[0] && typeof body.errors[0].msg === "string" ? body.errors[0].msg : "HTTP " + status), 300);
        if (status === 400) searchMessage(reason);
        note.textContent = status === 400 ? "The query could not be read: fix it in the box above." : "The search failed: " + reason;
        return;
      }
      searchMessage("");
      if (JSON.stringify(knownServices) === "[]") services();
      const results = body.results || [];
      document.getElementById("search-count").textContent = count(results.length, "request") + (body.complete === false ? " (the search ran out of time: there may be more)" : "");
      note.replaceChildren(...(results.length ? [] : emptyHelp(q)));
      note.hidden = results.length > 0;
      tbody.replaceChildren(...results.flatMap(resultRows));
    }
    async function services() {
      const { ok, body } = await getJSON("/api/services");
      if (!ok || !Array.isArray(body.data)) return;
      knownServices = body.data.map(String).sort();
      service.replaceChildren(el("option", { value: "", text: "all services" }), ...knownServices.map((s) => el("option", { value: s, text: s })));
      service.value = params.get("service") || "";
    }
    function emptyHelp(q) {
      const narrowed = q.get("lookback") || q.get("start") || q.get("end") || q.get("service");
      return [el("div", { text: "No request matches " + bounded(query, 200) + (narrowed ? " in this time range and service." : ".") }),
        el("div", { class: "search-help" }, "Widen it: ", narrowed ? "choose a longer time range (or any time) and all services, or " : "",
          "use fewer words (every word must be found), or a prefix such as ", el("code", { text: "pay*" }), ". Examples: ",
          el("code", { text: "GatewayError" }), " ", el("code", { text: '"payment declined"' }), " ", el("code", { text: "user.id=42" }), " ",
          el("code", { text: "status:5xx duration>500ms" }), ", or a request ID.")];
    }
    await load();
    stopRefresh();
    if (!query) refreshTimer = setInterval(() => { if (auto.checked && !document.hidden) load(); }, 3000);
  }

  // --- search ---------------------------------------------------------------------------------
  // The time range and service the box searches in: the requests list's, kept while you look at a trace.
  let searchScope = new URLSearchParams();
  function scopeOf(params) {
    const scope = new URLSearchParams();
    for (const key of ["lookback", "start", "end", "service"]) if (params.get(key)) scope.set(key, params.get(key));
    return scope;
  }
  function bounded(text, n) { const chars = Array.from(String(text)); return chars.length > n ? chars.slice(0, n).join("") + "…" : chars.join(""); }
  function searchMessage(text) {
    const box = document.getElementById("search-message");
    box.textContent = text;
    box.hidden = !text;
    document.getElementById("search-input").setAttribute("aria-invalid", text ? "true" : "false");
  }
  const MATCH_KINDS = { log: "log", event: "event", attribute: "attribute", span: "span", id: "ID" };
  // Where opening a match lands on the trace page: its span, and the log line or event by its time.
  function fragment(match) {
    const f = new URLSearchParams();
    if (typeof match.span_id === "string" && /^[0-9a-f]{16}$/.test(match.span_id)) f.set("span", match.span_id);
    // A pasted span ID opens its trace at that span.
    else if (match.kind === "id" && /^[0-9a-fA-F]{16}$/.test(String(match.text))) f.set("span", match.text.toLowerCase());
    if ((match.kind === "log" || match.kind === "event") && /^[0-9]{1,20}$/.test(String(match.time_ns))) f.set(match.kind, String(match.time_ns));
    return f.toString() ? "#" + f : "";
  }
  // A matched line as text nodes and <mark> elements. The highlights are [start, end) offsets in code
  // points (Python's string indices); a JS string counts UTF-16 units, so the text is split first. A long
  // line is shown around its first highlight.
  const SHOWN = 400;
  function marked(text, highlights) {
    const chars = Array.from(String(text ?? ""));
    const ranges = (Array.isArray(highlights) ? highlights : [])
      .filter((r) => Array.isArray(r) && Number.isInteger(r[0]) && Number.isInteger(r[1]) && r[0] >= 0 && r[0] < r[1] && r[1] <= chars.length)
      .sort((a, b) => a[0] - b[0]);
    let from = 0, to = chars.length;
    if (chars.length > SHOWN) {
      from = Math.max(0, Math.min((ranges.length ? ranges[0][0] : 0) - 60, chars.length - SHOWN));
      to = from + SHOWN;
    }
    const out = from > 0 ? ["…"] : [];
    let at = from;
    for (const [start, end] of ranges) {
      const a = Math.max(start, at), b = Math.min(end, to);
      if (a >= b) continue;
      if (a > at) out.push(chars.slice(at, a).join(""));
      out.push(el("mark", { text: chars.slice(a, b).join("") }));
      at = b;
    }
    if (at < to) out.push(chars.slice(at, to).join(""));
    if (to < chars.length) out.push("…");
    return out;
  }
  function resultRows(r) {
    const matches = Array.isArray(r.matches) ? r.matches : [];
    const trace = "/trace/" + encodeURIComponent(r.trace_id);
    const path = trace + (matches.length ? fragment(matches[0]) : "");
    const sw = el("span", { class: "swatch" });
    sw.style.background = colour(r.service);
    const row = el("tr", { class: "row result-row", "data-trace": r.trace_id, onclick: () => go(path) },
      el("td", { class: "mono when", title: nsToDate(r.time_ns).toString(), text: when(r.time_ns) }),
      el("td", {}, sw, r.service),
      el("td", {}, link(path, r.method && r.route ? r.method + " " + r.route : r.name)),
      el("td", { class: statusClass(r.status) + (r.error ? " err" : ""), text: r.status ?? (r.error ? "error" : "") }),
      el("td", { class: "num", text: ms(r.duration_ms) }),
      el("td", { class: "mono", text: r.request_id || "" }));
    const lines = el("tr", { class: "result-matches", "data-trace": r.trace_id }, el("td", { colspan: 6 },
      ...matches.map((m) => el("div", { class: "match", "data-kind": m.kind },
        el("span", { class: "kind", text: MATCH_KINDS[m.kind] || "match" }),
        linkWith(trace + fragment(m), { class: "text mono" }, ...marked(m.text, m.highlights))))));
    return matches.length ? [row, lines] : [row];
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
    // lean=1: a big trace comes without its spans' details, each fetched when the span is clicked.
    const { ok, body } = await getJSON("/api/ui/trace/" + encodeURIComponent(id) + "?lean=1");
    if (!ok) {
      view.replaceChildren(el("div", { class: "card notice", text: "No trace found for " + id + "." }));
      return;
    }
    const spans = body.spans;
    const lean = body.lean === true;
    if (lean) for (const s of spans) { s.events = []; s.resource = {}; s.status_message = ""; }
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
    // Depth first, children by start time; iterative, so a trace thousands of spans deep cannot
    // overflow the stack.
    const ordered = [];
    for (const kids of children.values()) kids.sort((a, b) => a.t - b.t);
    const stack = (children.get(null) || []).map((s) => [s, 0]).reverse();
    while (stack.length) {
      const [s, depth] = stack.pop();
      ordered.push([s, depth]);
      const kids = children.get(s.span_id) || [];
      for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i], depth + 1]);
    }
    // Each span's subtree size in one pass from the leaves up (children come after their parent).
    const subtree = new Map();
    for (let i = ordered.length - 1; i >= 0; i--) {
      const s = ordered[i][0];
      subtree.set(s.span_id, (subtree.get(s.span_id) || 0) + 1);
      if (s.up !== null) subtree.set(s.up, (subtree.get(s.up) || 0) + subtree.get(s.span_id));
    }
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
      const hidden = subtree.get(s.span_id) - 1;
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
    const whySlot = el("div", { id: "why-slot" });
    view.replaceChildren(head, whySlot, el("div", { class: "card" }, waterfall,
      orphanLogs.length ? el("div", {}, el("h2", { text: "Logs without a span" }), ...orphanLogs.map(logLine)) : null), details);
    land();
    view.dataset.rendered = String(Math.round(performance.now()));  // when the trace was on screen (tests, benchmarks)
    // The "Why" panel comes after the waterfall is usable: a slow or failed analysis never holds it up.
    // A cause opens its span as a search result does: #span=<id> in the URL, then land() selects it.
    loadWhy(body.trace_id, whySlot, (spanId) => {
      history.pushState(null, "", location.pathname + location.search + "#span=" + spanId);
      land();
    });

    // A search result opens the trace at what matched: #span=<id> selects that span and shows its details,
    // log=<time_ns> marks the log line, event=<time_ns> the span's event; each is scrolled into view.
    function land() {
      const f = new URLSearchParams(location.hash.slice(1));
      const spanId = f.get("span"), logTime = f.get("log"), eventTime = f.get("event");
      const entry = spanId ? entries.find(([s]) => s.span_id === spanId) : null;
      // A span inside a folded subtree is unfolded into view first: selecting a hidden row shows nothing.
      for (let up = entry ? entry[0].up : null; up !== null && up !== undefined; up = byId.has(up) ? byId.get(up).up : null) {
        if (!collapsed.has(up)) continue;
        const button = waterfall.querySelector('[data-toggle="' + CSS.escape(up) + '"]');
        if (button) fold(up, button, subtree.get(up) - 1);
      }
      if (entry) select(entry[0], entry[1], eventTime);
      let target = entry ? entry[1] : null;
      if (logTime) {
        const where = entry && entry[2] ? entry[2] : waterfall.parentElement;
        const line = [...where.querySelectorAll(".log")].find((n) => n.dataset.time === logTime);
        if (line) { line.classList.add("selected"); target = line; }
      }
      if (eventTime && entry) {  // the event by its time, else the span's events (the match is one of them)
        const events = [...details.querySelectorAll(".event")];
        target = events.find((n) => n.dataset.time === eventTime) || events[0] || target;
      }
      if (target) target.scrollIntoView({ block: "center" });
    }

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
    function descendants(spanId) {  // the span and everything under it, iteratively
      const out = [];
      const todo = [spanId];
      while (todo.length) {
        const id = todo.pop();
        out.push(id);
        for (const c of children.get(id) || []) todo.push(c.span_id);
      }
      return out;
    }
    function select(span, row, event) {
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
      const info = el("div", { class: "details" });
      const fill = () => info.replaceChildren(
        el("div", {}, el("h2", { text: "Attributes" }), kv({ "span.kind": span.kind, "status": span.status + (span.status_message ? " — " + span.status_message : ""), "span_id": span.span_id, ...span.attributes })),
        el("div", {}, el("h2", { text: "Resource" }), kv(span.resource),
          span.events.length ? el("div", {}, el("h2", { text: "Events" }), ...span.events.map((e) => el("div", { class: "event" + (e.time_ns === event ? " selected" : ""), "data-time": e.time_ns },
            el("div", { class: "mono", text: clock(e.time_ns) + " " + e.name }), kv(e.attributes)))) : null));
      if (lean && !span.full) {
        info.replaceChildren(el("div", { class: "empty", text: "Reading the span's attributes…" }));
        getJSON("/api/ui/span/" + body.trace_id + "/" + span.span_id).then(({ ok: found, body: full }) => {
          if (!details.contains(info)) return;  // another span was selected meanwhile
          if (!found || !full || typeof full !== "object") { info.replaceChildren(el("div", { class: "empty", text: "The span's attributes could not be read." })); return; }
          span.attributes = asObj(full.attributes); span.events = asList(full.events); span.resource = asObj(full.resource);
          span.status_message = String(full.status_message ?? ""); span.full = true;
          fill();
          const marked = event ? info.querySelector(".event.selected") : null;  // a search result's event
          if (marked) marked.scrollIntoView({ block: "center" });
        }, () => { if (details.contains(info)) info.replaceChildren(el("div", { class: "empty", text: "The span's attributes could not be read." })); });
      } else fill();
      details.replaceChildren(el("h2", {}, span.name), info,
        el("h2", { text: "Logs" }), el("div", { class: "toggle" }, onlyBtn, treeBtn), logsBox);
    }
  }
  // --- why was it slow: the ranked causes of GET /api/ui/why/<id> above the waterfall --------------------
  const WHY_KINDS = { error: "error", untraced: "untraced", slow: "slow", repeated: "repeated", retried: "retried", after_response: "background" };
  const SPAN_ID = /^[0-9a-f]{16}$/;
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  // A share of the request; past the whole (work after the response), how many times it.
  const share = (v) => (num(v) === null ? "?" : v > 1 ? v.toFixed(v >= 10 ? 0 : 1) + "×" : Math.round(v * 100) + "%");
  const msOr = (v) => (num(v) === null ? "? ms" : ms(v));
  const asList = (v) => (Array.isArray(v) ? v : []);
  const asObj = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v : {});
  async function loadWhy(traceId, slot, open) {
    let answer;
    try {
      answer = await getJSON("/api/ui/why/" + encodeURIComponent(traceId));
    } catch {
      answer = { ok: false, status: 0, body: {} };
    }
    if (!slot.isConnected) return;  // another view is on screen by now
    if (!answer.ok || !answer.body || typeof answer.body.verdict !== "object" || answer.body.verdict === null) {
      const reason = typeof answer.body?.error === "string" ? ": " + bounded(answer.body.error, 200) : "";
      slot.replaceChildren(el("div", { class: "card why-note", id: "why", role: "status",
        text: "Why: no analysis for this trace (" + (answer.status ? "HTTP " + answer.status : "no answer") + reason + "). The waterfall below is complete." }));
      return;
    }
    try {
      slot.replaceChildren(whyPanel(answer.body, open));
    } catch (error) {  // a malformed answer: one line, and the trace stays usable
      slot.replaceChildren(el("div", { class: "card why-note", id: "why", role: "status", text: "Why: the analysis could not be shown (" + bounded(String(error), 200) + ")." }));
    }
  }
  function whyPanel(w, open) {
    const spanLink = (id, props, ...children) => (typeof id === "string" && SPAN_ID.test(id)
      ? el("a", { ...props, href: "#span=" + id, "data-span": id, onclick: (e) => { if (!e.metaKey && !e.ctrlKey) { e.preventDefault(); open(id); } } }, ...children)
      : el("span", props, ...children));
    const named = (part) => { part = asObj(part); return String(part.name ?? "?") + (part.service ? " (" + part.service + ")" : ""); };
    const alarming = w.verdict.alarming === true;
    const causes = asList(w.causes).slice(0, 5).map(asObj);
    const items = causes.map((c) => {
      const kind = WHY_KINDS[c.kind] || String(c.kind ?? "?");
      const more = [];
      const gap = asObj(c.gap);
      if (c.kind === "untraced" && (gap.before || gap.after)) {
        const side = (b) => {
          b = asObj(b);
          const what = b.what === "log" ? "log line" : b.what === "span_start" ? "start of" : b.what === "span_end" ? "end of" : "";
          const when = /^[0-9]{1,20}$/.test(String(b.time_ns)) ? clock(b.time_ns) + " " : "";
          return el("span", { class: "why-bracket" }, el("span", { class: "mono muted", text: when }), what + " ", el("q", { text: bounded(b.text ?? "?", 200) }));
        };
        more.push(el("div", { class: "why-gap" }, "between ", side(gap.before), " and ", side(gap.after)));
      }
      const error = asObj(c.error);
      if (c.kind === "error" && (error.type || error.message)) {
        const chain = asList(error.chain).map(asObj);
        more.push(el("div", { class: "why-error" },
          el("div", { class: "why-exception" }, el("strong", { text: bounded(error.type ?? "error", 120) }), error.message ? ": " + bounded(error.message, 400) : ""),
          asList(error.frames).length ? el("pre", { class: "why-frames", text: asList(error.frames).slice(-3).map((f) => String(f)).join("\n") }) : null,
          chain.length ? el("div", { class: "why-chain" }, "chain: ", ...chain.flatMap((link, i) => [i ? " ← " : null, spanLink(link.span_id, {}, named(link))])) : null));
      }
      const repeat = asObj(c.repeat);
      if ((c.kind === "repeated" || c.kind === "retried") && repeat.name !== undefined) {
        more.push(el("div", { class: "why-repeat", text: (num(repeat.count) ?? "?") + " × " + bounded(repeat.name, 200) + ", " + msOr(repeat.total_ms) + " in all" + (num(repeat.failed) ? ", " + repeat.failed + " failed" : "") }));
      }
      return el("li", { class: "why-cause", "data-kind": String(c.kind ?? ""), "data-rank": String(c.rank ?? "") },
        spanLink(c.span_id, { class: "why-head" },
          el("span", { class: "why-kind", text: kind }),
          el("span", { class: "why-ms num", text: msOr(c.ms) }),
          el("span", { class: "why-share num", text: share(c.share) }),
          el("span", { class: "why-title", text: bounded(c.title ?? named(c), 200) })),
        ...more);
    });
    const path = asList(w.critical_path).map(asObj).sort((a, b) => (num(b.self_ms) ?? 0) - (num(a.self_ms) ?? 0));
    const critical = path.length ? el("div", { class: "why-line why-critical" }, el("span", { class: "why-label", text: "Critical path, by self time" }),
      ...path.slice(0, 3).flatMap((p, i) => [i ? " · " : null, spanLink(p.span_id, {}, named(p) + " " + msOr(p.self_ms))]),
      path.length > 3 ? el("span", { class: "muted", text: " (+" + (path.length - 3) + " more)" }) : null) : null;
    let normal;
    if (w.normal && typeof w.normal === "object") {
      const n = w.normal;
      const windows = asList(n.windows).map(asObj).map((x) => (x.enough === false && num(x.count) !== null) ? "only " + x.count + " to compare in the last " + String(x.window ?? "?") : (num(x.percentile) === null ? "?" : "p" + x.percentile.toFixed(1)) + (num(x.count) === null ? "" : " of " + (x.sampled === true ? "the newest " : "") + x.count.toLocaleString("en")) + " in the last " + String(x.window ?? "?"));
      const median = asList(n.windows).map(asObj).map((x) => num(x.median_ms)).find((x) => x !== null);
      const diff = asObj(asList(n.differences)[0]);
      const typical = asObj(n.typical);
      normal = el("div", { class: "why-line why-normal" }, el("span", { class: "why-label", text: "Against normal" }),
        windows.join(", ") || "?", median !== undefined ? " · median " + ms(median) : "",
        diff.change ? el("span", {}, " · most different: " + String(diff.change) + " ",
          spanLink(diff.span_id, {}, named(diff)), (num(diff.count) !== null && num(diff.typical_count) !== null && diff.count !== diff.typical_count ? " ×" + diff.count + " (typically ×" + diff.typical_count + ")" : "") + ", " + (num(diff.diff_ms) >= 0 ? "+" : "") + msOr(diff.diff_ms)) : null,
        typeof typical.trace_id === "string" && /^[0-9a-f]{32}$/.test(typical.trace_id) ? el("span", {}, " · ", link("/trace/" + typical.trace_id, "a typical one (" + msOr(typical.duration_ms) + ")")) : null);
    } else {
      normal = el("div", { class: "why-line why-normal" }, el("span", { class: "why-label", text: "Against normal" }), el("span", { class: "muted", text: "no earlier requests of this endpoint to compare with" }));
    }
    return el("details", { class: "card why " + (alarming ? "why-alarming" : "why-calm"), id: "why", open: alarming },
      el("summary", {}, el("span", { class: "why-label", text: "Why" }), el("span", { class: "why-headline", text: bounded(w.verdict.headline ?? "?", 200) })),
      items.length ? el("ol", { class: "why-causes" }, ...items) : el("div", { class: "muted why-none", text: "No cause stands out." }),
      critical, normal);
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
    return el("div", { class: "log", "data-time": log.time_ns },
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
    if (!windowSel.value) windowSel.value = "3600";  // an unknown ?window= leaves no option selected
    const tbody = el("tbody");
    const note = el("div", { class: "empty", text: "Loading…" });
    windowSel.addEventListener("change", () => { history.replaceState(null, "", "/endpoints?window=" + windowSel.value); load(); });
    view.replaceChildren(el("div", { class: "filters card" }, el("label", {}, "Window", windowSel)),
      el("div", { class: "card" }, el("div", { class: "table-scroll" }, el("table", { id: "endpoints" }, el("thead", {}, el("tr", {}, ...["Service", "Endpoint", "Requests/min", "Errors", "p50", "p95", "p99", "Requests", "p95 over time"].map((h, i) => el("th", { class: i >= 2 && i <= 6 ? "num" : null, text: h })))), tbody)), note));
    async function load() {
      const { ok, body } = await getJSON("/api/ui/endpoints?window=" + windowSel.value, true);
      if (!ok) { note.textContent = body.error || "Could not load endpoints."; return; }
      if (sparkTip) sparkTip.hidden = true;
      const buckets = { start: body.bucket_start_ms, width: body.bucket_ms, withDate: body.window_s > 86400, withSeconds: body.bucket_ms < 60000 };
      tbody.replaceChildren(...body.endpoints.map((e) => {
        const sw = el("span", { class: "swatch" });
        sw.style.background = colour(e.service);
        return el("tr", { "data-service": e.service },
          el("td", {}, sw, e.service), el("td", {}, link("/?service=" + encodeURIComponent(e.service) + "&route=" + encodeURIComponent(e.name), e.name)),
          el("td", { class: "num", text: e.rate_per_min.toFixed(2) }),
          el("td", { class: "num" + (e.error_rate > 0 ? " err" : ""), text: (e.error_rate * 100).toFixed(1) + "%" }),
          el("td", { class: "num", text: ms(e.p50_ms) }), el("td", { class: "num", text: ms(e.p95_ms) }), el("td", { class: "num", text: ms(e.p99_ms) }),
          el("td", {}, spark(e.series.count, "#2563eb", buckets, (v) => String(v), (v) => v + (v === 1 ? " request" : " requests"))),
          el("td", {}, spark(e.series.p95_ms, "#f59e0b", buckets, (v) => (v ? ms(v) : "0"), (v) => (v === null ? "no requests" : "p95 " + ms(v)))));
      }));
      note.textContent = body.endpoints.length ? "" : "No requests in this window.";
    }
    await load();
  }

  // A sparkline of one value per time bucket, with its scale (its highest value at the top right,
  // 0 at the baseline) and, on hover, the bucket's time range and value in a tooltip. A bucket
  // without a value (null: no requests, so no p95) is a gap in the line, not a dip to 0.
  let sparkTip = null;
  function spark(values, stroke, buckets, scaleText, valueText) {
    const w = 120, h = 28, pad = 3, labels = 46;
    const present = values.filter((v) => v !== null);
    const max = Math.max(0, ...present);
    const x = (i) => (values.length > 1 ? (i / (values.length - 1)) * w : w / 2);
    const y = (v) => h - pad - (max > 0 ? v / max : 0) * (h - 2 * pad);
    const node = svg("svg", { class: "spark", width: w + labels, height: h, viewBox: `0 0 ${w + labels} ${h}`, role: "img",
      "aria-label": "over the window, highest " + scaleText(max) });
    node.append(svg("line", { class: "spark-axis", x1: 0, y1: h - pad, x2: w, y2: h - pad }));
    let run = [];
    const flush = () => {
      if (run.length > 1) node.append(svg("polyline", { points: run.map(([a, b]) => a + "," + b).join(" "), fill: "none", stroke, "stroke-width": 1.5 }));
      else if (run.length === 1) node.append(svg("circle", { cx: run[0][0], cy: run[0][1], r: 2.5, fill: stroke }));
      run = [];
    };
    values.forEach((v, i) => { if (v === null) flush(); else run.push([x(i).toFixed(1), y(v).toFixed(1)]); });
    flush();
    const top = svg("text", { class: "spark-scale", x: w + 4, y: 9 }); top.textContent = scaleText(max);
    const bottom = svg("text", { class: "spark-scale", x: w + 4, y: h - 1 }); bottom.textContent = scaleText(0);
    const guide = svg("line", { class: "spark-guide", y1: 0, y2: h, visibility: "hidden" });
    const dot = svg("circle", { r: 2.5, fill: stroke, visibility: "hidden" });
    node.append(top, bottom, guide, dot);
    const step = w / Math.max(values.length - 1, 1);
    values.forEach((v, i) => {
      const hit = svg("rect", { class: "spark-hit", x: (x(i) - step / 2).toFixed(1), y: 0, width: step.toFixed(1), height: h, "data-bucket": i });
      hit.addEventListener("mouseenter", () => {
        guide.setAttribute("x1", x(i).toFixed(1)); guide.setAttribute("x2", x(i).toFixed(1));
        guide.setAttribute("visibility", "visible");
        dot.setAttribute("cx", x(i).toFixed(1)); dot.setAttribute("cy", y(v ?? 0).toFixed(1));
        dot.setAttribute("visibility", v === null ? "hidden" : "visible");
        const from = buckets.start + i * buckets.width;
        showTip(hit, bucketTime(from, buckets) + " – " + bucketTime(from + buckets.width, buckets) + ": " + valueText(v));
      });
      node.append(hit);
    });
    node.addEventListener("mouseleave", () => {
      guide.setAttribute("visibility", "hidden"); dot.setAttribute("visibility", "hidden");
      if (sparkTip) sparkTip.hidden = true;
    });
    return node;
  }
  function bucketTime(msEpoch, { withDate, withSeconds }) {  // local time, as precise as the buckets
    const d = new Date(msEpoch);
    const hm = two(d.getHours()) + ":" + two(d.getMinutes()) + (withSeconds ? ":" + two(d.getSeconds()) : "");
    return withDate ? d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + hm : hm;
  }
  function showTip(target, text) {
    if (!sparkTip) { sparkTip = el("div", { class: "spark-tip", role: "tooltip", id: "spark-tip" }); document.body.append(sparkTip); }
    sparkTip.textContent = text;
    sparkTip.hidden = false;
    const box = target.getBoundingClientRect();
    // Above the hovered bucket, kept inside the window.
    const left = Math.min(window.scrollX + box.left + box.width / 2 - sparkTip.offsetWidth / 2, window.scrollX + document.documentElement.clientWidth - sparkTip.offsetWidth - 4);
    sparkTip.style.left = Math.max(4, left) + "px";
    sparkTip.style.top = (window.scrollY + box.top - sparkTip.offsetHeight - 6) + "px";
  }

  // --- service map ----------------------------------------------------------------------------
  // Services as nodes and calls between them as edges, from Jaeger's /api/dependencies, over the
  // last hour / day / week. Laid out in layers by call depth (left: services nothing calls), so
  // the same data always draws the same map; click a service for its requests.
  const MAP_RANGES = [["3600", "1 hour"], ["86400", "24 hours"], ["604800", "7 days"]];
  async function servicesView() {
    setNav("map");
    stopRefresh();
    const rangeSel = el("select", { name: "range" }, ...MAP_RANGES.map(([v, t]) => el("option", { value: v, text: t })));
    rangeSel.value = new URLSearchParams(location.search).get("range") || "3600";
    if (!rangeSel.value) rangeSel.value = "3600";
    const box = el("div", { class: "card", id: "service-map" }, el("div", { class: "empty", text: "Loading…" }));
    let latest = 0;  // a slow answer for an older range must not replace a newer one
    rangeSel.addEventListener("change", () => { history.replaceState(null, "", "/map?range=" + rangeSel.value); load(); });
    view.replaceChildren(el("div", { class: "filters card" }, el("label", {}, "Time range", rangeSel),
      el("span", { class: "map-hint", text: "Arrows go from caller to callee, with the number of calls. Click a service for its requests." })), box);
    async function load() {
      const seq = ++latest;
      const label = MAP_RANGES.find(([v]) => v === rangeSel.value)[1];
      let answer;
      try {
        answer = await getJSON("/api/dependencies?endTs=" + Date.now() + "&lookback=" + Number(rangeSel.value) * 1000, true);
      } catch (err) {
        answer = { ok: false, body: { errors: [{ msg: "the server did not answer (" + err.message + ")" }] } };
      }
      if (seq !== latest) return;
      const { ok, body } = answer;
      if (!ok) {
        const reason = (body.errors && body.errors[0] && body.errors[0].msg) || body.error || "HTTP " + answer.status;
        box.replaceChildren(el("div", { class: "notice map-message", text: "Could not load the service map: " + reason + "." }));
        return;
      }
      const edges = (body.data || []).filter((e) => e.parent !== e.child);
      if (!edges.length) {
        box.replaceChildren(el("div", { class: "empty map-message",
          text: "No calls between services in the last " + label + ". A call shows here when a span's parent belongs to another service (e.g. an instrumented HTTP client calling an instrumented server)." }));
        return;
      }
      box.replaceChildren(serviceMap(edges));
    }
    await load();
  }
  function serviceMap(edges) {
    const NODE_W = 170, NODE_H = 44, COL_GAP = 130, ROW_GAP = 30, M = 24;
    const names = [...new Set(edges.flatMap((e) => [e.parent, e.child]))].sort();
    const callees = new Map(names.map((n) => [n, []]));
    const callers = new Map(names.map((n) => [n, []]));
    const calls = new Map(names.map((n) => [n, { in: 0, out: 0 }]));
    for (const e of edges) {
      callees.get(e.parent).push(e.child); callers.get(e.child).push(e.parent);
      calls.get(e.parent).out += e.callCount; calls.get(e.child).in += e.callCount;
    }
    for (const list of callees.values()) list.sort();
    // Depth-first from the services nothing calls (then any left, in a cycle), in name order: an
    // edge back to a service on the current path closes a cycle and is left out of the layering.
    const state = new Map(), post = [], back = new Set();
    function visit(n) {
      state.set(n, "open");
      for (const c of callees.get(n)) {
        if (state.get(c) === "open") back.add(n + "\u0000" + c);
        else if (!state.has(c)) visit(c);
      }
      state.set(n, "done");
      post.push(n);
    }
    for (const n of names) if (!callers.get(n).length && !state.has(n)) visit(n);
    for (const n of names) if (!state.has(n)) visit(n);
    // Longest call path from a caller-less service: every other edge points right.
    const depth = new Map(names.map((n) => [n, 0]));
    for (const n of post.reverse()) {
      for (const c of callees.get(n)) if (!back.has(n + "\u0000" + c)) depth.set(c, Math.max(depth.get(c), depth.get(n) + 1));
    }
    const layers = [];
    for (const n of names) (layers[depth.get(n)] ||= []).push(n);
    // Within a layer, by the mean row of a service's callers (fewer crossings), then by name.
    const row = new Map();
    layers.forEach((layer, d) => {
      const key = (n) => { const rows = callers.get(n).filter((p) => depth.get(p) < d).map((p) => row.get(p)); return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : -1; };
      layer.sort((a, b) => key(a) - key(b) || (a < b ? -1 : a > b ? 1 : 0));
      layer.forEach((n, i) => row.set(n, i));
    });
    const tallest = Math.max(...layers.map((l) => l.length));
    const pos = new Map();
    layers.forEach((layer, d) => layer.forEach((n, i) => {
      pos.set(n, { x: M + d * (NODE_W + COL_GAP), y: M + (i + (tallest - layer.length) / 2) * (NODE_H + ROW_GAP) });
    }));
    const width = M * 2 + layers.length * NODE_W + (layers.length - 1) * COL_GAP;
    const bottom = M + tallest * (NODE_H + ROW_GAP) - ROW_GAP;
    const hasBack = edges.some((e) => depth.get(e.child) <= depth.get(e.parent));
    const height = bottom + M + (hasBack ? 50 : 0);
    const map = svg("svg", { class: "service-map", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "service map" });
    const marker = svg("marker", { id: "map-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "map-arrowhead" }));
    const defs = svg("defs"); defs.append(marker);
    map.append(defs);
    const labels = [];
    for (const e of [...edges].sort((a, b) => (a.parent + "\u0000" + a.child < b.parent + "\u0000" + b.child ? -1 : 1))) {
      const p = pos.get(e.parent), c = pos.get(e.child);
      let d, lx, ly;
      if (depth.get(e.child) > depth.get(e.parent)) {
        const x1 = p.x + NODE_W, y1 = p.y + NODE_H / 2, x2 = c.x, y2 = c.y + NODE_H / 2, mx = (x1 + x2) / 2;
        d = `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
        [lx, ly] = [mx, (y1 + y2) / 2];
      } else {  // a call back to the left (a cycle) or within a layer: an arc under the map
        const x1 = p.x + NODE_W / 2, y1 = p.y + NODE_H, x2 = c.x + NODE_W / 2, y2 = c.y + NODE_H, under = bottom + 40;
        d = `M${x1},${y1} C${x1},${under} ${x2},${under} ${x2},${y2}`;
        [lx, ly] = [(x1 + x2) / 2, 0.125 * (y1 + y2) + 0.75 * under];
      }
      const edge = svg("g", { class: "map-edge", "data-parent": e.parent, "data-child": e.child });
      edge.append(svg("path", { d, class: "map-line", "marker-end": "url(#map-arrow)", "stroke-width": (1.2 + Math.log10(e.callCount)).toFixed(2) }));
      const text = e.callCount + (e.callCount === 1 ? " call" : " calls");
      const label = svg("g", { class: "map-count", "data-parent": e.parent, "data-child": e.child });
      const bg = svg("rect", { x: lx - text.length * 3.4 - 5, y: ly - 9, width: text.length * 6.8 + 10, height: 18, rx: 9 });
      const t = svg("text", { x: lx, y: ly + 4, "text-anchor": "middle", class: "edge-count" }); t.textContent = text;
      label.append(bg, t);
      map.append(edge);
      labels.push(label);
    }
    for (const label of labels) map.append(label);  // counts above every line
    for (const n of names) {
      const { x, y } = pos.get(n);
      const open = () => go("/?service=" + encodeURIComponent(n));
      const node = svg("g", { class: "map-node", "data-service": n, tabindex: 0, role: "link", "aria-label": n + ": its requests" });
      node.addEventListener("click", open);
      node.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); open(); } });
      const title = svg("title"); title.textContent = n + " — click for its requests";
      const box = svg("rect", { x, y, width: NODE_W, height: NODE_H, rx: 8, class: "map-box", stroke: colour(n) });
      const stripe = svg("rect", { x, y, width: 6, height: NODE_H, rx: 3, fill: colour(n) });
      const name = svg("text", { x: x + 14, y: y + 18, class: "map-name" }); name.textContent = n.length > 22 ? n.slice(0, 21) + "…" : n;
      const io = calls.get(n);
      const sub = svg("text", { x: x + 14, y: y + 34, class: "map-sub" }); sub.textContent = "in " + io.in + " · out " + io.out;
      node.append(title, box, stripe, name, sub);
      map.append(node);
    }
    return el("div", { class: "map-scroll" }, map);
  }

  // --- routing --------------------------------------------------------------------------------
  function render() {
    if (sparkTip) sparkTip.hidden = true;  // its sparkline is gone, and with it the mouseleave that hides it
    searchMessage("");
    partial("");  // a new view: its own reads say whether it is partial
    const path = location.pathname;
    if (path.startsWith("/trace/")) return traceView(decodeURIComponent(path.slice(7)));
    if (path === "/endpoints") return endpointsView();
    if (path === "/map") return servicesView();
    return requestsView();
  }
  // The box is the one search: its text, in the requests list's time range and service.
  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = document.getElementById("search-input").value.trim();
    searchMessage("");
    if (!text) return go("/" + (searchScope.toString() ? "?" + searchScope : ""));
    const q = new URLSearchParams(searchScope);
    q.set("q", text);
    go("/?" + q);
  });
  // "/" anywhere but in a field puts the cursor in the box (as on GitHub, Grafana, Kibana).
  document.addEventListener("keydown", (e) => {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
    e.preventDefault();
    const input = document.getElementById("search-input");
    input.focus();
    input.select();
  });
  for (const a of document.querySelectorAll("nav a")) {
    a.addEventListener("click", (e) => { e.preventDefault(); go(a.getAttribute("href")); });
  }
  window.addEventListener("popstate", render);
  render();
})();
