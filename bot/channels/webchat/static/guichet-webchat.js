/*
 * Guichet web chat widget: the town hall's assistant on the commune's website.
 *
 * Embed with one line (the widget loads its stylesheet and the Socket.IO client from
 * the same server):
 *   <script src="https://ASSISTANT/webhooks/webchat/static/guichet-webchat.js"
 *           data-title="Assistant de la mairie de Bellerive" defer></script>
 *
 * Options (data- attributes of the script tag): data-server (default: the script's
 * origin), data-title, data-open-label.
 *
 * Accessibility (RGAA): a real <button> with aria-expanded opens a labelled dialog;
 * bot messages are announced by a polite live region; Enter sends, Escape closes and
 * gives the focus back to the button; quick replies are buttons; every text (citizen's
 * or bot's) is inserted as text, never as HTML; links are built element by element.
 * No dependency besides the vendored Socket.IO client.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || window.__guichetWebchat) {
    return;
  }
  window.__guichetWebchat = true;

  var scriptUrl = new URL(script.src, document.baseURI);
  var staticBase = new URL(".", scriptUrl).href;
  var server = script.getAttribute("data-server") || scriptUrl.origin;
  var title = script.getAttribute("data-title") || "Assistant de la mairie";
  var openLabel = script.getAttribute("data-open-label") || "Une question ? Posez-la à l'assistant";
  var STORE = "guichet-webchat";
  var GREETING = "/greet";

  var store = {
    get: function (key) {
      try {
        return window.sessionStorage.getItem(STORE + "." + key);
      } catch (e) {
        return null;
      }
    },
    set: function (key, value) {
      try {
        if (value === null) {
          window.sessionStorage.removeItem(STORE + "." + key);
        } else {
          window.sessionStorage.setItem(STORE + "." + key, value);
        }
      } catch (e) {
        /* private browsing: the conversation just won't survive a reload */
      }
    }
  };

  /* ------------------------------------------------------------ DOM helpers */
  function el(tag, attributes, text) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      node.setAttribute(name, attributes[name]);
    });
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function srOnly(text) {
    return el("span", { "class": "gw-sr-only" }, text);
  }

  /* Builds the text of a bot message: plain text nodes, and links for web addresses,
     e-mail addresses and French phone numbers. Nothing is ever parsed as HTML. */
  var LINK = /(https?:\/\/[^\s<>"']+)|([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})|(\b0[1-9](?:[ .]?\d{2}){4}\b)/g;
  var TRAILING = /[.,;:!?)\]»"']+$/;

  function safeHttpUrl(candidate) {
    try {
      var url = new URL(candidate);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function linkified(text) {
    var fragment = document.createDocumentFragment();
    var last = 0;
    var match;
    LINK.lastIndex = 0;
    while ((match = LINK.exec(text)) !== null) {
      var shown = match[0];
      var href = null;
      var external = false;
      if (match[1]) {
        shown = shown.replace(TRAILING, "");
        href = safeHttpUrl(shown);
        external = true;
      } else if (match[2]) {
        href = "mailto:" + shown;
      } else {
        href = "tel:+33" + shown.replace(/[ .]/g, "").slice(1);
      }
      if (!href) {
        continue;
      }
      fragment.appendChild(document.createTextNode(text.slice(last, match.index)));
      var link = el("a", { href: href }, shown);
      if (external) {
        link.setAttribute("target", "_blank");
        link.setAttribute("rel", "noopener noreferrer");
        link.appendChild(srOnly(" (nouvelle fenêtre)"));
      }
      fragment.appendChild(link);
      last = match.index + shown.length;
      LINK.lastIndex = last;
    }
    fragment.appendChild(document.createTextNode(text.slice(last)));
    return fragment;
  }

  /* ------------------------------------------------------------------ widget */
  var root = el("div", { "class": "gw", lang: "fr" });
  var toggle = el("button", {
    type: "button",
    "class": "gw-toggle",
    "aria-expanded": "false",
    "aria-controls": "gw-panel"
  });
  toggle.appendChild(el("span", { "class": "gw-toggle__icon", "aria-hidden": "true" }));
  toggle.appendChild(el("span", { "class": "gw-toggle__label" }, openLabel));

  var panel = el("div", {
    id: "gw-panel",
    "class": "gw-panel",
    role: "dialog",
    "aria-modal": "false",
    "aria-labelledby": "gw-title",
    "aria-describedby": "gw-notice"
  });
  panel.hidden = true;

  var header = el("div", { "class": "gw-header" });
  header.appendChild(el("h2", { id: "gw-title", "class": "gw-title" }, title));
  var closeButton = el("button", { type: "button", "class": "gw-close" }, "Fermer");
  closeButton.appendChild(srOnly(" la discussion"));
  header.appendChild(closeButton);

  var notice = el(
    "p",
    { id: "gw-notice", "class": "gw-notice" },
    "Assistant automatique de la mairie. Pour parler à une personne, écrivez « agent ». " +
      "Ne donnez pas d'informations sensibles (numéro de sécurité sociale, coordonnées bancaires)."
  );

  var log = el("ol", { "class": "gw-messages", "aria-label": "Conversation", tabindex: "0" });
  var typing = el("p", { "class": "gw-typing", "aria-hidden": "true" }, "L'assistant écrit…");
  typing.hidden = true;
  var status = el("p", { "class": "gw-status", role: "status" });
  var live = el("div", { "class": "gw-sr-only", "aria-live": "polite", "aria-atomic": "false" });

  var form = el("form", { "class": "gw-form", novalidate: "" });
  form.appendChild(el("label", { "for": "gw-input", "class": "gw-label" }, "Votre message"));
  var row = el("div", { "class": "gw-form__row" });
  var input = el("input", {
    id: "gw-input",
    "class": "gw-input",
    type: "text",
    autocomplete: "off",
    enterkeyhint: "send",
    "aria-describedby": "gw-hint"
  });
  var send = el("button", { type: "submit", "class": "gw-send" }, "Envoyer");
  row.appendChild(input);
  row.appendChild(send);
  form.appendChild(row);
  form.appendChild(el("p", { id: "gw-hint", "class": "gw-hint" }, "Entrée pour envoyer, Échap pour fermer."));

  [header, notice, log, typing, status, live, form].forEach(function (part) {
    panel.appendChild(part);
  });
  root.appendChild(toggle);
  root.appendChild(panel);

  /* ---------------------------------------------------------------- messages */
  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }

  function removeReplies() {
    var groups = log.querySelectorAll(".gw-replies");
    Array.prototype.forEach.call(groups, function (group) {
      group.parentNode.removeChild(group);
    });
  }

  function addMessage(sender, text, quickReplies, announce) {
    var item = el("li", { "class": "gw-msg gw-msg--" + sender });
    item.appendChild(srOnly(sender === "bot" ? "L'assistant : " : "Vous : "));
    var bubble = el("p", { "class": "gw-bubble" });
    if (sender === "bot") {
      bubble.appendChild(linkified(text));
    } else {
      bubble.textContent = text;
    }
    item.appendChild(bubble);
    if (quickReplies && quickReplies.length) {
      var group = el("div", { "class": "gw-replies", role: "group", "aria-label": "Réponses proposées" });
      quickReplies.forEach(function (reply) {
        var button = el("button", { type: "button", "class": "gw-reply" }, String(reply.title));
        button.addEventListener("click", function () {
          sendMessage(String(reply.payload || reply.title), String(reply.title), true);
        });
        group.appendChild(button);
      });
      item.appendChild(group);
    }
    log.appendChild(item);
    if (sender === "bot" && announce) {
      /* a long answer is read from its beginning */
      log.scrollTop = Math.max(0, item.offsetTop - 16);
    } else {
      scrollDown();
    }
    if (announce) {
      /* only the latest message stays here, so that reading the page does not meet
         every message twice */
      live.textContent = "";
      live.appendChild(el("p", {}, "L'assistant : " + text));
    }
  }

  /* -------------------------------------------------------------- connection */
  var socket = null;
  var historyShown = false;
  var greetingPending = false;
  var typingTimer = null;

  function setTyping(on) {
    typing.hidden = !on;
    window.clearTimeout(typingTimer);
    if (on) {
      typingTimer = window.setTimeout(function () {
        typing.hidden = true;
      }, 30000);
    }
  }

  function sendMessage(text, display, isQuickReply) {
    removeReplies();
    live.textContent = "";
    addMessage("user", display || text, null, false);
    var data = { message: text, metadata: {} };
    if (isQuickReply) {
      data.quick_reply = true;
      data.metadata.display = display || text;
    }
    if (socket) {
      socket.emit("user_uttered", data);
    }
    setTyping(true);
    input.focus();
  }

  function greetIfNeeded() {
    if (greetingPending && !panel.hidden && socket && socket.connected) {
      greetingPending = false;
      store.set("greeted", "1");
      socket.emit("user_uttered", { message: GREETING, quick_reply: true, metadata: {} });
      setTyping(true);
    }
  }

  function onBotMessage(message) {
    if (!message || typeof message !== "object") {
      return;
    }
    setTyping(false);
    var text = typeof message.text === "string" ? message.text : "";
    var replies = message.quick_replies || message.buttons || [];
    if (!text && message.attachment && message.attachment.payload && message.attachment.payload.src) {
      text = String(message.attachment.payload.src);
    }
    if (text || replies.length) {
      removeReplies();
      addMessage("bot", text, Array.isArray(replies) ? replies : [], true);
    }
  }

  function onHistory(payload) {
    var messages = (payload && payload.messages) || [];
    if (!historyShown) {
      historyShown = true;
      if (log.childNodes.length === 0) {
        messages.forEach(function (message) {
          addMessage(message.sender === "user" ? "user" : "bot", String(message.text || ""), message.quick_replies, false);
        });
      }
      greetingPending = messages.length === 0 && !store.get("greeted");
    }
    greetIfNeeded();
  }

  function connect() {
    if (socket || typeof window.io !== "function") {
      return;
    }
    socket = window.io(server, {
      path: "/socket.io",
      auth: function (callback) {
        callback({ session_id: store.get("session") });
      }
    });
    socket.on("connect", function () {
      status.textContent = "";
      socket.emit("session_request", { session_id: store.get("session") });
    });
    socket.on("session_confirm", function (sessionId) {
      if (typeof sessionId === "string") {
        if (sessionId !== store.get("session")) {
          store.set("greeted", null);
        }
        store.set("session", sessionId);
      }
    });
    socket.on("history", onHistory);
    socket.on("bot_uttered", onBotMessage);
    socket.on("guichet_error", function (error) {
      setTyping(false);
      status.textContent = (error && error.message) || "Une erreur est survenue.";
    });
    socket.on("connect_error", function () {
      status.textContent = "Connexion à l'assistant impossible pour le moment. Nouvelle tentative…";
    });
    socket.on("disconnect", function (reason) {
      if (reason !== "io client disconnect") {
        status.textContent = "Connexion perdue. Nouvelle tentative…";
      }
    });
  }

  function loadClient(callback) {
    if (typeof window.io === "function") {
      callback();
      return;
    }
    var loader = el("script", { src: staticBase + "vendor/socket.io.min.js" });
    loader.addEventListener("load", callback);
    loader.addEventListener("error", function () {
      status.textContent = "L'assistant est indisponible pour le moment.";
    });
    document.head.appendChild(loader);
  }

  /* ------------------------------------------------------------------ dialog */
  function open() {
    panel.hidden = false;
    root.classList.add("gw--open");
    toggle.setAttribute("aria-expanded", "true");
    store.set("open", "1");
    loadClient(connect);
    scrollDown();
    input.focus();
    greetIfNeeded();
  }

  function close() {
    panel.hidden = true;
    root.classList.remove("gw--open");
    toggle.setAttribute("aria-expanded", "false");
    store.set("open", null);
    toggle.focus();
  }

  toggle.addEventListener("click", function () {
    if (panel.hidden) {
      open();
    } else {
      close();
    }
  });
  closeButton.addEventListener("click", close);
  root.addEventListener("keydown", function (event) {
    if ((event.key === "Escape" || event.key === "Esc") && !panel.hidden) {
      event.preventDefault();
      close();
    }
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) {
      status.textContent = "Écrivez votre question avant de l'envoyer.";
      input.focus();
      return;
    }
    status.textContent = "";
    input.value = "";
    sendMessage(text, null, false);
  });

  /* ------------------------------------------------------------------- start */
  function start() {
    var css = el("link", { rel: "stylesheet", href: staticBase + "guichet-webchat.css" });
    document.head.appendChild(css);
    document.body.appendChild(root);
    if (store.get("session")) {
      /* a conversation is under way in this tab: reconnect to show it again */
      loadClient(connect);
      if (store.get("open")) {
        panel.hidden = false;
        root.classList.add("gw--open");
        toggle.setAttribute("aria-expanded", "true");
      }
    }
  }

  if (document.body) {
    start();
  } else {
    document.addEventListener("DOMContentLoaded", start);
  }
})();
