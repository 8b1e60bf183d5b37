// Chat refresh: poll the cookie-authenticated JSON endpoint every 2 s and append new lines.
// Without JavaScript a reload shows everything; this only saves the reload.
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

  function poll() {
    if (stopped) { return; }
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
      if (fresh.length && nearBottom) { list.scrollTop = list.scrollHeight; }
      if (data.changed) { stateChanged(); }
    }).catch(function () { /* offline for a moment: try again next round */ })
      .then(function () { if (!stopped) { window.setTimeout(poll, INTERVAL); } });
  }

  list.scrollTop = list.scrollHeight;
  window.setTimeout(poll, INTERVAL);
})();
