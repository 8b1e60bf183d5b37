// Live chat on the consultation page. A WebSocket (/api/v1/consultations/{id}/live, signed in by
// the session cookie) says at once when a message is stored, when the other side types and how
// far they have read; the lines themselves come from the page's JSON endpoint, rendered by the
// server. Without a socket (a proxy that drops it, an old browser) the page polls every 2 s and
// keeps trying to reconnect. Without JavaScript a reload shows everything.
(function () {
  "use strict";
  var list = document.querySelector("[data-chat]");
  if (!list || list.getAttribute("data-open") !== "true") {
    return;
  }
  var url = list.getAttribute("data-poll-url");
  var lastSeq = parseInt(list.getAttribute("data-last-seq") || "0", 10) || 0;
  var imageAlt = list.getAttribute("data-image-alt") || "";
  var INTERVAL = 2000;
  var stopped = false;
  var liveUrl = list.getAttribute("data-live-url");
  var readText = list.getAttribute("data-read-text") || "";
  var typingNote = document.getElementById("chat-typing");
  var socket = null;
  var live = false;           // the socket is open: no polling
  var me = null;              // {account_id, role} from the welcome frame
  var retryDelay = 1000;
  var pollTimer = null;
  var fetching = false;
  var again = false;
  var typingTimer = null;
  var lastTypingSent = 0;
  var readSent = 0;
  var theirRead = 0;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text) { node.textContent = text; }
    return node;
  }

  function render(m) {
    var li = el("li", "msg " + m.side);
    li.setAttribute("data-seq", String(m.seq));
    if (m.side === "event") {
      var ev = el("span", "event", m.body + " ");
      ev.appendChild(el("time", "", m.time));
      li.appendChild(ev);
      return li;
    }
    var meta = el("div", "meta");
    meta.appendChild(el("span", "who", m.who));
    meta.appendChild(document.createTextNode(" "));
    meta.appendChild(el("time", "", m.time));
    var bubble = el("div", "bubble");
    if (m.body) { bubble.appendChild(el("p", "", m.body)); }
    if (m.image_url) {
      var a = el("a");
      a.href = m.image_url; a.target = "_blank"; a.rel = "noopener";
      var img = el("img", "chat-img");
      img.src = m.image_url; img.alt = imageAlt;
      a.appendChild(img);
      bubble.appendChild(a);
    }
    li.appendChild(meta);
    li.appendChild(bubble);
    return li;
  }

  function typing() {
    var fields = document.querySelectorAll("textarea, input[type=text], input[type=file]");
    return Array.prototype.some.call(fields, function (f) {
      return f.type === "file" ? f.value.length > 0 : f.value !== f.defaultValue;
    });
  }

  function stateChanged() {
    // A system line means the consultation changed state: reload to show the new controls,
    // unless the user is in the middle of writing something.
    if (!typing()) {
      window.location.replace(list.getAttribute("data-page-url") || window.location.pathname);
      stopped = true;
      return;
    }
    var note = document.getElementById("chat-changed");
    if (note) { note.hidden = false; }
  }

  function fetchNew() {
    // One request at a time; a message event that arrives meanwhile asks for another round.
    if (stopped) { return; }
    if (fetching) { again = true; return; }
    fetching = true;
    fetch(url + "?after_seq=" + lastSeq, {
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
      cache: "no-store"
    }).then(function (r) {
      if (r.status === 401 || r.status === 403 || r.status === 404) { stopped = true; return null; }
      return r.ok ? r.json() : null;
    }).then(function (data) {
      if (!data) { return; }
      var empty = list.querySelector(".chat-empty");
      var fresh = data.messages.filter(function (m) { return m.seq > lastSeq; });
      if (fresh.length && empty) { empty.remove(); }
      var nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
      fresh.forEach(function (m) {
        list.appendChild(render(m));
        lastSeq = Math.max(lastSeq, m.seq);
      });
      if (fresh.length) {
        if (typingNote) { typingNote.hidden = true; }
        showRead();
        sendRead();
      }
      if (fresh.length && nearBottom) { list.scrollTop = list.scrollHeight; }
      if (data.changed) { stateChanged(); }
    }).catch(function () { /* offline for a moment: the next event or round tries again */ })
      .then(function () {
        fetching = false;
        if (again) { again = false; fetchNew(); }
      });
  }

  function poll() {
    pollTimer = null;
    if (stopped || live) { return; }
    fetchNew();
    pollTimer = window.setTimeout(poll, INTERVAL);
  }

  function startPolling() {
    if (!pollTimer && !stopped) { pollTimer = window.setTimeout(poll, INTERVAL); }
  }

  function send(frame) {
    if (live && socket && socket.readyState === 1) { socket.send(JSON.stringify(frame)); }
  }

  function sendRead() {
    if (lastSeq > readSent && document.visibilityState === "visible") {
      readSent = lastSeq;
      send({ type: "read", seq: lastSeq });
    }
  }

  function showRead() {
    // Mark my own lines the other side has read.
    Array.prototype.forEach.call(list.querySelectorAll(".msg.mine"), function (li) {
      var seq = parseInt(li.getAttribute("data-seq") || "0", 10);
      if (seq && seq <= theirRead && !li.classList.contains("read")) {
        li.classList.add("read");
        var meta = li.querySelector(".meta");
        if (meta) { meta.setAttribute("data-read", readText); }
      }
    });
  }

  function onFrame(frame) {
    if (frame.type === "welcome") {
      me = frame.you;
      (frame.reads || []).forEach(function (r) {
        if (r.account_id !== me.account_id) { theirRead = Math.max(theirRead, r.seq); }
      });
      showRead();
      sendRead();
    } else if (frame.type === "message") {
      if (frame.message.seq > lastSeq) { fetchNew(); }
    } else if (frame.type === "typing") {
      if (me && frame.account_id !== me.account_id && typingNote) {
        typingNote.hidden = false;
        window.clearTimeout(typingTimer);
        typingTimer = window.setTimeout(function () { typingNote.hidden = true; }, 4000);
      }
    } else if (frame.type === "read") {
      if (me && frame.account_id !== me.account_id) {
        theirRead = Math.max(theirRead, frame.seq);
        showRead();
      }
    }
  }

  function connect() {
    if (stopped || !liveUrl || !window.WebSocket) { startPolling(); return; }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    try {
      socket = new WebSocket(scheme + window.location.host + liveUrl);
    } catch (e) {
      startPolling();
      return;
    }
    socket.onopen = function () {
      socket.send(JSON.stringify({ type: "hello", after_seq: lastSeq }));
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === "welcome") {
        live = true;
        retryDelay = 1000;
        if (pollTimer) { window.clearTimeout(pollTimer); pollTimer = null; }
        fetchNew();  // whatever was stored while the page had no socket
      }
      onFrame(frame);
    };
    socket.onclose = function (event) {
      live = false;
      socket = null;
      if (event.code === 4401 || event.code === 4404) { stopped = true; return; }
      startPolling();
      window.setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    };
  }

  var composer = document.querySelector("#message-form textarea");
  if (composer) {
    composer.addEventListener("input", function () {
      var now = Date.now();
      if (now - lastTypingSent > 2000) {
        lastTypingSent = now;
        send({ type: "typing" });
      }
    });
  }
  document.addEventListener("visibilitychange", sendRead);

  list.scrollTop = list.scrollHeight;
  connect();
})();
