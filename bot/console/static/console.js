/* Live updates of the console (server-sent events). Progressive enhancement only: every
   action is a plain form that works without JavaScript. Citizen text is inserted with
   textContent, never as HTML. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var body = document.body;
  var csrf = body.getAttribute("data-csrf") || "";
  var page = body.getAttribute("data-page");
  if (page === "login") { return; }

  var titleEl = document.querySelector("title");
  var baseTitle = titleEl ? titleEl.getAttribute("data-base") : document.title;
  var lastQueued = null;
  var announcer = document.getElementById("live-announcer");
  var soundToggle = document.getElementById("sound-toggle");
  if (soundToggle) {
    soundToggle.checked = localStorage.getItem("guichet-sound") !== "off";
    soundToggle.addEventListener("change", function () {
      localStorage.setItem("guichet-sound", soundToggle.checked ? "on" : "off");
    });
  }

  var audio = null;
  function beep() {
    if (soundToggle && !soundToggle.checked) { return; }
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      var osc = audio.createOscillator(), gain = audio.createGain();
      osc.type = "sine"; osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.3, audio.currentTime + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.4);
      osc.connect(gain); gain.connect(audio.destination);
      osc.start(); osc.stop(audio.currentTime + 0.45);
    } catch (e) { /* no sound available */ }
  }
  document.addEventListener("click", function () { if (audio && audio.state === "suspended") { audio.resume(); } });

  function announce(text) { if (announcer) { announcer.textContent = ""; announcer.textContent = text; } }

  function setCount(queued) {
    document.title = (queued > 0 ? "(" + queued + ") " : "") + baseTitle;
    var counters = document.querySelectorAll("[data-queue-count]");
    for (var i = 0; i < counters.length; i++) { counters[i].textContent = queued > 0 ? String(queued) : ""; }
    if (lastQueued !== null && queued > lastQueued) {
      beep();
      announce(queued === 1 ? "Une personne attend dans la file." : queued + " personnes attendent dans la file.");
    }
    lastQueued = queued;
  }

  var refreshing = false, again = false;
  function refreshQueue() {
    var container = document.getElementById("queue");
    if (!container) { return; }
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch("/fragments/queue", { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var focused = document.activeElement && container.contains(document.activeElement) ? document.activeElement : null;
        if (!focused) { container.innerHTML = html; }  /* our own server's escaped HTML */
        else { again = true; }
      })
      .finally(function () { refreshing = false; if (again) { again = false; setTimeout(refreshQueue, 500); } });
  }

  function label(author, agentName) {
    if (author === "citizen") { return "Usager"; }
    if (author === "agent") { return "Agent" + (agentName ? " (" + agentName + ")" : ""); }
    return "Assistant automatique";
  }
  function time(ts) {
    var d = new Date(ts * 1000);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return two(d.getDate()) + "/" + two(d.getMonth() + 1) + " " + two(d.getHours()) + ":" + two(d.getMinutes());
  }
  var transcript = document.getElementById("transcript");
  var escalationId = body.getAttribute("data-escalation-id");
  var lastEventId = parseInt(body.getAttribute("data-last-event-id") || "0", 10);
  function addMessage(m) {
    if (!transcript || m.id <= lastEventId) { return; }
    lastEventId = m.id;
    var li = document.createElement("li");
    li.className = "msg msg--" + m.author;
    li.setAttribute("data-event-id", String(m.id));
    var meta = document.createElement("p"); meta.className = "msg__meta";
    var who = document.createElement("span"); who.className = "msg__author"; who.textContent = label(m.author, m.agent_name);
    var when = document.createElement("time"); when.textContent = m.time || time(m.timestamp);
    meta.appendChild(who); meta.appendChild(when);
    var text = document.createElement("p"); text.className = "msg__text"; text.textContent = m.text;
    li.appendChild(meta); li.appendChild(text);
    if (m.buttons && m.buttons.length) {
      var b = document.createElement("p"); b.className = "msg__buttons"; b.textContent = "Choix proposés : " + m.buttons.join(" · ");
      li.appendChild(b);
    }
    transcript.appendChild(li);
    transcript.scrollTop = transcript.scrollHeight;
    if (m.author === "citizen") { beep(); }
  }
  if (transcript) { transcript.scrollTop = transcript.scrollHeight; }

  function ended(data) {
    var banner = document.getElementById("ended-banner"), text = document.getElementById("ended-text");
    if (!banner || !text) { return; }
    text.textContent = data.outcome === "annule_par_usager"
      ? "L'usager a quitté la conversation (« annuler ») : le robot a repris la main."
      : "Cette conversation est terminée ; le robot a repris la main.";
    banner.hidden = false;
    var reply = document.getElementById("reply");
    if (reply) { reply.hidden = true; }
  }

  if (window.EventSource) {
    var source = new EventSource("/events");
    source.addEventListener("queue", function (e) {
      var data = JSON.parse(e.data);
      setCount(data.queued);
      if (page === "queue") { refreshQueue(); }
    });
    source.addEventListener("message", function (e) {
      var data = JSON.parse(e.data);
      if (escalationId && String(data.escalation_id) === escalationId) { addMessage(data); }
    });
    source.addEventListener("escalation", function (e) {
      var data = JSON.parse(e.data);
      if (escalationId && String(data.escalation_id) === escalationId && data.status !== "claimed" && data.status !== "queued") { ended(data); }
    });
  }

  var selects = document.querySelectorAll("select[data-autosubmit]");
  for (var i = 0; i < selects.length; i++) {
    selects[i].addEventListener("change", function (e) { e.target.form.submit(); });
  }

  var reply = document.getElementById("reply");
  if (reply) {
    var area = document.getElementById("reply-text"), error = document.getElementById("reply-error");
    area.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); reply.requestSubmit(); }
    });
    reply.addEventListener("submit", function (e) {
      e.preventDefault();
      if (!area.value.trim()) { return; }
      var button = reply.querySelector("button[type=submit]");
      button.disabled = true; error.textContent = "";
      fetch(reply.action, {
        method: "POST", body: new FormData(reply), credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
      }).then(function (r) { return r.json().catch(function () { return { ok: false, error: "Erreur " + r.status }; }); })
        .then(function (data) {
          if (data.ok) { area.value = ""; } else { error.textContent = data.error; }
        })
        .catch(function () { error.textContent = "La console ne répond pas : votre texte est conservé, réessayez."; })
        .finally(function () { button.disabled = false; area.focus(); });
    });
  }
})();
