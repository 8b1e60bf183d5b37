// Video call on the consultation page: WebRTC between the two browsers, with the live-chat
// WebSocket as the signalling channel. The doctor rings ("call_start"); the patient's page shows
// "Join"; the patient says "ready", the doctor sends the offer, the patient answers, and ICE
// candidates follow both ways. The server records the ring, the connection and the hang-up.
// The card's data-call-state (idle, ringing, calling, connecting, connected, ended, failed) is
// what the page shows and what the browser test waits for.
(function () {
  "use strict";
  var card = document.querySelector("[data-call]");
  if (!card || !window.WebSocket || !window.RTCPeerConnection) { return; }
  var isCaller = card.getAttribute("data-caller") === "true";
  var statusLine = document.getElementById("call-status");
  var videos = document.getElementById("call-videos");
  var localVideo = document.getElementById("call-local");
  var remoteVideo = document.getElementById("call-remote");
  var startBtn = document.getElementById("call-start");
  var joinBtn = document.getElementById("call-join");
  var hangupBtn = document.getElementById("call-hangup");
  var socket = null;
  var me = null;
  var iceServers = [];
  var call = null;        // the call record from the server
  var pc = null;
  var stream = null;
  var pendingIce = [];
  var reportedConnected = false;
  var retryDelay = 1000;

  function text(name) { return card.getAttribute("data-text-" + name) || ""; }

  function setState(state, message) {
    card.setAttribute("data-call-state", state);
    if (statusLine) { statusLine.textContent = message || ""; }
    var active = state === "calling" || state === "connecting" || state === "connected";
    if (startBtn) { startBtn.hidden = !(isCaller && (state === "idle" || state === "ended" || state === "failed")); }
    if (joinBtn) { joinBtn.hidden = state !== "ringing"; }
    if (hangupBtn) { hangupBtn.hidden = !(active || state === "ringing"); }
    if (videos) { videos.hidden = !active; }
  }

  function send(frame) {
    if (socket && socket.readyState === 1) { socket.send(JSON.stringify(frame)); }
  }

  function signal(data) { if (call) { send({ type: "signal", call_id: call.id, data: data }); } }

  function cleanup() {
    if (pc) { pc.onconnectionstatechange = null; pc.close(); pc = null; }
    if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); stream = null; }
    pendingIce = [];
    reportedConnected = false;
    if (localVideo) { localVideo.srcObject = null; }
    if (remoteVideo) { remoteVideo.srcObject = null; }
  }

  function media() {
    if (stream) { return Promise.resolve(stream); }
    return navigator.mediaDevices.getUserMedia({ audio: true, video: true }).then(function (s) {
      stream = s;
      if (localVideo) { localVideo.srcObject = s; }
      return s;
    });
  }

  function peer() {
    pc = new RTCPeerConnection({ iceServers: iceServers });
    pc.onicecandidate = function (e) { if (e.candidate) { signal({ kind: "ice", candidate: e.candidate.toJSON() }); } };
    pc.ontrack = function (e) { if (remoteVideo && e.streams[0]) { remoteVideo.srcObject = e.streams[0]; } };
    pc.onconnectionstatechange = function () {
      if (!pc) { return; }
      if (pc.connectionState === "connected") {
        setState("connected", text("connected"));
        if (!reportedConnected && call) { reportedConnected = true; send({ type: "call_connected", call_id: call.id }); }
      } else if (pc.connectionState === "failed") {
        setState("failed", text("failed"));
        if (call) { send({ type: "hangup", call_id: call.id, reason: "failed" }); }
      }
    };
    stream.getTracks().forEach(function (t) { pc.addTrack(t, stream); });
    return pc;
  }

  function flushIce() {
    pendingIce.splice(0).forEach(function (c) { pc.addIceCandidate(c).catch(function () {}); });
  }

  function onSignal(data) {
    if (data.kind === "ready" && isCaller) {
      media().then(function () {
        if (!pc) { peer(); }
        setState("connecting", text("waiting"));
        return pc.createOffer();
      }).then(function (offer) {
        return pc.setLocalDescription(offer).then(function () { signal({ kind: "offer", sdp: offer.sdp }); });
      }).catch(function () { setState("failed", text("failed")); });
    } else if (data.kind === "offer" && !isCaller && pc) {
      pc.setRemoteDescription({ type: "offer", sdp: data.sdp }).then(function () {
        flushIce();
        return pc.createAnswer();
      }).then(function (answer) {
        return pc.setLocalDescription(answer).then(function () { signal({ kind: "answer", sdp: answer.sdp }); });
      }).catch(function () { setState("failed", text("failed")); });
    } else if (data.kind === "answer" && isCaller && pc) {
      pc.setRemoteDescription({ type: "answer", sdp: data.sdp }).then(flushIce).catch(function () {
        setState("failed", text("failed"));
      });
    } else if (data.kind === "ice" && data.candidate) {
      if (pc && pc.remoteDescription) { pc.addIceCandidate(data.candidate).catch(function () {}); }
      else { pendingIce.push(data.candidate); }
    }
  }

  function onCall(event, record) {
    if (event === "ring") {
      call = record;
      if (isCaller && record.started_by === me.account_id) {
        setState("calling", text("waiting"));
        media().catch(function () { setState("failed", text("no-media")); send({ type: "hangup", call_id: record.id, reason: "failed" }); });
      } else if (!isCaller) {
        setState("ringing", text("ringing"));
      }
    } else if (event === "ended") {
      if (call && record.id === call.id) {
        cleanup();
        call = null;
        setState("ended", text("ended"));
      }
    }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + card.getAttribute("data-live-url"));
    socket.onopen = function () {
      // No chat backlog wanted here: the chat script shows the messages.
      socket.send(JSON.stringify({ type: "hello", after_seq: 2000000000 }));
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === "welcome") {
        retryDelay = 1000;
        me = frame.you;
        iceServers = frame.ice_servers || [];
        if (frame.call && !call) {
          onCall("ring", frame.call);
        } else if (!call) {
          setState("idle", "");
        }
      } else if (frame.type === "call") {
        onCall(frame.event, frame.call);
      } else if (frame.type === "signal" && me && frame.from !== me.account_id && call && frame.call_id === call.id) {
        onSignal(frame.data);
      }
    };
    socket.onclose = function (event) {
      socket = null;
      if (event.code === 4401 || event.code === 4404) { return; }
      window.setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    };
  }

  if (startBtn) {
    startBtn.addEventListener("click", function () {
      startBtn.hidden = true;
      send({ type: "call_start" });
    });
  }
  if (joinBtn) {
    joinBtn.addEventListener("click", function () {
      if (!call) { return; }
      media().then(function () {
        peer();
        setState("connecting", text("waiting"));
        signal({ kind: "ready" });
      }).catch(function () {
        setState("failed", text("no-media"));
        send({ type: "hangup", call_id: call.id, reason: "failed" });
      });
    });
  }
  if (hangupBtn) {
    hangupBtn.addEventListener("click", function () {
      if (call) { send({ type: "hangup", call_id: call.id, reason: card.getAttribute("data-call-state") === "ringing" ? "declined" : "hangup" }); }
    });
  }
  setState("idle", "");
  connect();
})();
