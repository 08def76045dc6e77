(function () {
  "use strict";
  // Every customer wording is shown with textContent: it is untrusted input.
  var $ = function (id) { return document.getElementById(id); };
  var KINDS = { nlu_fallback: "не понято", low_confidence: "низкая уверенность", ambiguous: "две темы рядом",
    kb_no_answer: "база знаний: нет ответа", kb_clarified: "база знаний: уточнение", not_understood_twice: "не поняли дважды → человек",
    copilot_disliked: "черновик: не понравился", copilot_edited: "черновик: исправлен" };
  var STAGES = { idle: "не запускалось", training: "обучение", evaluating: "оценка на отложенном наборе", loading: "загрузка в сервер",
    loaded: "новая модель загружена", accepted: "новая модель не хуже (не загружалась)", rejected: "новая модель хуже — оставлена прежняя",
    failed: "ошибка" };
  var tab = "nlu", options = { intents: [], entities: [], articles: [] }, polling = null;

  var api = window.consoleApi;  // api.js
  function el(tag, cls, value) { var e = document.createElement(tag); if (cls) e.className = cls; if (value !== undefined) e.textContent = value; return e; }
  function button(label, onclick) { var b = el("button", null, label); b.type = "button"; b.addEventListener("click", onclick); return b; }
  function pct(v) { return v === null || v === undefined ? "—" : (Math.round(v * 1000) / 10) + "%"; }
  function fail(error) {
    if (error.status === 401) { showLogin(); return; }
    $("error").textContent = error.message;
  }
  function showLogin() { $("app").hidden = true; $("login").hidden = false; }

  function select(items, chosen, placeholder) {
    var s = el("select");
    s.appendChild(new Option(placeholder, ""));
    items.forEach(function (item) {
      var option = new Option(item.label, item.value);
      if (item.value === chosen) option.selected = true;
      s.appendChild(option);
    });
    return s;
  }

  function showResults(card, outcome) {
    var list = card.querySelector(".results"); list.innerHTML = "";
    (outcome.results || []).forEach(function (r) {
      list.appendChild(el("li", r.status, (r.status === "accepted" ? "✓ " : "✗ ") + "«" + r.text + "»" +
        (r.status === "accepted" ? (r.file ? " → " + r.file : "") : ": " + r.reason)));
    });
    if (outcome.accepted && !outcome.refused) card.classList.add("done");
  }

  function checkedTexts(card) {
    return Array.prototype.filter.call(card.querySelectorAll(".texts input"), function (box) { return box.checked; })
      .map(function (box) { return box.value; });
  }

  function decide(card, path, body) {
    var texts = checkedTexts(card);
    if (!texts.length) { $("error").textContent = "Отметьте хотя бы одну формулировку."; return; }
    body.texts = texts;
    $("error").textContent = "";
    api("POST", path, body).then(function (outcome) { showResults(card, outcome); loadCounts(); }).catch(fail);
  }

  function nluActions(card, cluster) {
    var actions = card.querySelector(".actions");
    var intents = select(options.intents.map(function (name) { return { value: name, label: name }; }),
      cluster.suggested_intent, "— правильное намерение —");
    intents.setAttribute("aria-label", "Намерение");
    actions.appendChild(intents);
    actions.appendChild(button("Обучить", function () {
      if (!intents.value) { $("error").textContent = "Выберите намерение."; return; }
      decide(card, "/api/review/annotate", { intent: intents.value, entities: card.entities || {} });
    }));
    actions.appendChild(button("Не по теме (out of scope)", function () { decide(card, "/api/review/annotate", { intent: "out_of_scope" }); }));
    actions.appendChild(button("Пропустить", function () { decide(card, "/api/review/dismiss", {}); }));
  }

  function kbActions(card, cluster) {
    var actions = card.querySelector(".actions");
    var offered = Object.keys(cluster.articles || {});
    var articles = options.articles.slice().sort(function (a, b) {
      return (offered.indexOf(b.id) >= 0) - (offered.indexOf(a.id) >= 0);
    }).map(function (a) { return { value: a.id, label: (offered.indexOf(a.id) >= 0 ? "★ " : "") + a.title }; });
    var article = select(articles, offered[0], "— статья —");
    article.setAttribute("aria-label", "Статья");
    actions.appendChild(article);
    actions.appendChild(button("Добавить как вопрос статьи", function () {
      if (!article.value) { $("error").textContent = "Выберите статью."; return; }
      decide(card, "/api/review/kb/alias", { article: article.value });
    }));
    actions.appendChild(button("Новая статья…", function () { newArticle(card); }));
    actions.appendChild(button("Пропустить", function () { decide(card, "/api/review/dismiss", {}); }));
    (cluster.corrections || []).forEach(function (c) {
      var source = String(c.source || "");
      if (source.indexOf("rag:") !== 0) return;
      var box = el("div", "correction");
      box.appendChild(el("div", null, "Черновик бота: " + (c.draft || "")));
      box.appendChild(el("div", null, "Оператор отправил: " + (c.sent || "")));
      box.appendChild(button("Исправить статью " + source.slice(4) + "…", function () { correctArticle(card, source.slice(4), c.sent); }));
      card.querySelector(".actions").after(box);
    });
  }

  function field(label, input) { var l = el("label", null, label + " "); l.appendChild(input); return l; }

  function newArticle(card) {
    var old = card.querySelector(".editor"); if (old) old.remove();
    var editor = el("div", "editor");
    var id = el("input"); id.placeholder = "например, receipt-where"; id.name = "article-id";
    var title = el("input"); title.name = "article-title";
    var body = el("textarea"); body.name = "article-body";
    editor.appendChild(field("Идентификатор (a-z, 0-9, -)", id));
    editor.appendChild(field("Заголовок", title));
    editor.appendChild(field("Текст статьи (markdown)", body));
    editor.appendChild(el("p", "meta", "Отмеченные формулировки станут вопросами статьи."));
    editor.appendChild(button("Создать статью", function () {
      var questions = checkedTexts(card);
      api("POST", "/api/review/kb/articles", { id: id.value, title: title.value, body: body.value, questions: questions })
        .then(function (made) {
          showResults(card, { accepted: questions.length, refused: 0, results: questions.map(function (q) {
            return { text: q, status: "accepted", file: made.file }; }) });
          editor.remove(); loadOptions();
        }).catch(fail);
    }));
    card.appendChild(editor);
  }

  function correctArticle(card, articleId, sent) {
    api("GET", "/api/review/kb/articles/" + encodeURIComponent(articleId)).then(function (article) {
      var old = card.querySelector(".editor"); if (old) old.remove();
      var editor = el("div", "editor");
      editor.appendChild(el("p", "meta", "«" + article.title + "» — " + article.path));
      var body = el("textarea"); body.value = article.body; body.name = "article-body";
      editor.appendChild(field("Текст статьи", body));
      if (sent) editor.appendChild(el("div", "correction", "Как ответил оператор: " + sent));
      editor.appendChild(button("Сохранить исправление", function () {
        api("POST", "/api/review/kb/articles/" + encodeURIComponent(articleId) + "/body", { body: body.value, texts: checkedTexts(card) })
          .then(function (done) { editor.replaceWith(el("p", "meta", "✓ Статья исправлена: " + done.file)); card.classList.add("done"); })
          .catch(fail);
      }));
      card.appendChild(editor);
    }).catch(fail);
  }

  // Entities of one wording: the trainer types the words (as they stand in the message) and picks
  // the entity; the offsets are found here. Sent with «Обучить» as {text: [{entity, value, start, end}]}.
  function entityEditor(card, text) {
    var box = el("span", "entities");
    var shown = el("span", "entity-list");
    var toggle = button("+ сущность", function () { form.hidden = !form.hidden; });
    toggle.className = "small";
    var form = el("span", "entity-form"); form.hidden = true;
    var value = el("input"); value.placeholder = "слова из сообщения"; value.setAttribute("aria-label", "Значение сущности");
    var entity = select(options.entities.map(function (n) { return { value: n, label: n }; }), "", "— сущность —");
    entity.setAttribute("aria-label", "Сущность");
    form.appendChild(value); form.appendChild(entity);
    form.appendChild(button("Добавить", function () {
      var start = text.indexOf(value.value.trim());
      if (!value.value.trim() || start < 0) { $("error").textContent = "Таких слов нет в сообщении."; return; }
      if (!entity.value) { $("error").textContent = "Выберите сущность."; return; }
      var found = { entity: entity.value, value: value.value.trim(), start: start, end: start + value.value.trim().length };
      card.entities = card.entities || {};
      (card.entities[text] = card.entities[text] || []).push(found);
      shown.appendChild(el("span", "kind", "[" + found.value + "](" + found.entity + ")"));
      value.value = ""; $("error").textContent = "";
    }));
    box.appendChild(toggle); box.appendChild(shown); box.appendChild(form);
    return box;
  }

  function renderCluster(cluster) {
    var card = document.importNode($("cluster-template").content, true).firstElementChild;
    card.dataset.key = cluster.key;
    card.querySelector(".head").textContent = cluster.text;
    card.querySelector(".count").textContent = "× " + cluster.count + " (диалогов: " + cluster.conversations + ")";
    var meta = card.querySelector(".meta");
    Object.keys(cluster.kinds).forEach(function (kind) { meta.appendChild(el("span", "kind", (KINDS[kind] || kind) + " " + cluster.kinds[kind])); });
    var said = Object.keys(cluster.intents || {});
    if (said.length) meta.appendChild(el("span", null, " NLU: " + said.map(function (n) { return n + " ×" + cluster.intents[n]; }).join(", ")));
    var texts = card.querySelector(".texts");
    cluster.texts.forEach(function (t) {
      var li = el("li"), label = el("label"), box = el("input");
      box.type = "checkbox"; box.checked = true; box.value = t.text;
      label.appendChild(box); label.appendChild(document.createTextNode(" " + t.text + (t.count > 1 ? "  ×" + t.count : "")));
      li.appendChild(label);
      if (tab === "nlu" && options.entities.length) li.appendChild(entityEditor(card, t.text));
      texts.appendChild(li);
    });
    (tab === "kb" ? kbActions : nluActions)(card, cluster);
    return card;
  }

  function loadCounts(data) {
    if (data) $("counts").textContent = "открыто: " + data.open + ", разобрано: " + data.decided;
  }

  function loadInbox() {
    var box = $("inbox"); $("error").textContent = "";
    return api("GET", "/api/review/inbox?area=" + tab).then(function (data) {
      box.innerHTML = "";
      loadCounts(data);
      if (!data.clusters.length) box.appendChild(el("p", "meta", "Здесь пусто: новых ошибок нет."));
      data.clusters.forEach(function (c) { box.appendChild(renderCluster(c)); });
    }).catch(fail);
  }

  function loadHistory() {
    return api("GET", "/api/review/history").then(function (data) {
      var list = $("history").querySelector("ul"); list.innerHTML = "";
      data.decisions.forEach(function (d) {
        var li = el("li", null, d.at.slice(0, 16).replace("T", " ") + " · " + d.reviewer + " · " + d.decision +
          (d.target ? " → " + d.target : "") + " · «" + d.text + "» ");
        li.appendChild(button("Отменить", function () {
          api("POST", "/api/review/undo", { text: d.text }).then(loadHistory).catch(fail);
        }));
        list.appendChild(li);
      });
      if (!data.decisions.length) list.appendChild(el("li", null, "Решений пока нет."));
    }).catch(fail);
  }

  function showRetrain(status) {
    var box = $("retrain-status"); box.innerHTML = "";
    var state = status.state || "idle";
    var line = "Состояние: " + (STAGES[state] || state);
    if (status.progress !== undefined && status.progress !== null && state === "training") line += " — " + Math.round(status.progress * 100) + "%";
    if (status.step && state === "training") line += " (" + status.step + ")";
    if (status.elapsed_seconds && ["training", "evaluating", "loading"].indexOf(state) >= 0) line += ", " + Math.round(status.elapsed_seconds) + " с";
    box.appendChild(el("div", "state-line", line));
    function scores(label, r) {
      box.appendChild(el("div", null, label + pct(r.intent_accuracy) + " намерений, " + pct(r.oos_rate) + " вопросов не по теме распознано"));
    }
    if (status.before) scores("Отложенный набор до: ", status.before);
    if (status.after) scores("после: ", status.after);
    if (status.reason) box.appendChild(el("div", null, status.reason));
    if (status.model) box.appendChild(el("div", "meta", "Модель: " + status.model));
    $("retrain-log").textContent = (status.log_tail || []).join ? (status.log_tail || []).join("\n") : String(status.log_tail || "");
    var running = ["training", "evaluating", "loading", "queued"].indexOf(state) >= 0;
    $("retrain-start").disabled = running;
    if (running && !polling) polling = setInterval(pollRetrain, 2000);
    if (!running && polling) { clearInterval(polling); polling = null; }
  }
  function pollRetrain() { return api("GET", "/api/review/retrain").then(showRetrain).catch(fail); }

  function show(name) {
    tab = name;
    Array.prototype.forEach.call(document.querySelectorAll("#tabs button[data-tab]"), function (b) { b.classList.toggle("on", b.dataset.tab === name); });
    $("inbox").hidden = !(name === "nlu" || name === "kb");
    $("history").hidden = name !== "history";
    $("retrain").hidden = name !== "retrain";
    if (name === "history") return loadHistory();
    if (name === "retrain") return pollRetrain();
    return loadInbox();
  }

  function loadOptions() { return api("GET", "/api/review/options").then(function (o) { options = o; }); }

  function start(me) {
    $("who").textContent = me.trainer;
    $("login").hidden = true; $("app").hidden = false;
    loadOptions().then(function () { return show(tab); }).catch(fail);
  }

  Array.prototype.forEach.call(document.querySelectorAll("#tabs button[data-tab]"), function (b) {
    b.addEventListener("click", function () { show(b.dataset.tab); });
  });
  $("refresh").addEventListener("click", function () { show(tab); });
  $("retrain-start").addEventListener("click", function () {
    api("POST", "/api/review/retrain", { load: $("retrain-load").checked }).then(showRetrain).catch(fail);
  });
  $("login").addEventListener("submit", function (event) {
    event.preventDefault();
    api("POST", "/api/review/login", { token: $("token").value, trainer: $("trainer").value })
      .then(function () { return api("GET", "/api/review/me"); }).then(start)
      .catch(function (e) { $("login-error").textContent = e.message; });
  });
  api("GET", "/api/review/me").then(start).catch(function (e) { if (e.status === 401) showLogin(); else fail(e); });
})();
