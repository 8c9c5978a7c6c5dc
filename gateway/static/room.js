// The waiting-room page. Keeps the person's place (token in localStorage and a cookie, so a
// refresh or a new tab keeps it), follows the line live over Server-Sent Events (falling
// back to polling when they are blocked), heartbeats in the background, and goes through
// /rooms/{room}/go when it is their turn. Its texts come from the catalog the server chose
// for the visitor (data-texts); near the front and when admitted it says so in the tab's
// title, and, if the person asked for it with the button, in a browser notification.
// No build step, no dependencies.
(function () {
  "use strict";
  var root = document.getElementById("waitroom");
  if (!root) return;
  var room = root.getAttribute("data-room");
  var KEY = "waitroom:" + room;
  var COOKIE = "waitroom_" + room;
  var api = "/v1/rooms/" + encodeURIComponent(room);
  var initial = JSON.parse(root.getAttribute("data-initial") || "{}");
  var texts = JSON.parse(root.getAttribute("data-texts") || "{}");
  var baseTitle = document.title;
  var NEAR_FRONT = 3;  // places from the front at which the tab's title says "almost"
  var NOTIFY_KEY = KEY + ":notify";

  var token = localStorage.getItem(KEY) || readCookie(COOKIE) || initial.token || null;
  var firstPosition = Number(localStorage.getItem(KEY + ":first")) || null;
  var heartbeatEvery = (initial.heartbeat_interval || 10) * 1000;
  var source = null;
  var sseFailures = 0;
  var polling = null;
  var beating = null;
  var lastAnnounced = null;
  var admittedAt = null;
  var linkParams = new URLSearchParams(location.search);  // read once: a spent invite leaves the URL
  var invite = linkParams.get("invite");  // an invite link
  var lane = linkParams.get("lane");  // the lane a link joins (/rooms/{room}?lane=table&size=4)
  var opensAt = null;  // in the pre-queue: when the line opens (ms)
  var countdown = null;

  function $(id) { return document.getElementById(id); }

  // A text of the visitor's catalog with its {name} places filled.
  function t(key, values) {
    var text = texts[key] || key;
    return text.replace(/\{([a-z_]+)\}/g, function (all, name) {
      return values && values[name] !== undefined ? String(values[name]) : all;
    });
  }

  function setTitle(prefix) {
    document.title = prefix ? prefix + " \u00b7 " + baseTitle : baseTitle;
  }

  // The party size a link may ask for (/rooms/{room}?size=4), within the room's limit.
  function partySize() {
    var size = Number(linkParams.get("size"));
    var most = Number(root.getAttribute("data-max-party")) || 1;
    return size >= 2 && size <= most && Math.floor(size) === size ? size : 1;
  }

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function save(newToken) {
    token = newToken;
    try { localStorage.setItem(KEY, newToken); } catch (e) { /* private mode: cookie only */ }
    document.cookie = COOKIE + "=" + encodeURIComponent(newToken) + "; path=/rooms/" +
      encodeURIComponent(room) + "; max-age=86400; samesite=lax" +
      (location.protocol === "https:" ? "; secure" : "");
  }

  function forget() {
    token = null;
    firstPosition = null;
    try { localStorage.removeItem(KEY); localStorage.removeItem(KEY + ":first"); } catch (e) {}
    document.cookie = COOKIE + "=; path=/rooms/" + encodeURIComponent(room) + "; max-age=0";
  }

  function show(panel) { root.setAttribute("data-show", panel); }

  function announce(text) {
    if (text === lastAnnounced) return;
    lastAnnounced = text;
    $("announce").textContent = text;
  }

  function minutes(seconds) {
    if (seconds < 60) return t("wait_under_minute");
    var m = Math.round(seconds / 60);
    return m === 1 ? t("wait_one_minute") : t("wait_minutes", { minutes: m });
  }

  function etaText(data) {
    if (data.eta_seconds === null || data.eta_seconds === undefined) return "";
    var range = data.eta_range;
    if (range && range[1] >= 60) {
      var lo = Math.max(1, Math.floor(range[0] / 60));
      var hi = Math.max(lo, Math.ceil(range[1] / 60));
      return lo === hi ? t("eta", { wait: minutes(lo * 60) })
        : t("eta_range_minutes", { low: lo, high: hi });
    }
    return t("eta", { wait: minutes(data.eta_seconds) });
  }

  // Browser notifications: offered with a button, asked for only when it is clicked, and
  // remembered per room; nothing is shown where the browser has blocked them.
  function wantsNotice() {
    try { return localStorage.getItem(NOTIFY_KEY) === "1"; } catch (e) { return false; }
  }

  function noticeState() {
    var box = $("notify-box");
    if (!("Notification" in window) || Notification.permission === "denied") {
      box.hidden = !wantsNotice();
      if (wantsNotice()) { $("notify").hidden = true; $("notify-note").textContent = t("notify_blocked"); }
      return;
    }
    box.hidden = false;
    var on = wantsNotice() && Notification.permission === "granted";
    $("notify").hidden = on;
    $("notify-note").textContent = on ? t("notify_on") : "";
    root.setAttribute("data-notify", on ? "on" : "off");
  }

  function askForNotice() {
    try { localStorage.setItem(NOTIFY_KEY, "1"); } catch (e) {}
    if (Notification.permission === "granted") { noticeState(); return; }
    var asked = Notification.requestPermission(function () { noticeState(); });
    if (asked && asked.then) asked.then(noticeState, noticeState);
  }

  function notifyTurn() {
    if (!wantsNotice() || !("Notification" in window) || Notification.permission !== "granted") return;
    try {
      var n = new Notification(t("notify_title"), { body: t("notify_body"), tag: KEY });
      n.onclick = function () { window.focus(); n.close(); };
      root.setAttribute("data-notified", "1");
    } catch (e) { /* a browser that notifies only from a service worker */ }
  }

  function renderWaiting(data) {
    var position = data.position;
    if (position === null || position === undefined) return;
    if (!firstPosition || position > firstPosition) {
      firstPosition = position;
      try { localStorage.setItem(KEY + ":first", String(position)); } catch (e) {}
    }
    $("position").textContent = String(position);
    $("ahead").textContent = data.ahead === 1 ? t("ahead_one")
      : t("ahead_other", { count: data.ahead });
    var done = firstPosition > 1 ? (firstPosition - position) / (firstPosition - 1) : 1;
    var pct = Math.max(3, Math.min(100, Math.round(done * 100)));
    $("bar-fill").style.width = pct + "%";
    $("bar").setAttribute("aria-valuenow", String(pct));
    $("eta").textContent = etaText(data);
    root.setAttribute("data-position", String(position));
    setTitle(position <= NEAR_FRONT ? "(" + position + ") " + t("title_nearly") : "");
    announce(t("announce_position", { position: position }));
  }

  function clock(seconds) {
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60);
    return (h ? h + ":" + two(m) : String(m)) + ":" + two(seconds % 60);
  }

  // In the pre-queue: no place yet, a countdown to the opening, when places are drawn.
  function tickOpening() {
    var left = Math.max(0, Math.ceil((opensAt - Date.now()) / 1000));
    $("position").textContent = "\u2013";
    $("ahead").textContent = t("opens_in", { time: clock(left) });
    $("eta").textContent = t("opening_draw");
    root.setAttribute("data-opens-in", String(left));
    if (left === 0) { stopCountdown(); setTimeout(poll, 1000); }
  }

  function renderOpening() {
    announce(t("announce_opening",
      { time: clock(Math.max(0, Math.ceil((opensAt - Date.now()) / 1000))) }));
    tickOpening();
    if (!countdown && opensAt > Date.now()) countdown = setInterval(tickOpening, 1000);
  }

  function stopCountdown() {
    if (countdown) { clearInterval(countdown); countdown = null; }
  }

  function renderRoom(status) {
    root.setAttribute("data-room-status", status);
    if (status === "maintenance") { show("maintenance"); announce(t("announce_maintenance")); }
    else if (status === "paused" && root.getAttribute("data-show") === "waiting" && !countdown) {
      show("paused"); announce(t("announce_paused"));
    } else if (status === "active" && root.getAttribute("data-show") === "paused") {
      show("waiting");
    }
  }

  function admitted(data) {
    if (admittedAt) return;
    admittedAt = Date.now();
    stopAll();
    show("admitted");
    var go = $("go");
    go.setAttribute("href", data.redirect_url);
    setTitle(t("title_admitted"));
    notifyTurn();
    announce(t("announce_admitted"));
    setTimeout(function () { location.assign(data.redirect_url); }, 2000);
  }

  // One answer from enqueue, status, heartbeat or the event stream.
  function render(data) {
    if (data.token) save(data.token);
    if (data.heartbeat_interval) heartbeatEvery = data.heartbeat_interval * 1000;
    if (data.room_status) renderRoom(data.room_status);
    if (data.state !== "waiting") stopCountdown();
    switch (data.state) {
      case "waiting":
        // an event stream's position carries no status: the room's last known one holds
        var status = data.room_status || root.getAttribute("data-room-status");
        if (data.opens_at) opensAt = data.opens_at * 1000;
        // in the pre-queue the countdown shows even in a paused room: nobody is let in
        // before the opening anyway, and the paused panel would hide when it is
        var prequeue = (data.position === null || data.position === undefined) && opensAt;
        if (status === "paused" && !prequeue) show("paused");
        else if (status !== "maintenance") show("waiting");
        if (prequeue) renderOpening();
        else { stopCountdown(); opensAt = null; renderWaiting(data); }
        break;
      case "admitted":
        if (data.redirect_url) admitted(data);
        break;
      case "expired":
        stopAll(); forget(); show("expired");
        announce(t("announce_expired"));
        break;
      case "active":
      case "completed":
      case "left":
        stopAll(); forget(); show("ended"); setTitle("");
        break;
    }
  }

  function request(method, path, body) {
    var headers = { "Accept": "application/json" };
    if (token) headers["Authorization"] = "Bearer " + token;
    var init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (json) {
        return { status: r.status, body: json, retryAfter: Number(r.headers.get("Retry-After")) };
      });
    });
  }

  function onError(answer, retry) {
    var code = answer.body && answer.body.error ? answer.body.error.code : "";
    if (answer.status === 401 || answer.status === 403) {
      stopAll(); stopCountdown(); forget(); show("expired");
      announce(t("announce_expired"));
    } else if (code === "room_maintenance") {
      show("maintenance");
      setTimeout(retry, (answer.retryAfter || 30) * 1000);
    } else if (code === "queue_full" || code === "too_many_positions" ||
               code === "room_full" || code === "room_closed") {
      show("full");
      if (code === "room_closed") root.querySelector(".panel.full h2").textContent = t("closed_heading");
      $("full-reason").textContent = answer.body.error.message;
    } else {
      root.classList.add("offline");
      setTimeout(retry, (answer.retryAfter || 5) * 1000);
    }
  }

  // Rooms under attack ask for a proof of work before a join: fetch a challenge, solve it
  // in a Web Worker (the page stays responsive), send the solution with the join.
  function solveChallenge() {
    $("joining-note").textContent = t("checking_browser");
    return fetch(api + "/challenge", { headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (c) {
        if (!c.difficulty) return null;
        return new Promise(function (resolve, reject) {
          var worker = new Worker(root.getAttribute("data-pow-worker"));
          worker.onmessage = function (e) {
            worker.terminate();
            root.setAttribute("data-pow-ms", String(e.data.ms));
            resolve({ challenge: c.challenge, nonce: e.data.nonce });
          };
          worker.onerror = function (e) { worker.terminate(); reject(e); };
          worker.postMessage({ challenge: c.challenge, difficulty: c.difficulty });
        });
      });
  }

  function join(pow) {
    show("joining");
    if (pow === undefined && Number(root.getAttribute("data-pow")) > 0) {
      return solveChallenge().then(join)
        .catch(function () { root.classList.add("offline"); setTimeout(join, 5000); });
    }
    var idem = sessionStorage.getItem(KEY + ":idem");
    if (!idem) {
      idem = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now());
      sessionStorage.setItem(KEY + ":idem", idem);
    }
    var headers = { "Accept": "application/json", "Idempotency-Key": idem };
    var init = { method: "POST", headers: headers, credentials: "same-origin" };
    var body = {};
    if (pow) body.pow = pow;
    if (partySize() > 1) body.size = partySize();
    if (invite) body.invite = invite;
    if (lane) body.lane = lane;
    if (body.pow || body.size || body.invite || body.lane) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(api + "/enqueue", init)
      .then(function (r) { return r.json().then(function (b) {
        return { status: r.status, body: b, retryAfter: Number(r.headers.get("Retry-After")) }; }); })
      .then(function (answer) {
        var code = answer.body && answer.body.error ? answer.body.error.code : "";
        if (answer.status === 200 || answer.status === 201) {
          sessionStorage.removeItem(KEY + ":idem");
          if (invite) history.replaceState(null, "", location.pathname);  // spent: off the URL
          root.classList.remove("offline");
          save(answer.body.token);
          render(answer.body);
          follow();
        } else if (code === "pow_required" || code === "pow_invalid" || code === "pow_reused") {
          solveChallenge().then(join);  // asked for work, or harder work, since the page loaded
        } else if (code.indexOf("invite_") === 0) {
          // an invite that no longer works: say so, and join the line without it
          invite = null;
          root.setAttribute("data-invite-refused", code);
          $("joining-note").textContent = answer.body.error.message;
          announce(answer.body.error.message);
          join(pow);
        } else if (code === "unknown_lane") {
          lane = null;  // a link to a lane the room no longer has: any lane will do
          root.setAttribute("data-lane-refused", code);
          join(pow);
        } else {
          onError(answer, function () { join(); });
        }
      })
      .catch(function () { root.classList.add("offline"); setTimeout(join, 5000); });
  }

  function heartbeat() {
    if (!token) return;
    request("POST", api + "/heartbeat").then(function (answer) {
      if (answer.status === 200) { root.classList.remove("offline"); render(answer.body); }
      else onError(answer, function () {});
    }).catch(function () { root.classList.add("offline"); });
  }

  function poll() {
    request("GET", api + "/status").then(function (answer) {
      if (answer.status === 200) { root.classList.remove("offline"); render(answer.body); }
    }).catch(function () { root.classList.add("offline"); });
  }

  function startPolling() {
    if (polling) return;
    root.setAttribute("data-live", "polling");
    polling = setInterval(poll, 3000);
  }

  function listen() {
    if (!window.EventSource) { startPolling(); return; }
    source = new EventSource(api + "/events?token=" + encodeURIComponent(token));
    root.setAttribute("data-live", "sse");
    ["position", "admitted", "expired", "state"].forEach(function (name) {
      source.addEventListener(name, function (e) {
        sseFailures = 0;
        root.classList.remove("offline");
        render(JSON.parse(e.data));
      });
    });
    source.addEventListener("room", function (e) { renderRoom(JSON.parse(e.data).status); });
    source.addEventListener("token", function (e) { save(JSON.parse(e.data).token); });
    source.addEventListener("open", function () { sseFailures = 0; });
    // the gateway is stopping (scale-down): follow again at once, from another pod
    source.addEventListener("reconnect", function () {
      if (source) { source.close(); source = null; }
      listen();
    });
    source.onerror = function () {
      sseFailures += 1;
      if (source.readyState === EventSource.CLOSED || sseFailures >= 3) {
        source.close();
        source = null;
        startPolling();  // streams blocked (a proxy, a firewall): ask every few seconds
      }
    };
  }

  function follow() {
    stopAll();
    listen();
    beating = setInterval(heartbeat, heartbeatEvery);
  }

  function stopAll() {
    if (source) { source.close(); source = null; }
    if (polling) { clearInterval(polling); polling = null; }
    if (beating) { clearInterval(beating); beating = null; }
  }

  $("rejoin").addEventListener("click", function () { forget(); lastAnnounced = null; join(); });
  $("go").addEventListener("click", function () { stopAll(); });
  $("notify").addEventListener("click", askForNotice);
  noticeState();

  if (initial.state) render(initial);
  if (token && (!initial.state || initial.state === "waiting")) {
    if (!initial.state) heartbeat();
    follow();
  } else if (!token && !initial.state) {
    join();
  }
})();
