// The agent console: plain JavaScript on the REST API and the live WebSocket.
// Everything a customer wrote is put on the page with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { user: null, current: null, renderedId: null,
                  tickets: [], socket: null, pendingText: null };

  const CONFIRMATION = { asked: "已询问客户是否解决", confirmed: "客户确认已解决",
                         denied: "客户表示未解决" };
  // The satisfaction survey (handoff.survey): its questions and aspects as the console names them.
  const SURVEY_SCORES = [["timeliness", "处理及时性"], ["effectiveness", "解决效果"],
                         ["attitude", "服务态度"], ["overall", "总体满意度"]];
  const ASPECTS = { speed: "响应速度", result: "处理结果", attitude: "服务态度",
                    clarity: "沟通清晰", other: "其他" };
  // Statuses in which the holder (or a supervisor) works on a ticket: the API's _WORKING.
  const WORKING = ["assigned", "investigating"];

  const FORM_FIELDS = [
    ["customer_name", "客户姓名"], ["phone", "联系电话"], ["email", "邮箱"],
    ["customer_id", "会员号"], ["member_level", "会员等级"], ["category", "类型"],
    ["subcategory", "子类型"], ["order_id", "订单号"], ["product", "商品"],
    ["purchase_time", "购买时间"], ["incident_time", "发生时间"], ["demand", "诉求"],
    ["demand_note", "诉求说明"], ["description", "问题描述"], ["department", "责任部门"],
  ];

  const el = Staff.el;

  // The JSON of an authorised call ({} when it has none).
  async function api(method, path, body) {
    const response = await Staff.request(method, path, body);
    return response.json().catch(() => ({}));
  }

  function showError(error) {
    $("action-error").textContent = error ? error.message : "";
  }

  // ---- login ---------------------------------------------------------------------------

  async function login(event) {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      await Staff.login($("username").value, $("password").value);
      await start();
    } catch (error) {
      $("login-error").textContent = error.message;
    }
  }

  function logout() {
    Staff.forget();
    if (state.socket) state.socket.close();
    $("desk-view").hidden = true;
    $("login-view").hidden = false;
  }

  async function start() {
    state.user = await api("GET", "/api/auth/me");
    $("whoami").textContent = state.user.username + "（" + state.user.role + "）";
    $("login-view").hidden = true;
    $("desk-view").hidden = false;
    const supervisor = ["supervisor", "admin"].includes(state.user.role);
    document.querySelectorAll(".supervisor").forEach((b) => { b.hidden = !supervisor; });
    // An agent of a department works on its tickets only (the API refuses the others).
    const bound = state.user.role === "agent" && Boolean(state.user.department);
    if (state.user.department && (bound || !$("filter-department").value)) {
      $("filter-department").value = state.user.department;
    }
    $("filter-department").readOnly = bound;
    $("filter-department").title = bound ? "只显示本部门（" + state.user.department + "）的工单" : "";
    connect();
    await loadQueue();
  }

  // ---- the queue -----------------------------------------------------------------------

  async function loadQueue() {
    const params = new URLSearchParams();
    if ($("filter-department").value.trim()) params.set("department", $("filter-department").value.trim());
    if ($("filter-status").value) params.set("status", $("filter-status").value);
    const data = await api("GET", "/api/tickets?" + params.toString());
    state.tickets = data.tickets;
    renderQueue();
  }

  function countdown(due) {
    const ms = new Date(due).getTime() - Date.now();
    const sign = ms < 0 ? "超时 " : "";
    const minutes = Math.floor(Math.abs(ms) / 60000);
    return sign + Math.floor(minutes / 60) + "小时" + (minutes % 60) + "分";
  }

  function renderQueue() {
    const list = $("queue");
    list.replaceChildren();
    for (const t of state.tickets) {
      const item = el("li");
      item.dataset.id = t.id;
      item.className = "ticket-item";
      if (state.current && state.current.id === t.id) item.classList.add("selected");
      if (t.breaches.length) item.classList.add("breached");
      item.append(el("strong", t.number), " ",
        el("span", t.priority, "badge priority-" + t.priority), " ",
        el("span", t.status, "badge status"), " ",
        el("span", t.category || "未分类"), " ",
        el("span", t.assignee || "待认领", "assignee"), " ");
      const due = el("span", countdown(t.sla_due), "countdown");
      due.dataset.due = t.sla_due;
      item.append(due);
      if (t.malicious) item.append(" ", el("span", "疑似恶意", "badge"));
      item.addEventListener("click", () => openTicket(t.id));
      list.append(item);
    }
  }

  // ---- one ticket ----------------------------------------------------------------------

  async function openTicket(id, reveal) {
    showError(null);
    const data = reveal ? await api("POST", "/api/tickets/" + id + "/reveal")
                        : await api("GET", "/api/tickets/" + id);
    const changed = !state.current || state.current.id !== data.id;
    state.current = data;
    renderTicket();
    renderQueue();
    if (changed) {
      $("canned-query").value = "";
      loadCanned().catch(() => {});
    }
  }

  // A live refresh must not wipe what the agent is typing: a field takes the ticket's value
  // only while it still shows the value rendered last, or when another ticket is opened.
  function fill(input, value, fresh) {
    const text = value === null || value === undefined ? "" : String(value);
    if (fresh || input.value === (input.dataset.shown || "")) input.value = text;
    input.dataset.shown = text;
  }

  function renderTicket() {
    const t = state.current;
    const fresh = state.renderedId !== t.id;
    state.renderedId = t.id;
    $("ticket").hidden = false;
    $("ticket-number").textContent = t.number;
    $("ticket-status").textContent = t.status;
    $("ticket-priority").textContent = t.priority;
    $("ticket-priority").className = "badge priority-" + t.priority;
    $("ticket-assignee").textContent = "处理人：" + (t.assignee || "待认领");
    $("ticket-due").textContent = "首响时限：" + countdown(t.sla_due);
    $("ticket-due").dataset.due = t.sla_due;
    const flags = [];
    if (t.breaches.length) flags.push("超时：" + t.breaches.join("、"));
    if (t.malicious) flags.push("疑似恶意投诉");
    if (t.approval) flags.push("审批：" + t.approval);
    $("ticket-flags").textContent = flags.join("；");
    renderBadges(t);
    renderActions(t);

    const transcript = $("transcript");
    transcript.replaceChildren();
    for (const line of t.transcript) {
      const item = el("li", null, line.author);
      item.append(el("span", line.author === "customer" ? "客户" : line.author === "agent" ? "客服" : "机器人", "author"),
                  el("span", line.text, "text"));
      transcript.append(item);
    }
    transcript.scrollTop = transcript.scrollHeight;

    const form = $("form");
    if (!form.children.length) {
      for (const [name, label] of FORM_FIELDS) {
        const row = el("label", label + " ");
        const input = el("input");
        input.name = name;
        row.append(input);
        form.append(row);
      }
    }
    for (const input of form.querySelectorAll("input")) fill(input, t.form[input.name], fresh);

    const notes = $("notes");
    notes.replaceChildren();
    for (const n of t.notes) notes.append(el("li", n.author + "：" + n.text));

    const history = $("history");
    history.replaceChildren();
    for (const h of t.history) {
      history.append(el("li", [h.stage, h.owner || "-", h.result || "", h.next_action || ""]
        .filter(Boolean).join(" · ")));
    }
    const inv = t.investigation;
    for (const field of ["problem", "evidence", "responsible", "proposal"]) {
      fill($("inv-" + field), inv ? inv[field] : null, fresh);
    }
    $("inv-complex").checked = Boolean(inv && inv.complex);
    $("inv-told").checked = Boolean(inv && inv.customer_told);
    $("inv-due").textContent = inv ? "基本事实截止：" + new Date(inv.due).toLocaleString() : "";
    fill($("merchant"), t.merchant, fresh);
    $("solution-view").textContent = t.solution
      ? "方案：" + t.solution + (t.solution_amount ? " " + t.solution_amount + " 元" : "") : "";
    renderSurvey(t.survey);
    renderEvidence(t);
  }

  // The survey as term/value pairs; the suggestion is the customer's text (textContent only).
  function renderSurvey(survey) {
    const box = $("survey");
    box.replaceChildren();
    const when = (at) => new Date(at).toLocaleString();
    const pairs = [];
    if (!survey) {
      pairs.push(["状态", "尚未发送"]);
    } else {
      pairs.push(["发送", (survey.sent_at ? when(survey.sent_at) : "-") + "（" +
                  (survey.method === "web" ? "网页表单" : "对话") + "）"]);
      pairs.push(["回答", survey.answered_at ? when(survey.answered_at) : "尚未回答"]);
      for (const [name, label] of SURVEY_SCORES) {
        pairs.push([label, survey[name] ? survey[name] + " / 5" : "-"]);
      }
      pairs.push(["最满意", ASPECTS[survey.best_aspect] || survey.best_aspect || "-"]);
      pairs.push(["待改进", ASPECTS[survey.improve_aspect] || survey.improve_aspect || "-"]);
      pairs.push(["建议", survey.suggestion || "-"]);
      pairs.push(["二次处理", survey.second_handling ? "已触发（总体满意度过低）" : "否"]);
    }
    for (const [term, value] of pairs) {
      box.append(el("dt", term), el("dd", value, term === "二次处理" && survey &&
                                    survey.second_handling ? "survey-alert" : null));
    }
  }

  // After-care and retention state: read-only badges, each only when it says something.
  function renderBadges(t) {
    const box = $("ticket-badges");
    box.replaceChildren();
    if (t.confirmation) {
      box.append(el("span", CONFIRMATION[t.confirmation] || t.confirmation,
                    "badge badge-confirmation badge-confirmation-" + t.confirmation));
    }
    if (t.reopen_count) box.append(el("span", "重开 " + t.reopen_count + " 次", "badge badge-reopened"));
    if (t.second_handling) box.append(el("span", "二次处理", "badge badge-second-handling"));
    if (t.legal_hold) box.append(el("span", "法务保全", "badge badge-legal-hold"));
  }

  // Buttons shown only when the API would accept them from this user.
  function renderActions(t) {
    const supervisor = ["supervisor", "admin"].includes(state.user.role);
    const mine = t.assignee === state.user.username;
    $("reopen").hidden = !(["resolved", "closed"].includes(t.status) && (supervisor || mine));
    const pending = Boolean(t.merchant) && !t.merchant_answered_at;
    $("merchant-answer").hidden = !(pending && (supervisor || mine) && WORKING.includes(t.status));
    let merchant = "";
    if (t.merchant && t.merchant_answered_at) {
      merchant = "商家 " + t.merchant + " 已于 " + new Date(t.merchant_answered_at).toLocaleString() + " 答复";
    } else if (t.merchant) {
      merchant = "已抄送商家 " + t.merchant + "，答复时限：" + new Date(t.merchant_due).toLocaleString();
    }
    $("merchant-status").textContent = merchant;
  }

  // Asks for a required reason; null when the agent cancels or leaves it empty.
  function ask(question) {
    const answer = window.prompt(question);
    if (answer === null) return null;
    if (!answer.trim()) {
      showError(new Error("请填写内容后再提交"));
      return null;
    }
    return answer.trim();
  }

  async function renderEvidence(t) {
    const box = $("evidence");
    box.replaceChildren();
    for (const e of t.evidence) {
      if (!e.content_type.startsWith("image/")) {
        box.append(el("span", e.filename, "badge"));
        continue;
      }
      const response = await fetch("/api/tickets/" + t.id + "/evidence/" + e.sha256,
        { headers: { "Authorization": "Bearer " + Staff.token } });
      if (!response.ok) continue;
      const img = el("img");
      img.alt = e.filename;
      img.src = URL.createObjectURL(await response.blob());
      box.append(img);
    }
  }

  async function loadCanned() {
    if (!state.current) return;
    const q = $("canned-query").value.trim();
    const data = await api("GET", "/api/tickets/" + state.current.id + "/canned" +
                           (q ? "?q=" + encodeURIComponent(q) : ""));
    const list = $("canned");
    list.replaceChildren();
    for (const reply of data.replies) {
      const item = el("li", reply.question, "canned-item");
      item.title = reply.answer;
      item.addEventListener("click", () => { $("reply").value = reply.answer; });
      list.append(item);
    }
  }

  async function act(path, body) {
    showError(null);
    try {
      state.current = await api("POST", "/api/tickets/" + state.current.id + path, body);
      renderTicket();
      await loadQueue();
    } catch (error) {
      showError(error);
      throw error;
    }
  }

  async function send(confirm) {
    const text = confirm ? state.pendingText : $("reply").value.trim();
    if (!text || !state.current) return;
    const buttons = [$("send"), $("confirm-send")];
    buttons.forEach((b) => { b.disabled = true; });
    showError(null);
    try {
      state.current = await api("POST", "/api/tickets/" + state.current.id + "/messages",
                                { text, confirm: Boolean(confirm) });
      // Only what was sent is cleared: the agent may have started the next message.
      if ($("reply").value.trim() === text) $("reply").value = "";
      $("wording-warning").hidden = true;
      state.pendingText = null;
      renderTicket();
      loadQueue().catch(() => {});
    } catch (error) {
      if (error.status === 422) {
        state.pendingText = text;
        $("wording-phrases").textContent = (error.data.phrases || []).join("、");
        $("wording-warning").hidden = false;
      } else {
        showError(error);
      }
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  async function saveForm() {
    const changes = {};
    for (const input of $("form").querySelectorAll("input")) {
      const before = state.current.form[input.name];
      const now = input.value.trim();
      if (now !== (before === null || before === undefined ? "" : String(before))) {
        changes[input.name] = now || null;
      }
    }
    if (!Object.keys(changes).length) return;
    showError(null);
    try {
      state.current = await api("PATCH", "/api/tickets/" + state.current.id, changes);
      renderTicket();
    } catch (error) {
      showError(error);
    }
  }

  // ---- live updates --------------------------------------------------------------------

  function connect() {
    if (state.socket) state.socket.close();
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/api/console/ws");
    state.socket = socket;
    socket.addEventListener("open", () => socket.send(JSON.stringify({ token: Staff.token })));
    socket.addEventListener("message", async (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "hello") { $("live").textContent = "实时"; return; }
      if (event.type === "sla_breach") {
        $("alerts").append(el("div", "SLA 超时：" + event.number + "（" + event.breaches.join("、") + "）"));
      }
      await loadQueue().catch(() => {});
      if (state.current && event.ticket_id === state.current.id) {
        await openTicket(state.current.id, !state.current.masked).catch(() => {});
      }
    });
    socket.addEventListener("close", () => {
      $("live").textContent = "离线";
      if (Staff.token && state.socket === socket) setTimeout(connect, 3000);
    });
  }

  function tick() {
    document.querySelectorAll("[data-due]").forEach((node) => {
      const prefix = node.id === "ticket-due" ? "首响时限：" : "";
      node.textContent = prefix + countdown(node.dataset.due);
    });
  }

  // ---- wiring --------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    $("filter-department").addEventListener("change", () => loadQueue().catch(showError));
    $("filter-status").addEventListener("change", () => loadQueue().catch(showError));
    $("claim").addEventListener("click", () => act("/claim").catch(() => {}));
    $("release").addEventListener("click", () => act("/release").catch(() => {}));
    $("reveal").addEventListener("click", () => openTicket(state.current.id, true).catch(showError));
    $("approve").addEventListener("click", () => act("/approve").catch(() => {}));
    $("reject").addEventListener("click", () => act("/reject").catch(() => {}));
    $("close").addEventListener("click", () => act("/close").catch(() => {}));
    $("reopen").addEventListener("click", () => {
      const reason = ask("重新打开的原因（记入进度，转二次处理）：");
      if (reason !== null) act("/reopen", { reason }).catch(() => {});
    });
    $("merchant-answer").addEventListener("click", () => {
      const text = ask("商家的答复（记为内部备注，停止 24 小时计时）：");
      if (text !== null) act("/merchant/answer", { text }).catch(() => {});
    });
    $("send").addEventListener("click", () => send(false));
    $("confirm-send").addEventListener("click", () => send(true));
    $("save-form").addEventListener("click", saveForm);
    $("save-investigation").addEventListener("click", async () => {
      showError(null);
      try {
        await api("PUT", "/api/tickets/" + state.current.id + "/investigation", {
          problem: $("inv-problem").value.trim() || null,
          evidence: $("inv-evidence").value.trim() || null,
          responsible: $("inv-responsible").value || null,
          proposal: $("inv-proposal").value.trim() || null,
          complex: $("inv-complex").checked, customer_told: $("inv-told").checked });
        await openTicket(state.current.id, !state.current.masked);
      } catch (error) { showError(error); }
    });
    $("copy-merchant").addEventListener("click",
      () => act("/merchant", { merchant: $("merchant").value.trim() }).catch(() => {}));
    $("flag").addEventListener("click",
      () => act("/flag", { reason: $("flag-reason").value.trim() }).catch(() => {}));
    $("canned-search").addEventListener("click", () => loadCanned().catch(showError));
    $("add-note").addEventListener("click", async () => {
      const text = $("note").value.trim();
      if (!text) return;
      try {
        state.current = await api("POST", "/api/tickets/" + state.current.id + "/notes", { text });
        $("note").value = "";
        renderTicket();
      } catch (error) { showError(error); }
    });
    $("resolve").addEventListener("click", () => {
      const amount = $("amount").value.trim();
      act("/resolve", { solution: $("solution").value, amount: amount ? Number(amount) : null,
                        note: $("resolve-note").value.trim() || null }).catch(() => {});
    });
    setInterval(tick, 1000);
    Staff.onUnauthorised = logout;
    if (Staff.token) start().catch(() => logout());
  });
})();
