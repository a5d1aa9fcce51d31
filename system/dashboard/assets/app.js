// The iotgw dashboard: each view is read once (GET /api/dash/{view}), then kept live by the gateway's /ws
// stream of bus subjects; no polling. The stream reconnects by itself with a capped, jittered backoff, and each
// reconnect reads the views again (what happened while it was away). Everything shown is set with textContent:
// device ids, keys, messages and errors come from the bus and are never parsed as HTML.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const SPARK_POINTS = 60; // values kept per device for its sparkline
  const PAGE = 50; // devices per page: only the visible rows are drawn and charted
  const HOLD_FRAMES = 20000; // stream frames held while the views are read (load)
  const STALE_FACTOR = 3; // a device is stale when its last point is older than 3 of its own intervals, at least 10 s

  const state = {
    session: null,
    actors: new Map(), // path → actor (FeedActor fields)
    treeRows: new Map(), // path → <tr>
    devices: new Map(), // id → {id, driver, points: Map(key → point), last, prev, series: {t:[], v:[]}, sparkKey}
    deviceOrder: [],
    alerts: new Map(), // dedup_key → alert
    rules: new Map(),
    sinks: new Map(),
    faults: [],
    page: 0,
    filter: "",
    clockOffset: 0, // gateway clock − browser clock (ms), from the feed's timestamps
    dirty: new Set(), // views to redraw on the next frame
    dirtyDevices: new Set(),
    frame: 0,
    ws: null,
    backoff: 500,
    view: "tree",
    treeParts: null, // the parts of a tree feed so far: {ts, parts, got: Map(part → actors)}
    hold: null, // while the views are read: {frames: stream frames held, over: more than HOLD_FRAMES came}
  };
  // Figures the benchmark (bench/dashboard_test.go) and the tests read.
  const stats = (window.iotgwStats = { firstRender: 0, messages: 0, points: 0, renders: 0, connects: 0, loaded: false,
    treeParts: 0, // trees applied from a complete set of parts
    transitions: [], // the last 200 state changes seen: "devices/plc-1 running→restarting"
    backoffs: {}, // path → the last backoff (ms) of iot.errors.supervisor
    firstAt: 0, lastAt: 0, longTaskMs: 0, longTasks: 0 }); // first and last message (performance.now), main-thread stalls
  if (window.PerformanceObserver && PerformanceObserver.supportedEntryTypes && PerformanceObserver.supportedEntryTypes.includes("longtask")) {
    new PerformanceObserver((l) => { for (const e of l.getEntries()) { stats.longTasks++; stats.longTaskMs += e.duration; } })
      .observe({ type: "longtask", buffered: true });
  }

  // ---- HTTP ----
  async function api(path, body) {
    const opts = { credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      opts.method = "POST";
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-Iotgw"] = "1"; // the CSRF header the server requires on every write
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path, opts);
    let data = null;
    try { data = await res.json(); } catch (e) { data = { error: res.status + " " + res.statusText }; }
    if (!res.ok) {
      const err = new Error((data && data.error) || res.status + " " + res.statusText);
      err.status = res.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  function showError(msg) { $("error").textContent = msg || ""; }

  // ---- start, sign-in ----
  async function start() {
    let s;
    try {
      s = await api("/api/dash/session");
    } catch (e) {
      if (e.status === 401) { showLogin(e.data && e.data.gateway); return; }
      $("conn").textContent = "gateway unreachable: retrying";
      setTimeout(start, nextBackoff());
      return;
    }
    state.session = s;
    $("gateway").textContent = s.gateway;
    $("version").textContent = s.version;
    $("who").textContent = s.anonymous ? "loopback (admin)" : s.user + (s.admin ? " (admin)" : " (read-only)");
    $("signout").hidden = s.anonymous;
    $("signin").hidden = !(s.anonymous && s.login);
    $("tab-faults").hidden = !s.faults;
    document.body.classList.toggle("admin", s.admin);
    $("login").hidden = true;
    $("app").hidden = false;
    connect(); // the views are read once the stream is open (ws.onopen), so no event falls between the two
  }

  function showLogin(gw) {
    $("app").hidden = true;
    $("login").hidden = false;
    if (gw) $("gateway").textContent = gw;
    $("conn").textContent = "";
  }

  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = $("login-token").value;
    const body = token ? { token } : { user: $("login-user").value, password: $("login-password").value };
    try {
      await api("/login", body);
      $("login-error").textContent = "";
      $("login-password").value = $("login-token").value = "";
      start();
    } catch (e) {
      $("login-error").textContent = e.message;
    }
  });

  $("signin").addEventListener("click", () => { if (state.ws) { const ws = state.ws; state.ws = null; ws.close(); } showLogin(); });

  $("signout").addEventListener("click", async () => {
    try { await api("/logout", {}); } catch (e) { /* signed out anyway */ }
    if (state.ws) state.ws.close();
    location.reload();
  });

  // ---- views ----
  document.querySelectorAll("#tabs button").forEach((b) =>
    b.addEventListener("click", () => select(b.dataset.view)));

  function select(view) {
    state.view = view;
    document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
    document.querySelectorAll(".view").forEach((s) => (s.hidden = s.id !== "view-" + view));
    markDirty(view);
  }

  async function loadAll() {
    const [tree, devices, alerts, rules, sinks] = await Promise.allSettled(
      ["tree", "devices", "alerts", "rules", "sinks"].map((v) => api("/api/dash/" + v)));
    const failed = [];
    if (tree.status === "fulfilled") setTree(flattenTree(tree.value)); else failed.push("tree: " + tree.reason.message);
    if (devices.status === "fulfilled") setDevices(devices.value.devices || []); else failed.push("devices: " + devices.reason.message);
    if (alerts.status === "fulfilled") setAlerts(alerts.value.alerts || []); else failed.push("alerts: " + alerts.reason.message);
    if (rules.status === "fulfilled") setRules(rules.value.rules || []); else failed.push("rules: " + rules.reason.message);
    if (sinks.status === "fulfilled") setSinks(sinks.value.sinks || []); else failed.push("sinks: " + sinks.reason.message);
    if (state.session.faults) await loadFaults();
    showError(failed.join("; "));
    stats.loaded = true;
  }

  async function loadFaults() {
    try {
      const r = await api("/api/dash/faults");
      state.faults = r.faults || [];
      markDirty("faults");
    } catch (e) { showError("faults: " + e.message); }
  }

  // The control tree's nodes, flattened like the feed's actors.
  function flattenTree(root) {
    const out = [];
    (function walk(n) {
      if (!n) return;
      out.push({ path: n.path, kind: n.kind, state: n.state, restarts: n.restarts, last_error: n.last_error,
        since: n.since, depth: n.mailbox ? n.mailbox.depth : 0, capacity: n.mailbox ? n.mailbox.capacity : 0,
        faults: n.faults, rule: n.rule });
      (n.children || []).forEach(walk);
    })(root);
    return out;
  }

  function setTree(actors) {
    const seen = new Set();
    for (const a of actors) {
      seen.add(a.path);
      const before = state.actors.get(a.path);
      if (before && before.state !== a.state) {
        stats.transitions.push(a.path + " " + before.state + "→" + a.state);
        if (stats.transitions.length > 200) stats.transitions.shift();
      }
      state.actors.set(a.path, a);
      if (a.rule && a.path.startsWith("rules/")) {
        const r = state.rules.get(a.path.slice(6));
        if (r) { r.stats = a.rule; r.state = a.state; r.restarts = a.restarts; }
      }
      const dev = a.path.startsWith("devices/") && state.devices.get(a.path.slice(8));
      if (dev && dev.state !== a.state) { dev.state = a.state; state.dirtyDevices.add(dev.id); }
    }
    for (const p of [...state.actors.keys()]) if (!seen.has(p)) state.actors.delete(p);
    markDirty("tree"); markDirty("rules"); markDirty("faults-targets");
  }

  function setDevices(list) {
    const keep = new Set();
    for (const d of list) {
      keep.add(d.id);
      const cur = state.devices.get(d.id) || newDevice(d.id);
      cur.driver = d.driver;
      cur.state = (state.actors.get("devices/" + d.id) || d).state;
      state.devices.set(d.id, cur);
    }
    for (const id of [...state.devices.keys()]) if (!keep.has(id)) state.devices.delete(id);
    state.deviceOrder = [...state.devices.keys()].sort();
    markDirty("devices");
  }

  function newDevice(id) {
    return { id, driver: "", state: "", points: new Map(), last: 0, interval: 0, series: { t: [], v: [] }, sparkKey: null, chart: null };
  }

  function setAlerts(list) {
    state.alerts.clear();
    for (const a of list) if (a.state !== "resolved") state.alerts.set(a.dedup_key, a);
    markDirty("alerts");
  }
  function setRules(list) {
    state.rules.clear();
    for (const r of list) state.rules.set(r.name, r);
    markDirty("rules");
  }
  function setSinks(list) {
    state.sinks.clear();
    for (const s of list) state.sinks.set(s.name, s);
    markDirty("sinks");
  }

  // ---- the live stream ----
  function nextBackoff() {
    const d = state.backoff;
    state.backoff = Math.min(state.backoff * 2, 10000);
    return d / 2 + Math.random() * d / 2;
  }

  function connect() {
    const s = state.session;
    const subjects = [s.subject, s.sinks, "iot.processed.batch.>", "iot.alerts.>", "iot.errors.supervisor.>"];
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws?" +
      subjects.map((x) => "subject=" + encodeURIComponent(x)).join("&");
    const ws = new WebSocket(url);
    state.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      state.backoff = 500;
      stats.connects++;
      $("conn").textContent = "live";
      $("conn").className = "conn-up";
      load(ws);
    };
    ws.onmessage = (ev) => {
      stats.messages++;
      stats.lastAt = performance.now();
      if (!stats.firstAt) stats.firstAt = stats.lastAt;
      let f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (state.hold) {
        if (state.hold.frames.length < HOLD_FRAMES) state.hold.frames.push(f);
        else state.hold.over = true;
        return;
      }
      onFrame(f.subject, f.data);
    };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      const wait = nextBackoff();
      $("conn").textContent = (opened ? "disconnected" : "cannot connect") + (ev.reason ? " (" + ev.reason + ")" : "") +
        ": retrying in " + (wait / 1000).toFixed(1) + " s";
      $("conn").className = "conn-down";
      if (!opened && !stats.loaded) loadAll().catch((e) => showError(e.message)); // a snapshot, if only the stream is refused
      setTimeout(() => {
        // a gateway that restarted may want a new sign-in (sessions live in its memory)
        api("/api/dash/session").then(() => connect(), (e) => (e.status === 401 ? showLogin() : connect()));
      }, wait);
    };
  }

  // The views are read (again) each time the stream opens: the first time, and after a reconnect for what changed
  // while away. The stream is subscribed first and its frames are held while the reads run, then applied in order
  // on top of them: an alert that fires between the read and the subscription is not missed, and one that the read
  // already shows is applied again to the same state. A read that outlasts HOLD_FRAMES frames is done again (three
  // reads at most).
  async function load(ws) {
    for (let attempt = 1; ; attempt++) {
      const hold = (state.hold = { frames: [], over: false });
      try { await loadAll(); } catch (e) { showError(e.message); }
      if (state.hold !== hold) return; // a newer stream's load took over
      state.hold = null;
      if (state.ws !== ws) return;
      if (hold.over && attempt < 3) continue;
      if (hold.over) showError("the stream outran the page while it read the views: reload to be sure");
      for (const f of hold.frames) onFrame(f.subject, f.data);
      return;
    }
  }

  function onFrame(subject, data) {
    if (!data || typeof data !== "object") return;
    const s = state.session;
    if (subject === s.subject) {
      if (data.timestamp) state.clockOffset = data.timestamp / 1e6 - Date.now();
      if (data.parts > 1) onTreePart(data);
      else setTree(data.actors || []);
    } else if (subject === s.sinks) {
      setSinks(data.sinks || []);
    } else if (subject.startsWith("iot.processed.batch.")) {
      onBatch(subject.slice("iot.processed.batch.".length), data.points || []);
    } else if (subject.startsWith("iot.alerts.")) {
      onAlert(data);
    } else if (subject.startsWith("iot.errors.supervisor.") && typeof data.actor === "string") {
      // the supervisor's event says how long it waits before the restart (or the next retry of a peer)
      stats.backoffs[data.actor] = data.backoff_ms || 0;
      markDirty("tree");
    }
  }

  // A tree larger than one bus message comes in parts (system/dashfeed.go): the same timestamp, part 1..parts, in
  // order. It is applied when every part is in; a newer timestamp drops an incomplete set (a part lost while the
  // socket reconnected), and the next complete tree replaces it.
  function onTreePart(data) {
    let p = state.treeParts;
    if (!p || p.ts !== data.timestamp || p.parts !== data.parts) p = state.treeParts = { ts: data.timestamp, parts: data.parts, got: new Map() };
    p.got.set(data.part, data.actors || []);
    if (p.got.size < p.parts) return;
    state.treeParts = null;
    let all = [];
    for (let i = 1; i <= p.parts; i++) all = all.concat(p.got.get(i) || []);
    stats.treeParts++;
    setTree(all);
  }

  function onBatch(id, points) {
    let d = state.devices.get(id);
    if (!d) { // a device added at run time: listed from its first batch on
      d = newDevice(id);
      state.devices.set(id, d);
      state.deviceOrder = [...state.devices.keys()].sort();
      markDirty("devices");
    }
    let ts = 0;
    for (const p of points) {
      if (!p || typeof p.key !== "string") continue;
      stats.points++;
      d.points.set(p.key, p);
      ts = Math.max(ts, p.timestamp || 0);
      if (d.sparkKey === null && typeof p.value === "number") d.sparkKey = p.key;
      if (p.key === d.sparkKey && typeof p.value === "number") {
        d.series.t.push((p.timestamp || Date.now() * 1e6) / 1e9);
        d.series.v.push(p.value);
        if (d.series.t.length > SPARK_POINTS) { d.series.t.shift(); d.series.v.shift(); }
      }
    }
    const t = ts / 1e6 || Date.now() + state.clockOffset;
    if (d.last) d.interval = d.interval ? 0.8 * d.interval + 0.2 * (t - d.last) : t - d.last;
    d.last = t;
    state.dirtyDevices.add(id);
    scheduleRender();
  }

  function onAlert(a) {
    if (!a.dedup_key) return;
    if (a.state === "resolved" || a.event === "resolved") state.alerts.delete(a.dedup_key);
    else state.alerts.set(a.dedup_key, Object.assign(state.alerts.get(a.dedup_key) || {}, a));
    markDirty("alerts");
  }

  // ---- drawing: at most once per animation frame, only what changed ----
  function markDirty(view) { state.dirty.add(view); scheduleRender(); }
  function scheduleRender() { if (!state.frame) state.frame = requestAnimationFrame(render); }

  function render() {
    state.frame = 0;
    stats.renders++;
    const d = state.dirty;
    $("alert-count").textContent = state.alerts.size ? String(state.alerts.size) : "";
    if (d.has("tree") && state.view === "tree") renderTree();
    if (d.has("devices") && state.view === "devices") renderDevices();
    else if (state.view === "devices" && state.dirtyDevices.size) updateDeviceRows();
    if (d.has("alerts") && state.view === "alerts") renderAlerts();
    if (d.has("rules") && state.view === "rules") renderRules();
    if (d.has("sinks") && state.view === "sinks") renderSinks();
    if ((d.has("faults") || d.has("faults-targets")) && state.session && state.session.faults) renderFaults();
    for (const v of [...d]) if (v === state.view || v === "faults-targets") d.delete(v);
    if (!stats.firstRender && stats.loaded) stats.firstRender = performance.now();
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function stateCell(tr, s) { return cell(tr, s, "state state-" + (s || "unknown")); }
  function ago(t) {
    if (!t) return "";
    const s = Math.max(0, (Date.now() + state.clockOffset - t) / 1000);
    return s < 60 ? s.toFixed(0) + " s" : s < 3600 ? (s / 60).toFixed(0) + " min" : (s / 3600).toFixed(1) + " h";
  }
  function sinceOf(iso) { return iso ? ago(Date.parse(iso)) : ""; }
  function replaceBody(table, rows) {
    const tb = $(table).tBodies[0];
    tb.replaceChildren(...rows);
  }

  function renderTree() {
    const rows = [];
    state.treeRows.clear();
    for (const a of state.actors.values()) {
      const tr = document.createElement("tr");
      tr.dataset.path = a.path;
      const depth = a.path.split("/").length - 1;
      cell(tr, a.path.split("/").pop(), "indent-" + Math.min(depth, 3)).title = a.path;
      cell(tr, a.kind);
      stateCell(tr, a.state);
      cell(tr, a.restarts, "num restarts");
      const bo = stats.backoffs[a.path];
      cell(tr, a.state !== "running" && bo ? (bo / 1000).toFixed(1) + " s" : "", "num backoff");
      cell(tr, a.state === "running" ? sinceOf(a.since) : "");
      cell(tr, a.capacity ? a.depth + " / " + a.capacity : "", "num");
      cell(tr, (a.faults || []).join(", "));
      cell(tr, a.last_error, "err");
      rows.push(tr);
      state.treeRows.set(a.path, tr);
    }
    replaceBody("tree", rows);
  }

  function visibleDevices() {
    const f = state.filter;
    const ids = f ? state.deviceOrder.filter((id) => id.includes(f)) : state.deviceOrder;
    const pages = Math.max(1, Math.ceil(ids.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    $("page-info").textContent = " page " + (state.page + 1) + " of " + pages + " ";
    $("device-count").textContent = ids.length + " devices";
    return ids.slice(state.page * PAGE, (state.page + 1) * PAGE);
  }

  function renderDevices() {
    for (const d of state.devices.values()) if (d.row) { if (d.chart) d.chart.destroy(); d.chart = null; d.row = null; d.valueEls = null; }
    const rows = visibleDevices().map((id) => {
      const d = state.devices.get(id);
      const tr = document.createElement("tr");
      tr.dataset.device = id;
      cell(tr, id, "device-id");
      cell(tr, d.driver);
      d.stateCell = stateCell(tr, d.state);
      d.pointsCell = cell(tr, "", "points");
      d.ageCell = cell(tr, "", "age");
      d.sparkCell = cell(tr, "", "spark");
      d.row = tr;
      return tr;
    });
    replaceBody("devices", rows);
    for (const tr of rows) fillDevice(state.devices.get(tr.dataset.device));
    state.dirtyDevices.clear();
  }

  function updateDeviceRows() {
    for (const id of state.dirtyDevices) {
      const d = state.devices.get(id);
      if (d && d.row) fillDevice(d);
    }
    state.dirtyDevices.clear();
  }

  // fillDevice brings one visible row up to date in place: the values' text, the age, and the sparkline at most
  // every SPARK_EVERY ms (a uPlot redraw is the costliest part of an update).
  const SPARK_EVERY = 500;
  let sparkTimer = 0;
  function fillDevice(d) {
    if (d.stateCell.textContent !== (d.state || "")) {
      d.stateCell.textContent = d.state || "";
      d.stateCell.className = "state state-" + (d.state || "unknown");
    }
    if (!d.valueEls || d.valueEls.size !== Math.min(d.points.size, 8)) {
      d.valueEls = new Map();
      const spans = [];
      for (const p of d.points.values()) {
        const s = document.createElement("span");
        s.dataset.key = p.key;
        const b = document.createElement("b");
        b.textContent = p.key + " ";
        const v = document.createElement("span");
        v.className = "value";
        s.append(b, v);
        spans.push(s);
        d.valueEls.set(p.key, { s, v });
        if (spans.length >= 8) break;
      }
      d.pointsCell.replaceChildren(...spans);
    }
    for (const [key, el] of d.valueEls) {
      const p = d.points.get(key);
      const text = typeof p.value === "number" ? String(+p.value.toFixed(3)) : JSON.stringify(p.value);
      if (el.v.textContent !== text) el.v.textContent = text;
      const cls = "point" + (p.quality === 0 ? " quality-bad" : p.quality === -1 ? " quality-unknown" : "");
      if (el.s.className !== cls) { el.s.className = cls; el.s.title = p.quality === 0 ? "quality 0 (bad)" : ""; }
    }
    const stale = d.last && Date.now() + state.clockOffset - d.last > Math.max(10000, STALE_FACTOR * (d.interval || 0));
    d.ageCell.textContent = d.last ? ago(d.last) + (stale ? " (stale)" : "") : "no data yet";
    d.ageCell.className = "age" + (stale ? " stale" : "");
    drawSpark(d);
  }

  function drawSpark(d) {
    if (d.series.t.length < 2 || !window.uPlot) return;
    const now = performance.now();
    if (d.chart && now - d.chartAt < SPARK_EVERY) {
      d.sparkDue = true;
      if (!sparkTimer) sparkTimer = setTimeout(flushSparks, SPARK_EVERY);
      return;
    }
    d.chartAt = now;
    d.sparkDue = false;
    if (!d.chart) {
      d.chart = new uPlot({ width: 160, height: 36, class: "spark", cursor: { show: false }, legend: { show: false },
        select: { show: false }, axes: [{ show: false }, { show: false }], scales: { x: { time: false } },
        series: [{}, { stroke: "#2b6cb0", width: 1.5, points: { show: false } }] }, [d.series.t, d.series.v], d.sparkCell);
    } else {
      d.chart.setData([d.series.t, d.series.v]);
    }
  }

  function flushSparks() {
    sparkTimer = 0;
    for (const d of state.devices.values()) if (d.row && d.sparkDue) drawSpark(d);
  }

  $("device-filter").addEventListener("input", (e) => { state.filter = e.target.value; state.page = 0; markDirty("devices"); });
  $("page-prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); markDirty("devices"); });
  $("page-next").addEventListener("click", () => { state.page++; markDirty("devices"); });
  // staleness moves with time alone: redraw the ages of the visible page every few seconds (no request is made)
  setInterval(() => { if (state.view === "devices") { for (const d of state.devices.values()) if (d.row) state.dirtyDevices.add(d.id); scheduleRender(); } }, 5000);

  function renderAlerts() {
    const list = [...state.alerts.values()].sort((a, b) => (b.since || 0) - (a.since || 0));
    $("no-alerts").hidden = list.length > 0;
    replaceBody("alerts", list.map((a) => {
      const tr = document.createElement("tr");
      tr.dataset.key = a.dedup_key;
      cell(tr, a.level, "level-" + a.level);
      stateCell(tr, a.state);
      cell(tr, a.device_id);
      cell(tr, a.key);
      cell(tr, a.rule);
      cell(tr, a.value === undefined ? "" : JSON.stringify(a.value));
      cell(tr, a.message);
      cell(tr, a.since ? ago(a.since / 1e6) : "");
      cell(tr, a.acknowledged ? "by " + (a.acked_by || "?") : "no", "acked");
      const td = cell(tr, "");
      if (state.session.admin && !a.acknowledged) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "ack";
        b.textContent = "Acknowledge";
        b.addEventListener("click", async () => {
          b.disabled = true;
          try { await api("/api/dash/alerts/ack", { dedup_key: a.dedup_key, rule: a.rule }); showError(""); }
          catch (e) { showError("acknowledge: " + e.message); b.disabled = false; }
        });
        td.appendChild(b);
      }
      return tr;
    }));
  }

  function renderRules() {
    replaceBody("rules", [...state.rules.values()].map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.rule = r.name;
      const s = r.stats || {};
      cell(tr, r.name);
      cell(tr, r.type);
      stateCell(tr, r.state);
      for (const k of ["in", "matched", "out", "dropped", "errors"]) cell(tr, s[k] || 0, "num");
      cell(tr, s.in ? ((s.eval_ns || 0) / s.in / 1000).toFixed(2) + " µs" : "", "num");
      cell(tr, s.active_alerts || 0, "num");
      return tr;
    }));
  }

  function renderSinks() {
    replaceBody("sinks", [...state.sinks.values()].map((s) => {
      const tr = document.createElement("tr");
      tr.dataset.sink = s.name;
      cell(tr, s.name);
      cell(tr, s.type);
      stateCell(tr, s.state);
      cell(tr, s.pending, "num lag");
      cell(tr, s.written, "num");
      cell(tr, s.failed, "num");
      cell(tr, s.reconnects, "num");
      cell(tr, s.dead_letters, "num");
      cell(tr, s.last_error, "err");
      return tr;
    }));
  }

  function renderFaults() {
    const sel = $("fault-target");
    const want = [...state.actors.keys()].filter((p) => p.includes("/"));
    if (sel.options.length !== want.length || want.some((p, i) => sel.options[i].value !== p)) {
      const cur = sel.value;
      sel.replaceChildren(...want.map((p) => { const o = document.createElement("option"); o.value = o.textContent = p; return o; }));
      if (want.includes(cur)) sel.value = cur;
    }
    replaceBody("faults", state.faults.map((f) => {
      const tr = document.createElement("tr");
      tr.dataset.fault = f.id;
      cell(tr, f.id);
      cell(tr, f.kind);
      cell(tr, f.target);
      cell(tr, sinceOf(f.injected) + " ago");
      cell(tr, f.until ? new Date(f.until).toLocaleTimeString() : "until cleared");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "clear";
      b.textContent = "Clear";
      b.addEventListener("click", async () => {
        try { await api("/api/dash/faults/clear", { id: f.id }); } catch (e) { showError("clear: " + e.message); }
        loadFaults();
      });
      cell(tr, "").appendChild(b);
      return tr;
    }));
  }

  $("fault-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { kind: $("fault-kind").value, target: $("fault-target").value };
    if ($("fault-duration").value) body.duration = $("fault-duration").value;
    if ($("fault-latency").value) body.latency = $("fault-latency").value;
    try {
      const r = await api("/api/dash/faults/inject", body);
      $("fault-result").textContent = "injected " + (r.fault ? r.fault.id : "") + " " + body.kind + " on " + body.target;
      $("fault-result").className = "";
    } catch (e) {
      $("fault-result").textContent = e.message;
      $("fault-result").className = "error";
    }
    loadFaults();
  });

  start();
})();
