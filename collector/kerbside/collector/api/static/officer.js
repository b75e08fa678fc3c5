// Kerbside officers' page: open enforcement alerts, live over server-sent events.
// The token is typed once and traded for an HttpOnly cookie; this script never stores it.
"use strict";

(function () {
  const ENFORCEMENT = new Set(["overstay", "unpaid", "expired", "suspended"]);
  const ACTIVE = new Set(["open", "acknowledged"]);
  const KIND_LABEL = {
    unpaid: "Unpaid", overstay: "Overstay", expired: "Expired", suspended: "Suspended bay",
  };
  const $ = (id) => document.getElementById(id);

  const state = {
    me: null,
    alerts: new Map(),     // alert_id -> record
    lastId: null,          // last change id received (resumes the stream)
    source: null,
    retryMs: 1000,
    retryTimer: null,
    position: null,        // {lat, lon} when the browser grants it
    openResolve: null,     // alert_id whose resolve form is open (kept across re-renders)
  };

  // ---- HTTP ----------------------------------------------------------------------------
  async function api(method, path, body, token) {
    const headers = { "Accept": "application/json" };
    if (token) headers["Authorization"] = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, data, headers: response.headers };
  }

  function problem(result) {
    const d = result.data;
    if (d && typeof d.detail === "string") return d.detail;
    if (d && Array.isArray(d.detail) && d.detail.length) return (d.field || "") + ": " + d.detail[0].msg;
    return "Request failed (" + result.status + ")";
  }

  // ---- connection state ----------------------------------------------------------------
  function setConn(live, text) {
    const el = $("conn");
    el.textContent = text;
    el.classList.toggle("conn-live", live);
    el.classList.toggle("conn-off", !live);
  }

  // ---- sign in -------------------------------------------------------------------------
  async function start() {
    const who = await api("GET", "/api/v1/session").catch(() => null);
    if (!who) { setConn(false, "Offline, reconnecting…"); setTimeout(start, 2000); return; }
    if (!who.ok) { showSignin(); return; }
    signedIn(who.data);
  }

  function showSignin(message) {
    $("work").hidden = true;
    $("signin").hidden = false;
    setConn(false, "Signed out");
    const err = $("signin-error");
    err.hidden = !message;
    err.textContent = message || "";
    $("token").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $("token");
    const token = input.value.trim();
    input.value = "";
    const result = await api("POST", "/api/v1/session", undefined, token).catch(() => null);
    if (!result) { showSignin("Cannot reach the server; try again."); return; }
    if (!result.ok) { showSignin(result.status === 401 ? "That token is not valid." : problem(result)); return; }
    if (result.data.role !== "officer" && result.data.role !== "admin") {
      await api("DELETE", "/api/v1/session");
      showSignin("That token is not an officer's.");
      return;
    }
    signedIn(result.data);
  }

  async function signOut() {
    stopStream();
    await api("DELETE", "/api/v1/session").catch(() => null);
    state.alerts.clear();
    render();
    showSignin();
  }

  function signedIn(me) {
    state.me = me;
    $("officer-name").textContent = me.name;
    $("signin").hidden = true;
    $("work").hidden = false;
    loadZones();
    reload();
  }

  async function loadZones() {
    const result = await api("GET", "/api/v1/zones").catch(() => null);
    if (!result || !result.ok) return;
    const select = $("zone");
    const chosen = select.value;
    select.replaceChildren(new Option("All zones", ""));
    for (const z of result.data) select.add(new Option(z.name ? z.zone_id + " " + z.name : z.zone_id, z.zone_id));
    select.value = chosen;
  }

  // ---- alerts: snapshot, then the stream -------------------------------------------------
  async function fetchAll(status) {
    const items = [];
    let cursor = null;
    let first = null;
    do {
      const q = new URLSearchParams({ status, limit: "1000" });
      if (cursor) q.set("cursor", cursor);
      const result = await api("GET", "/api/v1/alerts?" + q);
      if (!result.ok) throw result;
      if (first === null) first = Number(result.headers.get("X-Last-Event-ID") || "0");
      items.push(...result.data.items);
      cursor = result.data.next_cursor;
    } while (cursor);
    return { items, lastId: first };
  }

  async function reload() {
    stopStream();
    try {
      const open = await fetchAll("open");
      const acked = await fetchAll("acknowledged");
      state.alerts.clear();
      for (const a of open.items.concat(acked.items)) upsert(a);
      state.lastId = Math.min(open.lastId, acked.lastId);
      render();
      openStream();
    } catch (failure) {
      if (failure && failure.status === 401) { showSignin("Please sign in again."); return; }
      offline();
    }
  }

  function openStream() {
    stopStream();
    const q = state.lastId === null ? "" : "?since=" + state.lastId;
    const source = new EventSource("/api/v1/alerts/stream" + q);
    state.source = source;
    source.onopen = () => { state.retryMs = 1000; setConn(true, "Live"); };
    source.addEventListener("alert", (event) => {
      if (event.lastEventId) state.lastId = Number(event.lastEventId);
      upsert(JSON.parse(event.data));
      render();
    });
    source.addEventListener("reset", () => { state.lastId = null; reload(); });
    source.onerror = () => {
      setConn(false, "Offline, reconnecting…");
      // The browser retries by itself after a dropped stream; after a refused or failed
      // response it gives up (CLOSED), so we start again, resuming from the last id.
      if (source.readyState === EventSource.CLOSED) offline();
    };
  }

  function stopStream() {
    if (state.source) { state.source.close(); state.source = null; }
    if (state.retryTimer) { clearTimeout(state.retryTimer); state.retryTimer = null; }
  }

  function offline() {
    stopStream();
    setConn(false, "Offline, reconnecting…");
    state.retryTimer = setTimeout(async () => {
      state.retryTimer = null;
      const who = await api("GET", "/api/v1/session").catch(() => null);
      if (who && who.status === 401) { showSignin("Please sign in again."); return; }
      if (!who || !who.ok) { state.retryMs = Math.min(state.retryMs * 2, 15000); offline(); return; }
      if (state.lastId === null) reload(); else openStream();
    }, state.retryMs);
  }

  function upsert(alert) {
    if (!ENFORCEMENT.has(alert.kind) || !ACTIVE.has(alert.status)) {
      state.alerts.delete(alert.alert_id);
      if (state.openResolve === alert.alert_id) state.openResolve = null;
    } else {
      state.alerts.set(alert.alert_id, alert);
    }
  }

  // ---- officer actions -------------------------------------------------------------------
  async function act(alertId, action, body, button) {
    const err = $("action-error");
    err.hidden = true;
    if (button) button.disabled = true;
    const result = await api("POST", "/api/v1/alerts/" + encodeURIComponent(alertId) + "/" + action, body)
      .catch(() => null);
    if (button) button.disabled = false;
    if (!result) { err.textContent = "Offline: not sent. Try again when connected."; err.hidden = false; return; }
    if (!result.ok) {
      if (result.status === 409) { state.alerts.delete(alertId); render(); }
      err.textContent = problem(result);
      err.hidden = false;
      return;
    }
    if (action === "resolve") state.openResolve = null;
    upsert(result.data);
    render();
    if (action === "ack") {
      // The Acknowledge button is gone now: keep the officer's place on the same alert.
      const li = $("alerts").querySelector('li[data-alert-id="' + CSS.escape(alertId) + '"]');
      if (li) li.querySelector(".resolve-open").focus();
    }
  }

  // ---- rendering -------------------------------------------------------------------------
  function ago(iso) {
    const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return s + " s ago";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + String(s % 60).padStart(2, "0") + " s ago";
    const h = Math.floor(m / 60);
    return h + " h " + String(m % 60).padStart(2, "0") + " min ago";
  }

  function metres(a) {
    if (!state.position || !a.location) return null;
    const rad = Math.PI / 180;
    const dLat = (a.location.lat - state.position.lat) * rad;
    const dLon = (a.location.lon - state.position.lon) * rad;
    const x = Math.sin(dLat / 2) ** 2 +
      Math.cos(state.position.lat * rad) * Math.cos(a.location.lat * rad) * Math.sin(dLon / 2) ** 2;
    return 6371000 * 2 * Math.atan2(Math.sqrt(x), Math.sqrt(1 - x));
  }

  function visible() {
    const zone = $("zone").value;
    const kind = $("kind").value;
    const nearest = document.querySelector('input[name="order"]:checked').value === "nearest";
    const list = [...state.alerts.values()].filter(
      (a) => (!zone || a.zone_id === zone) && (!kind || a.kind === kind));
    const byAge = (a, b) => a.raised_at.localeCompare(b.raised_at) || a.alert_id.localeCompare(b.alert_id);
    if (nearest && state.position) {
      list.sort((a, b) => ((metres(a) ?? Infinity) - (metres(b) ?? Infinity)) || byAge(a, b));
    } else {
      list.sort(byAge);
    }
    return list;
  }

  function render() {
    const ul = $("alerts");
    const focusedId = document.activeElement && document.activeElement.closest("li")
      ? document.activeElement.closest("li").dataset.alertId : null;
    const focusedClass = focusedId ? document.activeElement.className : null;
    const list = visible();
    const template = $("alert-template");
    const nodes = list.map((a) => {
      const existing = ul.querySelector('li[data-alert-id="' + CSS.escape(a.alert_id) + '"]');
      const li = existing || template.content.firstElementChild.cloneNode(true);
      fill(li, a);
      return li;
    });
    ul.replaceChildren(...nodes);
    if (focusedId) {
      const li = ul.querySelector('li[data-alert-id="' + CSS.escape(focusedId) + '"]');
      const target = li && focusedClass ? li.getElementsByClassName(focusedClass.split(" ")[0])[0] : null;
      if (target) target.focus();
    }
    const n = list.length;
    $("count").textContent = n === 0 ? "No open alerts." : n + (n === 1 ? " open alert" : " open alerts");
  }

  function fill(li, a) {
    const fresh = li.dataset.alertId !== a.alert_id;
    li.dataset.alertId = a.alert_id;
    li.classList.toggle("acknowledged", a.status === "acknowledged");
    const titleId = "t-" + a.alert_id.replace(/[^A-Za-z0-9_-]/g, "_");
    const h3 = li.querySelector(".title");
    h3.id = titleId;
    li.querySelector("article").setAttribute("aria-labelledby", titleId);
    li.querySelector(".kind").textContent = KIND_LABEL[a.kind] || a.kind;
    li.querySelector(".bay").textContent = "bay " + (a.bay_id || "");
    li.querySelector(".street").textContent = [a.street, a.zone_id].filter(Boolean).join(", ");
    const age = li.querySelector(".age");
    age.dataset.raised = a.raised_at;
    age.textContent = "Raised " + ago(a.raised_at);
    const d = metres(a);
    li.querySelector(".distance").textContent = d === null ? "" : Math.round(d) + " m away";
    li.querySelector(".state").hidden = a.status !== "acknowledged";
    const ack = li.querySelector(".ack");
    ack.hidden = a.status === "acknowledged";
    ack.setAttribute("aria-label", "Acknowledge " + (KIND_LABEL[a.kind] || a.kind) + " at bay " + a.bay_id);
    const openBtn = li.querySelector(".resolve-open");
    openBtn.setAttribute("aria-label", "Resolve " + (KIND_LABEL[a.kind] || a.kind) + " at bay " + a.bay_id);
    const form = li.querySelector("form.resolve");
    form.hidden = state.openResolve !== a.alert_id;
    openBtn.setAttribute("aria-expanded", String(!form.hidden));
    if (fresh) {
      ack.onclick = () => act(a.alert_id, "ack", { officer: state.me.name }, ack);
      openBtn.onclick = () => {
        state.openResolve = state.openResolve === a.alert_id ? null : a.alert_id;
        render();
        const first = li.querySelector('form.resolve input[name="outcome"]');
        if (first && state.openResolve) first.focus();
      };
      li.querySelector(".resolve-cancel").onclick = () => { state.openResolve = null; render(); openBtn.focus(); };
      form.onsubmit = (event) => {
        event.preventDefault();
        const outcome = form.querySelector('input[name="outcome"]:checked');
        if (!outcome) return;
        const note = form.querySelector("textarea").value.trim();
        act(a.alert_id, "resolve", { officer: state.me.name, outcome: outcome.value, note: note || null },
          form.querySelector('button[type="submit"]'));
      };
    }
  }

  function tick() {
    for (const el of document.querySelectorAll(".age[data-raised]")) {
      el.textContent = "Raised " + ago(el.dataset.raised);
    }
  }

  // ---- location --------------------------------------------------------------------------
  function watchLocation() {
    const geo = $("geo");
    if (!("geolocation" in navigator)) {
      geo.textContent = "This browser cannot give your location: showing oldest first.";
      return;
    }
    navigator.geolocation.watchPosition(
      (pos) => {
        state.position = { lat: pos.coords.latitude, lon: pos.coords.longitude };
        geo.textContent = "Using your location (±" + Math.round(pos.coords.accuracy) + " m).";
        render();
      },
      () => {
        state.position = null;
        geo.textContent = "Location not available: showing oldest first.";
        render();
      },
      { enableHighAccuracy: true, maximumAge: 15000, timeout: 20000 });
  }

  function onOrderChange() {
    const nearest = document.querySelector('input[name="order"]:checked').value === "nearest";
    if (nearest && !state.position) watchLocation();
    render();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("zone").addEventListener("change", render);
    $("kind").addEventListener("change", render);
    for (const r of document.querySelectorAll('input[name="order"]')) r.addEventListener("change", onOrderChange);
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    setInterval(tick, 1000);
    window.addEventListener("online", () => { if (!state.source && state.me) offline(); });
    start();
  });
})();
