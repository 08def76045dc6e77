(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var TOPICS = { refund_request: "Возврат", resend_certificate: "Повторная отправка", check_balance: "Баланс",
    certificate_not_accepted: "Не принимают", b2b_documents: "Документы для юрлиц", knowledge_question: "Вопросы (база знаний)",
    request_human: "Позвать человека", complaint: "Жалоба", wrong_address: "Не по адресу", spam: "Спам" };
  var RULES = { insisted_on_human: "клиент настоял", repeated_misses: "не поняли дважды", human_decision: "решает сотрудник",
    irritation: "жалоба / раздражение", api_failure: "сбой системы", copilot: "тема копилота" };
  var MODES = { autonomous: "сам", copilot: "копилот" };
  var ADVICE = { autonomous: "можно самому", copilot: "оставить копилот", "more data": "мало оценок" };
  var since = "7d", charts = {};

  var api = window.consoleApi;  // api.js
  function pct(v) { return v === null || v === undefined ? "—" : Math.round(v * 100) + "%"; }
  function num(v, unit) { return v === null || v === undefined ? "—" : (Math.round(v * 100) / 100) + (unit || ""); }
  function text(el, value) { el.textContent = value; return el; }
  function el(tag, cls, value) { var e = document.createElement(tag); if (cls) e.className = cls; if (value !== undefined) e.textContent = value; return e; }
  function name(topic) { return TOPICS[topic] || topic; }

  function cards(o) {
    var box = $("cards"); box.innerHTML = "";
    [["Диалогов", o.conversations + (o.in_progress ? " (идут: " + o.in_progress + ")" : "")],
     ["Решено ботом", pct(o.resolution_rate)],
     ["Подтверждено клиентом", pct(o.confirmed_resolution_rate)],
     ["Передано человеку", pct(o.handover_rate)],
     ["Реплик до решения", num(o.turns_to_resolution_median)],
     ["Первый ответ (медиана)", num(o.first_reply_seconds_median, " с")],
     ["CSAT", num(o.csat_mean) + " (" + o.csat_ratings + ")"],
     ["Стоимость диалога", num(o.cost_per_conversation, " ₽")],
     ["Не понято NLU", pct(o.fallback_rate)],
     ["База знаний: ответ / уточн. / нет", o.kb_answered + " / " + o.kb_clarified + " / " + o.kb_not_answered]
    ].forEach(function (pair) {
      var card = el("div", "card"); card.appendChild(el("div", "value", pair[1])); card.appendChild(el("div", "label", pair[0]));
      box.appendChild(card);
    });
  }
  function chart(id, config) {
    if (charts[id]) charts[id].destroy();
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options || {});
    charts[id] = new Chart($(id), config);
  }
  function draw(report) {
    var days = report.days;
    chart("chart-days", { type: "bar", data: { labels: days.map(function (d) { return d.date; }), datasets: [
      { label: "Решено (подтв.)", data: days.map(function (d) { return d.resolved_confirmed; }), backgroundColor: "#1a7f37", stack: "s" },
      { label: "Решено (предп.)", data: days.map(function (d) { return d.resolved_assumed; }), backgroundColor: "#7cc98f", stack: "s" },
      { label: "Передано", data: days.map(function (d) { return d.handed_over; }), backgroundColor: "#b35900", stack: "s" },
      { label: "Брошено", data: days.map(function (d) { return d.abandoned; }), backgroundColor: "#999", stack: "s" }] } });
    var topics = report.topics.filter(function (t) { return t.conversations; });
    chart("chart-topics", { type: "bar", data: { labels: topics.map(function (t) { return name(t.topic); }), datasets: [
      { label: "Решено, %", data: topics.map(function (t) { return Math.round((t.resolution_rate || 0) * 100); }), backgroundColor: "#1a7f37" },
      { label: "Передано, %", data: topics.map(function (t) { return Math.round((t.handover_rate || 0) * 100); }), backgroundColor: "#b35900" }] },
      options: { indexAxis: "y", scales: { x: { min: 0, max: 100 } } } });
    var rules = report.overall.handed_over_by_rule;
    chart("chart-rules", { type: "doughnut", data: { labels: Object.keys(rules).map(function (r) { return RULES[r] || r; }),
      datasets: [{ data: Object.values(rules), backgroundColor: ["#b35900", "#d4a017", "#4a6fa5", "#a33", "#777", "#6a4c93"] }] } });
  }
  function table(report) {
    var body = $("topics").tBodies[0]; body.innerHTML = "";
    report.topics.forEach(function (t) {
      var tr = el("tr"), advice = (t.advice || {}).recommendation, copilot = t.copilot || {};
      [name(t.topic), t.conversations, t.resolved_confirmed + "+" + t.resolved_assumed, pct(t.resolution_rate), pct(t.handover_rate),
       num(t.turns_to_resolution_median), num(t.first_reply_seconds_median, " с"), num(t.csat_mean),
       (copilot.rated || 0) + " / " + (copilot.likes || 0), MODES[t.mode] || t.mode || "—"].forEach(function (v) { tr.appendChild(el("td", "", String(v))); });
      var cell = el("td", "advice-" + (advice || "").replace(" ", "-"), ADVICE[advice] || "—");
      cell.title = (t.advice || {}).reason || ""; tr.appendChild(cell);
      var action = el("td");
      if ((advice === "autonomous" || advice === "copilot") && advice !== t.mode) {
        var button = el("button", "", "Применить: " + (MODES[advice] || advice));
        button.onclick = function () {
          api("POST", "/api/copilot/modes", { topic: t.topic, mode: advice, reason: "advice: " + ((t.advice || {}).reason || "") })
            .then(load).catch(function (e) { text($("error"), "Ошибка: " + e.message); });
        };
        action.appendChild(button);
      }
      tr.appendChild(action); body.appendChild(tr);
    });
  }
  function history() {
    return api("GET", "/api/copilot/modes").then(function (data) {
      var ul = $("history"); ul.innerHTML = "";
      if (!data.history.length) ul.appendChild(el("li", "", "Режимы ещё не меняли."));
      data.history.forEach(function (c) {
        ul.appendChild(el("li", "", c.at + " — " + c.operator + ": " + name(c.topic) + " " + (MODES[c.from_mode] || c.from_mode) +
          " → " + (MODES[c.to_mode] || c.to_mode) + (c.reason ? " (" + c.reason + ")" : "")));
      });
    });
  }
  function load() {
    text($("error"), "");
    return api("GET", "/api/analytics/report" + (since ? "?since=" + encodeURIComponent(since) : "")).then(function (report) {
      text($("period-note"), (report.since ? "с " + report.since.slice(0, 16).replace("T", " ") : "за всё время") +
        " · тайм-аут сессии " + report.session_timeout_minutes + " мин");
      cards(report.overall); draw(report); table(report);
      document.body.dataset.loaded = "1";
      return history();
    }).catch(function (e) { text($("error"), "Ошибка: " + e.message); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("#periods button"), function (button) {
    button.onclick = function () {
      since = button.dataset.since;
      Array.prototype.forEach.call(document.querySelectorAll("#periods button"), function (b) { b.classList.toggle("on", b === button); });
      load();
    };
  });
  api("GET", "/api/me").then(function (me) {
    text($("who"), "Оператор: " + me.operator); $("dashboard").hidden = false; load();
  }).catch(function () { $("need-login").hidden = false; });
})();
