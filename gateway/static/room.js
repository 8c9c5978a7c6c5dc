// The waiting-room page. Keeps the person's place (token in localStorage and a cookie, so a
// refresh or a new tab keeps it), follows the line live over Server-Sent Events (falling
// back to polling when they are blocked), heartbeats in the background, and goes through
// /rooms/{room}/go when it is their turn. No build step, no dependencies.
(function () {
  "use strict";
  var root = document.getElementById("waitroom");
  if (!root) return;
  var room = root.getAttribute("data-room");
  var KEY = "waitroom:" + room;
  var COOKIE = "waitroom_" + room;
  var api = "/v1/rooms/" + encodeURIComponent(room);
  var initial = JSON.parse(root.getAttribute("data-initial") || "{}");

  var token = localStorage.getItem(KEY) || readCookie(COOKIE) || initial.token || null;
  var firstPosition = Number(localStorage.getItem(KEY + ":first")) || null;
  var heartbeatEvery = (initial.heartbeat_interval || 10) * 1000;
  var source = null;
  var sseFailures = 0;
  var polling = null;
  var beating = null;
  var lastAnnounced = null;
  var admittedAt = null;

  function $(id) { return document.getElementById(id); }

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
    if (seconds < 60) return "less than a minute";
    var m = Math.round(seconds / 60);
    return m === 1 ? "about a minute" : "about " + m + " minutes";
  }

  function etaText(data) {
    if (data.eta_seconds === null || data.eta_seconds === undefined) return "";
    var range = data.eta_range;
    if (range && range[1] >= 60) {
      var lo = Math.max(1, Math.floor(range[0] / 60));
      var hi = Math.max(lo, Math.ceil(range[1] / 60));
      return lo === hi ? "Estimated wait: about " + lo + (lo === 1 ? " minute" : " minutes")
        : "Estimated wait: " + lo + "\u2013" + hi + " minutes";
    }
    return "Estimated wait: " + minutes(data.eta_seconds);
  }

  function renderWaiting(data) {
    var position = data.position;
    if (position === null || position === undefined) return;
    if (!firstPosition || position > firstPosition) {
      firstPosition = position;
      try { localStorage.setItem(KEY + ":first", String(position)); } catch (e) {}
    }
    $("position").textContent = String(position);
    $("ahead").textContent = data.ahead === 1 ? "1 person is ahead of you"
      : data.ahead + " people are ahead of you";
    var done = firstPosition > 1 ? (firstPosition - position) / (firstPosition - 1) : 1;
    var pct = Math.max(3, Math.min(100, Math.round(done * 100)));
    $("bar-fill").style.width = pct + "%";
    $("bar").setAttribute("aria-valuenow", String(pct));
    $("eta").textContent = etaText(data);
    root.setAttribute("data-position", String(position));
    announce("You are number " + position + " in line.");
  }

  function renderRoom(status) {
    root.setAttribute("data-room-status", status);
    if (status === "maintenance") { show("maintenance"); announce("The site is under maintenance."); }
    else if (status === "paused" && root.getAttribute("data-show") === "waiting") {
      show("paused"); announce("The line is paused. You keep your place.");
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
    announce("It's your turn. Taking you to the site now.");
    setTimeout(function () { location.assign(data.redirect_url); }, 2000);
  }

  // One answer from enqueue, status, heartbeat or the event stream.
  function render(data) {
    if (data.token) save(data.token);
    if (data.heartbeat_interval) heartbeatEvery = data.heartbeat_interval * 1000;
    if (data.room_status) renderRoom(data.room_status);
    switch (data.state) {
      case "waiting":
        if (data.room_status === "paused") show("paused");
        else if (data.room_status !== "maintenance") show("waiting");
        renderWaiting(data);
        break;
      case "admitted":
        if (data.redirect_url) admitted(data);
        break;
      case "expired":
        stopAll(); forget(); show("expired");
        announce("Your place has expired. You can join the line again.");
        break;
      case "active":
      case "completed":
      case "left":
        stopAll(); forget(); show("ended");
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
      stopAll(); forget(); show("expired");
      announce("Your place has expired. You can join the line again.");
    } else if (code === "room_maintenance") {
      show("maintenance");
      setTimeout(retry, (answer.retryAfter || 30) * 1000);
    } else if (code === "queue_full" || code === "too_many_positions") {
      show("full");
      $("full-reason").textContent = answer.body.error.message;
    } else {
      root.classList.add("offline");
      setTimeout(retry, (answer.retryAfter || 5) * 1000);
    }
  }

  // Rooms under attack ask for a proof of work before a join: fetch a challenge, solve it
  // in a Web Worker (the page stays responsive), send the solution with the join.
  function solveChallenge() {
    $("joining-note").textContent = "Checking your browser\u2026 this takes a moment.";
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
    if (pow) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify({ pow: pow });
    }
    return fetch(api + "/enqueue", init)
      .then(function (r) { return r.json().then(function (b) {
        return { status: r.status, body: b, retryAfter: Number(r.headers.get("Retry-After")) }; }); })
      .then(function (answer) {
        var code = answer.body && answer.body.error ? answer.body.error.code : "";
        if (answer.status === 200 || answer.status === 201) {
          sessionStorage.removeItem(KEY + ":idem");
          root.classList.remove("offline");
          save(answer.body.token);
          render(answer.body);
          follow();
        } else if (code === "pow_required" || code === "pow_invalid" || code === "pow_reused") {
          solveChallenge().then(join);  // asked for work, or harder work, since the page loaded
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

  if (initial.state) render(initial);
  if (token && (!initial.state || initial.state === "waiting")) {
    if (!initial.state) heartbeat();
    follow();
  } else if (!token && !initial.state) {
    join();
  }
})();
