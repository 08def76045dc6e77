(function () {
  "use strict";
  var WHO = { customer: "Клиент", bot: "Бот", operator: "Оператор", system: "Система" };
  var SYSTEM = { handed_over: "Диалог передан оператору", taken: "Оператор взял диалог",
    returned: "Диалог возвращён боту", closed: "Диалог закрыт", reopened: "Клиент снова написал" };
  var STATES = { bot: "у бота", waiting: "ждёт оператора", operator: "у оператора", closed: "закрыт" };
  // the token lives only in the console's httponly cookie (set by /api/login): no script can read it
  var auth = { operator: localStorage.getItem("handoffOperator") || "" };
  localStorage.removeItem("handoffToken");  // what older versions kept
  var current = null, lastId = 0, draftId = null, conv = null;
  var $ = function (id) { return document.getElementById(id); };

  function api(method, path, body) {
    var headers = { "Content-Type": "application/json" };
    return fetch(path, { method: method, headers: headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (r.status === 401) { showLogin(); }
          if (!r.ok) { var e = new Error((data.error && data.error.message) || ("HTTP " + r.status)); e.code = data.error && data.error.code; throw e; }
          return data;
        });
      });
  }
  function showError(e) { $("error").textContent = e ? "Ошибка: " + e.message : ""; }
  function showLogin() { $("login").hidden = false; $("app").hidden = true; }
  function waited(seconds) {
    var m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
    return m ? m + " мин " + s + " с" : s + " с";
  }
  function summaryText(summary) {
    if (!summary) return "";
    var lines = [];
    if (summary.reason) lines.push("Причина: " + (summary.reason === "copilot" ? "тема в режиме копилота — бот подготовил черновик" : summary.reason));
    if (summary.intent) lines.push("Намерение: " + summary.intent);
    var slots = summary.slots || {};
    var keys = Object.keys(slots);
    if (keys.length) lines.push("Данные: " + keys.map(function (k) { return k + " = " + slots[k]; }).join(", "));
    if (summary.last_messages && summary.last_messages.length) lines.push("Последние сообщения: " + summary.last_messages.join(" / "));
    if (summary.draft && summary.draft.text) lines.push("Черновик бота: " + summary.draft.text);
    return lines.join("\n");
  }
  function item(id, html, onclick) {
    var li = document.createElement("li");
    li.dataset.id = id; li.innerHTML = html; li.onclick = onclick;
    if (id === current) li.className = "active";
    return li;
  }
  function esc(text) { var d = document.createElement("div"); d.textContent = text == null ? "" : String(text); return d.innerHTML; }

  function refreshLists() {
    api("GET", "/api/queue").then(function (data) {
      var ul = $("queue"); ul.innerHTML = "";
      if (!data.queue.length) ul.innerHTML = "<li class='none'>Очередь пуста</li>";
      data.queue.forEach(function (q) {
        var s = q.summary || {};
        ul.appendChild(item(q.conversation_id,
          "<div><b>" + esc(q.ticket_id ? "Тикет " + q.ticket_id : q.conversation_id) + "</b> · ждёт " + waited(q.waiting_seconds) +
          (q.unread ? " · новых: " + q.unread : "") + "</div><div>" + esc(s.intent || "") + " — " +
          esc((s.last_messages || []).slice(-1)[0] || "") + "</div>",
          function () { open(q.conversation_id); }));
      });
    }).catch(function () {});
    api("GET", "/api/mine").then(function (data) {
      var ul = $("mine"); ul.innerHTML = "";
      data.conversations.forEach(function (c) {
        ul.appendChild(item(c.id, "<b>" + esc(c.ticket_id ? "Тикет " + c.ticket_id : c.id) + "</b>", function () { open(c.id); }));
      });
    }).catch(function () {});
  }

  var MODES = { copilot: "копилот", autonomous: "сам" };
  function percent(value) { return value == null ? "—" : Math.round(value * 100) + "%"; }
  function refreshStats() {
    api("GET", "/api/copilot/stats").then(function (data) {
      var body = $("stats").tBodies[0]; body.innerHTML = "";
      Object.keys(data.topics).sort().forEach(function (topic) {
        var t = data.topics[topic], tr = document.createElement("tr");
        tr.innerHTML = "<td>" + esc(topic) + "</td><td class='" + esc(t.mode) + "'>" + esc(MODES[t.mode] || t.mode) +
          "</td><td>" + t.drafts + "</td><td>" + percent(t.like_rate) + "</td><td>" + percent(t.as_is_share) +
          "</td><td>" + (t.mean_edit_distance == null ? "—" : Math.round(t.mean_edit_distance)) + "</td>";
        body.appendChild(tr);
      });
      if (!body.rows.length) body.innerHTML = "<tr><td colspan='6'>Черновиков ещё не было</td></tr>";
    }).catch(function () {});
  }

  function open(id) {
    current = id; lastId = 0; draftId = null;
    $("transcript").innerHTML = ""; $("draft").hidden = true; showError(null);
    $("empty").hidden = true; $("details").hidden = false;
    poll();
    refreshLists();
  }

  function render(data) {
    conv = data;
    $("conv-title").textContent = data.ticket_id ? "Тикет " + data.ticket_id : data.id;
    $("conv-state").textContent = STATES[data.state] || data.state;
    $("conv-state").dataset.state = data.state;
    $("summary").textContent = summaryText(data.summary);
    var mine = data.state === "operator" && data.operator_id === auth.operator;
    $("take").disabled = data.state !== "waiting";
    $("return").disabled = !mine;
    $("close").disabled = data.state === "closed";
    $("reply-send").disabled = !mine; $("draft-ask").disabled = !mine;
    var ol = $("transcript");
    data.messages.forEach(function (m) {
      lastId = Math.max(lastId, m.id);
      var li = document.createElement("li");
      li.className = m.sender; li.dataset.id = m.id;
      li.innerHTML = "<span class='who'>" + esc(WHO[m.sender] || m.sender) + (m.operator_id && m.sender === "operator" ? " (" + esc(m.operator_id) + ")" : "") +
        ":</span>" + esc(m.sender === "system" ? (SYSTEM[m.text] || m.text) : m.text);
      ol.appendChild(li);
    });
    if (data.messages.length) ol.scrollTop = ol.scrollHeight;
  }

  function poll() {
    if (!current) return;
    var id = current;
    api("GET", "/api/conversations/" + encodeURIComponent(id) + "?after=" + lastId)
      .then(function (data) { if (id === current) render(data); })
      .catch(showError);
  }
  function act(path, body) {
    showError(null);
    return api("POST", "/api/conversations/" + encodeURIComponent(current) + path, body)
      .then(function (r) { poll(); refreshLists(); return r; })
      .catch(function (e) { showError(e); throw e; });
  }

  $("take").onclick = function () {
    act("/take").then(function () {
      // a copilot hand-over came with the bot's draft: open it right away
      if (conv && conv.summary && conv.summary.draft && !draftId) $("draft-ask").onclick();
    }).catch(function () {});
  };
  $("return").onclick = function () { act("/return").catch(function () {}); };
  $("close").onclick = function () { act("/close").catch(function () {}); };
  $("reply-form").onsubmit = function (ev) {
    ev.preventDefault();
    var text = $("reply-text").value.trim();
    if (!text) return;
    act("/reply", { text: text }).then(function () { $("reply-text").value = ""; }).catch(function () {});
  };
  $("draft-ask").onclick = function () {
    act("/draft").then(function (d) {
      draftId = d.id;
      $("draft").hidden = false;
      $("draft-text").value = d.text;
      $("draft-meta").textContent = "Тема: " + d.topic + (d.confidence != null ? " · уверенность " + Math.round(d.confidence * 100) + "%" : "") +
        (d.source ? " · источник: " + d.source : "");
    }).catch(function () {});
  };
  function draftCall(path, body) {
    showError(null);
    return api("POST", "/api/drafts/" + draftId + path, body).catch(function (e) { showError(e); throw e; });
  }
  $("draft-like").onclick = function () { draftCall("/rate", { rating: "like" }).then(function () { $("draft-meta").textContent += " · 👍"; }).catch(function () {}); };
  $("draft-dislike").onclick = function () { draftCall("/rate", { rating: "dislike" }).then(function () { $("draft-meta").textContent += " · 👎"; }).catch(function () {}); };
  $("draft-send").onclick = function () {
    draftCall("/send", { text: $("draft-text").value }).then(function () { $("draft").hidden = true; poll(); }).catch(function () {});
  };
  $("draft-discard").onclick = function () { draftCall("/discard").then(function () { $("draft").hidden = true; }).catch(function () {}); };

  $("login-form").onsubmit = function (ev) {
    ev.preventDefault();
    auth = { operator: $("login-operator").value.trim() || "operator" };
    api("POST", "/api/login", { token: $("login-token").value, operator: auth.operator }).then(function () {
      $("login-token").value = "";
      localStorage.setItem("handoffOperator", auth.operator);
      start();
    }).catch(function (e) { $("login-error").textContent = "Не удалось войти: " + e.message; });
  };

  var timers = [];
  function start() {
    $("login").hidden = true; $("app").hidden = false;
    $("who").textContent = "Оператор: " + auth.operator;
    refreshLists(); refreshStats();
    timers.forEach(clearInterval);
    timers = [setInterval(poll, 1000), setInterval(refreshLists, 2000), setInterval(refreshStats, 5000)];
  }
  api("GET", "/api/me").then(function (d) { auth.operator = d.operator; start(); }).catch(showLogin);
})();
