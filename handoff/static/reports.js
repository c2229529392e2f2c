// The report page: figures from GET /api/reports (JSON with the charts as PNG) for supervisors
// and admins, signed in with the console's token (sessionStorage "console-token").
// Every value is put on the page with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { requests: 0 };
  const TITLES = {
    category: "类型 type", department: "部门 department", priority: "优先级 priority",
    channel: "渠道 channel", product: "商品 product (top 10)",
    merchant: "商家 merchant (top 10)", improve_aspect: "待改进 aspect to improve",
  };
  const RATES = ["resolution_rate", "first_contact_resolution_rate", "repeat_rate",
                 "overdue_rate"];
  const DURATIONS = ["avg_bot_seconds", "avg_first_response_seconds", "avg_handling_seconds"];
  const COUNTS = ["tickets", "resolved", "first_contact_resolved", "repeat", "overdue",
                  "surveys"];

  const el = Staff.el;
  const call = Staff.request;

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
    $("report-view").hidden = true;
    $("login-view").hidden = false;
  }

  async function start() {
    const user = await (await call("GET", "/api/auth/me")).json();
    $("whoami").textContent = user.username + "（" + user.role + "）";
    $("login-view").hidden = true;
    $("report-view").hidden = false;
    await load();
  }

  function query(format) {
    const params = new URLSearchParams({ period: $("period").value, format });
    if ($("from").value) params.set("from", $("from").value);
    if ($("to").value) params.set("to", $("to").value);
    return "/api/reports?" + params.toString();
  }

  const pct = (v) => (v === null ? "–" : (v * 100).toFixed(1) + "%");
  const points = (v) => (v === null ? "–" : (v >= 0 ? "+" : "") + (v * 100).toFixed(1) + " pt");
  const hours = (v) => (v === null ? "–" : (v / 3600).toFixed(2) + " h");
  const score = (v) => (v === null ? "–" : v.toFixed(2));

  function row(cells) {
    const tr = el("tr");
    cells.forEach((cell, i) => tr.append(el("td", cell, i ? "n" : "")));
    return tr;
  }

  function render(data) {
    const cur = data.current, prev = data.previous, change = data.change;
    $("report-title").textContent = "投诉报告 " + data.period.label;
    $("report-compare").textContent = "对比 compared with " + data.previous_period.label;
    const body = $("summary").querySelector("tbody");
    body.replaceChildren(
      ...COUNTS.map((k) => row([k, cur[k], prev[k], pct(change[k])])),
      ...RATES.map((k) => row([k, pct(cur[k]), pct(prev[k]), points(change[k])])),
      ...DURATIONS.map((k) => row([k.replace("_seconds", ""), hours(cur[k]), hours(prev[k]), pct(change[k])])),
      ...Object.keys(cur.satisfaction).map((k) => row([
        "satisfaction " + k, score(cur.satisfaction[k]), score(prev.satisfaction[k]),
        score(change["satisfaction_" + k])])));
    $("charts").replaceChildren(...Object.entries(data.charts || {}).map(([name, png]) => {
      const img = el("img");
      img.src = "data:image/png;base64," + png;
      img.alt = name;
      img.dataset.chart = name;
      return img;
    }));
    const tables = Object.entries(data.volume).concat([["improve_aspect", data.improve_aspects]]);
    $("volumes").replaceChildren(...tables.map(([name, counts]) => {
      const box = el("div");
      const table = el("table");
      const head = el("tr");
      ["值 value", "本期", "上期", "变化"].forEach((h) => head.append(el("th", h)));
      table.append(head, ...counts.map((c) => row([c.key, c.count, c.previous, pct(c.change)])));
      box.append(el("h3", TITLES[name] || name), table);
      return box;
    }));
    const mentions = (list) => list.map((m) => el("li", m.text + " ×" + m.count));
    $("suggestions").replaceChildren(...mentions(data.suggestions));
    $("unanswered").replaceChildren(...mentions(data.unanswered));
  }

  async function load(event) {
    if (event) event.preventDefault();
    // Only the newest request may draw: an older, slower one must not overwrite it.
    const mine = ++state.requests;
    $("report-error").textContent = "";
    $("report-status").textContent = "生成中…";
    try {
      const response = await call("GET", query("json") + "&charts=1");
      const data = await response.json();
      if (mine === state.requests) render(data);
    } catch (error) {
      if (mine === state.requests) $("report-error").textContent = error.message;
    } finally {
      if (mine === state.requests) $("report-status").textContent = "";
    }
  }

  async function downloadCsv() {
    $("report-error").textContent = "";
    try {
      const blob = await (await call("GET", query("csv"))).blob();
      const link = el("a");
      link.href = URL.createObjectURL(blob);
      link.download = "report.csv";
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    } catch (error) {
      $("report-error").textContent = error.message;
    }
  }

  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("report-form").addEventListener("submit", load);
  $("csv").addEventListener("click", downloadCsv);
  Staff.onUnauthorised = logout;
  if (Staff.token) start().catch(() => logout());
})();
