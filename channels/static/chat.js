/* The web chat widget: plain JavaScript, no build step, safe in an iframe.
 *
 * Every text from the server or the customer is put on the page with textContent, never
 * innerHTML. What the bot and agents say is rendered from the conversation's outbox (by seq),
 * pushed over the WebSocket, with polling while the socket is down; the POST response is not
 * rendered, so nothing is shown twice.
 *
 * Options in the page's query string: ?conversation=ID (else one kept in localStorage),
 * ?lang=zh-Hans|zh-Hant|en (the interface language; Chinese by default).
 */
(function () {
  "use strict";

  var API = "/api/webchat";
  var POLL_MS = 3000;
  var HISTORY_MAX = 200;
  var ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

  var UI = {
    "zh-Hans": {
      title: "在线客服", welcome: "您好！请描述您遇到的问题，我们会尽快为您处理。",
      placeholder: "请输入您的问题…", send: "发送", attach: "发送图片", you: "我",
      bot: "智能客服", agent: "人工客服", image: "图片", retry: "重新发送",
      failed: "发送失败，请检查网络后重试。", tooBig: "图片太大，请选择 {mb} MB 以内的图片。",
      tooLong: "消息太长了，请控制在 {n} 字以内。", reconnecting: "连接中断，正在重连…",
      online: "", notImage: "请选择图片文件。"
    },
    "zh-Hant": {
      title: "線上客服", welcome: "您好！請描述您遇到的問題，我們會儘快為您處理。",
      placeholder: "請輸入您的問題…", send: "發送", attach: "發送圖片", you: "我",
      bot: "智能客服", agent: "人工客服", image: "圖片", retry: "重新發送",
      failed: "發送失敗，請檢查網絡後重試。", tooBig: "圖片太大，請選擇 {mb} MB 以內的圖片。",
      tooLong: "訊息太長了，請控制在 {n} 字以內。", reconnecting: "連線中斷，正在重新連線…",
      online: "", notImage: "請選擇圖片檔案。"
    },
    en: {
      title: "Customer service", welcome: "Hello! Tell us what happened and we will help you.",
      placeholder: "Type your message…", send: "Send", attach: "Send a photo", you: "Me",
      bot: "Assistant", agent: "Agent", image: "Photo", retry: "Send again",
      failed: "Could not send. Please check your connection and try again.",
      tooBig: "The photo is too large; choose one up to {mb} MB.",
      tooLong: "The message is too long; please keep it under {n} characters.",
      reconnecting: "Connection lost, reconnecting…", online: "", notImage: "Please choose an image."
    }
  };

  var root = document.querySelector(".chat");
  var logEl = document.getElementById("log");
  var chipsEl = document.getElementById("chips");
  var form = document.getElementById("form");
  var input = document.getElementById("input");
  var sendButton = document.getElementById("send");
  var fileInput = document.getElementById("file");
  var statusEl = document.getElementById("status");
  var maxBytes = parseInt(root.getAttribute("data-max-bytes"), 10) || 10485760;
  var maxChars = parseInt(root.getAttribute("data-max-chars"), 10) || 4000;
  var params = new URLSearchParams(window.location.search);
  var lang = UI[params.get("lang")] ? params.get("lang") : "zh-Hans";
  var t = UI[lang];

  // ---- storage (localStorage may be blocked in third-party iframes: fall back to memory) ----

  var memory = {};
  function load(key, fallback) {
    try {
      var raw = window.localStorage.getItem(key);
      return raw === null ? fallback : JSON.parse(raw);
    } catch (e) {
      return Object.prototype.hasOwnProperty.call(memory, key) ? memory[key] : fallback;
    }
  }
  function save(key, value) {
    memory[key] = value;
    try { window.localStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* memory only */ }
  }

  function newId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  var conversation = params.get("conversation");
  if (!conversation || !ID_PATTERN.test(conversation)) {
    conversation = load("intakebot.conversation", null);
    if (!conversation || !ID_PATTERN.test(conversation)) {
      conversation = "w" + newId().replace(/-/g, "");
      save("intakebot.conversation", conversation);
    }
  }
  var historyKey = "intakebot.history." + conversation;
  var seqKey = "intakebot.seq." + conversation;
  var history = load(historyKey, []);
  var lastSeq = load(seqKey, 0);

  // ---- rendering ----------------------------------------------------------------------------

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, k) { return String(values[k]); });
  }

  function applyLanguage() {
    document.documentElement.lang = lang;
    document.title = t.title;
    Array.prototype.forEach.call(document.querySelectorAll("[data-i18n]"), function (el) {
      el.textContent = t[el.getAttribute("data-i18n")];
    });
    input.placeholder = t.placeholder;
    input.setAttribute("aria-label", t.placeholder);
    input.maxLength = maxChars;
    document.querySelector(".attach").title = t.attach;
  }

  function scrollDown() { logEl.scrollTop = logEl.scrollHeight; }

  function note(text, isError) {
    var p = document.createElement("p");
    p.className = "note" + (isError ? " error" : "");
    p.textContent = text;
    logEl.appendChild(p);
    scrollDown();
  }

  function bubble(item) {
    var wrap = document.createElement("div");
    var mine = item.author === "customer";
    wrap.className = "msg " + (mine ? "msg-customer" : "msg-bot") +
      (item.author === "agent" ? " msg-agent" : "");
    if (item.seq) wrap.setAttribute("data-seq", String(item.seq));
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = mine ? t.you : item.author === "agent" ? t.agent : t.bot;
    var body = document.createElement("div");
    body.className = "bubble";
    body.textContent = item.text || "";
    if (item.image) {
      var img = document.createElement("img");
      img.alt = item.imageName || t.image;
      img.src = item.image;
      body.appendChild(img);
    } else if (item.imageName) {
      var label = document.createElement("div");
      label.textContent = "[" + t.image + "] " + item.imageName;
      body.appendChild(label);
    }
    wrap.appendChild(who);
    wrap.appendChild(body);
    logEl.appendChild(wrap);
    scrollDown();
    return wrap;
  }

  function showChips(buttons) {
    chipsEl.textContent = "";
    (buttons || []).forEach(function (label) {
      var chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      chip.textContent = label;
      chip.addEventListener("click", function () { send(label, null); });
      chipsEl.appendChild(chip);
    });
  }

  function remember(item) {
    var stored = { author: item.author, text: item.text, seq: item.seq || 0 };
    if (item.imageName) stored.imageName = item.imageName;
    history.push(stored);
    if (history.length > HISTORY_MAX) history = history.slice(-HISTORY_MAX);
    save(historyKey, history);
  }

  function receive(message) {
    if (!message || typeof message.seq !== "number" || message.seq <= lastSeq) return;
    lastSeq = message.seq;
    save(seqKey, lastSeq);
    var item = { author: message.author, text: message.text, seq: message.seq };
    remember(item);
    bubble(item);
    showChips(message.buttons);
  }

  // ---- sending ------------------------------------------------------------------------------

  function setStatus(text) { statusEl.textContent = text || ""; }

  function post(body) {
    return fetch(API + "/" + encodeURIComponent(conversation) + "/messages", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.error || response.statusText);
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
  }

  function send(text, attachment) {
    text = (text || "").trim();
    if (!text && !attachment) return;
    if (text.length > maxChars) { note(format(t.tooLong, { n: maxChars }), true); return; }
    var item = { author: "customer", text: text };
    if (attachment) { item.image = attachment.preview; item.imageName = attachment.filename; }
    var body = { text: text, message_id: newId() };
    if (attachment) {
      body.attachments = [{ filename: attachment.filename, content_type: attachment.type,
                            data: attachment.data }];
    }
    remember(item);
    var el = bubble(item);
    showChips([]);
    deliver(el, body);
  }

  function deliver(el, body) {
    el.classList.add("pending");
    el.classList.remove("failed");
    var old = el.querySelector(".retry");
    if (old) old.remove();
    post(body).then(function () {
      el.classList.remove("pending");
      poll();  // the replies are in the outbox now; the socket may be slower or down
    }).catch(function (error) {
      el.classList.remove("pending");
      el.classList.add("failed");
      if (error.status && error.status < 500) { note(error.message, true); return; }
      var retry = document.createElement("button");
      retry.type = "button";
      retry.className = "retry";
      retry.textContent = t.retry;
      // The same message_id: if the first try did reach the bot, it is answered once.
      retry.addEventListener("click", function () { deliver(el, body); });
      el.appendChild(retry);
      note(t.failed, true);
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    input.value = "";
    send(text, null);
    input.focus();
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : sendButton.click();
    }
  });

  fileInput.addEventListener("change", function () {
    var file = fileInput.files && fileInput.files[0];
    fileInput.value = "";
    if (!file) return;
    if (!/^image\//.test(file.type)) { note(t.notImage, true); return; }
    if (file.size > maxBytes) {
      note(format(t.tooBig, { mb: Math.floor(maxBytes / 1048576) }), true);
      return;
    }
    var reader = new FileReader();
    reader.onload = function () {
      var text = input.value;
      input.value = "";
      send(text, { filename: file.name, type: file.type, data: String(reader.result),
                   preview: URL.createObjectURL(file) });
    };
    reader.onerror = function () { note(t.failed, true); };
    reader.readAsDataURL(file);
  });

  // ---- receiving: WebSocket, polling while it is down --------------------------------------

  var socket = null;
  var pollTimer = null;
  var polling = false;
  var retryMs = 1000;

  function poll() {
    if (polling) return;
    polling = true;
    var url = API + "/" + encodeURIComponent(conversation) + "/messages?after=" + lastSeq;
    fetch(url).then(function (response) {
      return response.ok ? response.json() : { messages: [] };
    }).then(function (data) {
      (data.messages || []).forEach(receive);
    }).catch(function () { /* the next poll or the socket catches up */ })
      .then(function () { polling = false; });
  }

  function startPolling() {
    if (pollTimer === null) pollTimer = window.setInterval(poll, POLL_MS);
  }

  function stopPolling() {
    if (pollTimer !== null) { window.clearInterval(pollTimer); pollTimer = null; }
  }

  function connect() {
    if (!("WebSocket" in window)) { startPolling(); return; }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + API + "/" +
                           encodeURIComponent(conversation) + "/ws?after=" + lastSeq);
    socket.onopen = function () {
      retryMs = 1000;
      stopPolling();
      setStatus(t.online);
      socket.send(JSON.stringify({ after: lastSeq }));
    };
    socket.onmessage = function (event) {
      try { receive(JSON.parse(event.data)); } catch (e) { /* not a message */ }
    };
    socket.onclose = function () {
      socket = null;
      setStatus(t.reconnecting);
      startPolling();
      window.setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    };
  }

  // ---- start --------------------------------------------------------------------------------

  applyLanguage();
  history.forEach(function (item) { bubble(item); });
  poll();
  connect();
  window.intakebotChat = { conversation: conversation };
})();
