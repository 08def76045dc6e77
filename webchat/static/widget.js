/*!
 * «Дарим» web chat widget — talks to Rasa's socket.io channel (Rasa 3.6, credentials.yml `socketio`).
 * Plain ES2017, no build step. Embed with one tag:
 *
 *   <script src="https://chat.example/static/widget.js"
 *           data-socket-url="https://rasa.example" data-socket-path="/socket.io" defer></script>
 *
 * Options (data-* attributes of that tag, or window.DarimWebchatConfig set before it):
 *   socketUrl   the Rasa server ("" = this page's origin)     socketPath  "/socket.io"
 *   title       header text                                   storageKey  "darim-webchat"
 *   open        "true" to open the panel on load              autostart   "false": only define the API
 *   typingTimeoutMs  how long the typing indicator waits for the bot (default 20000)
 *
 * The socket.io browser client is loaded from vendor/ next to this file unless window.io exists.
 */
(function () {
  'use strict';

  var currentScript = document.currentScript;

  var TEXTS = {
    title: 'Поддержка «Дарим»',
    subtitle: 'Ассистент на связи круглосуточно',
    launcherOpen: 'Открыть чат поддержки',
    launcherClose: 'Свернуть чат поддержки',
    close: 'Свернуть чат',
    operator: 'Позвать оператора',
    operatorMessage: 'позовите оператора',
    operatorHint: 'Передать разговор сотруднику поддержки',
    inputLabel: 'Ваше сообщение',
    placeholder: 'Напишите сообщение…',
    send: 'Отправить',
    connecting: 'Подключаемся…',
    offline: 'Нет соединения, переподключаемся…',
    typing: 'Ассистент печатает…',
    messages: 'Сообщения чата',
    welcome: 'Здравствуйте! Я ассистент «Дарим». Помогу проверить баланс сертификата, отправить его ' +
      'повторно или оформить возврат. Напишите, что случилось.',
    image: 'Изображение',
    you: 'Вы',
    bot: 'Ассистент',
    quickReplies: 'Варианты ответа',
    unread: 'Новое сообщение'
  };

  var HISTORY_LIMIT = 200;

  // ---------------------------------------------------------------- text formatting (pure)

  var HTML_ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

  function escapeHtml(value) {
    return String(value == null ? '' : value).replace(/[&<>"']/g, function (ch) { return HTML_ESCAPES[ch]; });
  }

  /** An http(s)/mailto/tel URL as it is, anything else (javascript:, data:, relative…) → null. */
  function safeUrl(url) {
    var value = String(url == null ? '' : url).trim();
    return /^(https?:\/\/|mailto:|tel:)/i.test(value) && !/[\s<>"]/.test(value) ? value : null;
  }

  var WORD = 'A-Za-z0-9_\\u00C0-\\u024F\\u0400-\\u04FF';
  var BOLD = new RegExp('(^|[^*])\\*\\*([^*\\s](?:[^*\\n]*[^*\\s])?)\\*\\*(?!\\*)', 'g');
  var ITALIC = new RegExp('(^|[^*' + WORD + '])\\*([^*\\s](?:[^*\\n]*[^*\\s])?)\\*(?![*' + WORD + '])', 'g');
  var LINK = /\[([^\]\n]+)\]\(([^()\s]+)\)|((?:https?:\/\/|www\.)[^\s<>"'«»]+)/g;

  /** Escaped text with **bold**, *italic* and line breaks (no links: see renderMarkdown). */
  function renderInline(text) {
    return escapeHtml(text)
      .replace(BOLD, '$1<strong>$2</strong>')
      .replace(ITALIC, '$1<em>$2</em>')
      .replace(/\r\n|\r|\n/g, '<br>');
  }

  function anchor(href, innerHtml) {
    return '<a href="' + escapeHtml(href) + '" target="_blank" rel="noopener noreferrer">' + innerHtml + '</a>';
  }

  /**
   * The bot's text as safe HTML: everything is escaped first; then [title](url) links (http, https,
   * mailto, tel only), bare URLs, **bold**, *italic* and line breaks. Never returns raw input markup.
   */
  function renderMarkdown(text) {
    var source = String(text == null ? '' : text);
    var html = '';
    var last = 0;
    var match;
    LINK.lastIndex = 0;
    while ((match = LINK.exec(source)) !== null) {
      html += renderInline(source.slice(last, match.index));
      if (match[1] !== undefined) {
        var href = safeUrl(match[2]);
        html += href ? anchor(href, renderInline(match[1])) : renderInline(match[0]);
      } else {
        var url = match[3];
        var trailing = /[.,;:!?)\]]+$/.exec(url);
        var tail = trailing ? trailing[0] : '';
        url = url.slice(0, url.length - tail.length);
        var target = safeUrl(/^www\./i.test(url) ? 'https://' + url : url);
        html += (target ? anchor(target, escapeHtml(url)) : escapeHtml(url)) + escapeHtml(tail);
      }
      last = LINK.lastIndex;
    }
    return html + renderInline(source.slice(last));
  }

  /**
   * One bot_uttered payload → the message we show, or null when there is nothing to show
   * (custom payloads, templates and unknown shapes are ignored).
   */
  function normalizeBotMessage(data) {
    if (!data || typeof data !== 'object') {
      return typeof data === 'string' && data.trim() ? { from: 'bot', text: data } : null;
    }
    var message = { from: 'bot' };
    if (typeof data.text === 'string' && data.text.trim()) message.text = data.text;
    var buttons = Array.isArray(data.quick_replies) && data.quick_replies.length ? data.quick_replies
      : Array.isArray(data.buttons) ? data.buttons : [];
    buttons = buttons.filter(function (b) { return b && typeof b === 'object' && (b.title || b.payload); })
      .map(function (b) {
        return { title: String(b.title || b.payload), payload: String(b.payload == null ? b.title : b.payload) };
      });
    if (buttons.length) message.buttons = buttons;
    var image = null;
    if (data.attachment && typeof data.attachment === 'object' && data.attachment.type === 'image') {
      var payload = data.attachment.payload;
      image = payload && typeof payload === 'object' ? payload.src || payload.url : payload;
    } else if (typeof data.image === 'string') {
      image = data.image;
    }
    if (image && safeUrl(image)) message.image = safeUrl(image);
    return message.text || message.buttons || message.image ? message : null;
  }

  // ---------------------------------------------------------------- configuration

  function readConfig(script) {
    var globalConfig = window.DarimWebchatConfig || {};
    var data = (script && script.dataset) || {};
    function pick(name, fallback) {
      if (data[name] !== undefined) return data[name];
      if (globalConfig[name] !== undefined) return globalConfig[name];
      return fallback;
    }
    function flag(value) { return value === true || value === 'true' || value === ''; }
    var base = script && script.src ? script.src.replace(/[^/]*([?#].*)?$/, '') : '';
    return {
      socketUrl: String(pick('socketUrl', '')).replace(/\/+$/, ''),
      socketPath: String(pick('socketPath', '/socket.io')),
      title: String(pick('title', TEXTS.title)),
      storageKey: String(pick('storageKey', 'darim-webchat')),
      open: flag(pick('open', false)),
      autostart: String(pick('autostart', true)) !== 'false',
      typingTimeoutMs: Number(pick('typingTimeoutMs', 20000)) || 20000,
      baseUrl: String(pick('baseUrl', base)),
      ioUrl: String(pick('ioUrl', base + 'vendor/socket.io.min.js')),
      cssUrl: String(pick('cssUrl', base + 'widget.css'))
    };
  }

  // ---------------------------------------------------------------- storage (never throws)

  function makeStore(storage, key) {
    return {
      get: function (name, fallback) {
        try {
          var raw = storage.getItem(key + ':' + name);
          return raw === null ? fallback : JSON.parse(raw);
        } catch (e) { return fallback; }
      },
      set: function (name, value) {
        try { storage.setItem(key + ':' + name, JSON.stringify(value)); } catch (e) { /* private mode, quota */ }
      },
      remove: function (name) {
        try { storage.removeItem(key + ':' + name); } catch (e) { /* ignore */ }
      }
    };
  }

  function safeStorage(name) {
    try { return window[name]; } catch (e) { return null; }
  }

  function memoryStorage() {
    var data = {};
    return {
      getItem: function (k) { return Object.prototype.hasOwnProperty.call(data, k) ? data[k] : null; },
      setItem: function (k, v) { data[k] = String(v); },
      removeItem: function (k) { delete data[k]; }
    };
  }

  function newSessionId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID().replace(/-/g, '');
    return Date.now().toString(16) + Math.random().toString(16).slice(2);
  }

  // ---------------------------------------------------------------- DOM helpers

  function el(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      var value = attributes[name];
      if (value === null || value === undefined || value === false) return;
      if (name === 'className') node.className = value;
      else if (name === 'text') node.textContent = value;
      else if (name === 'html') node.innerHTML = value; // only ever our own escaped markup
      else node.setAttribute(name, value === true ? '' : value);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  var ICON_CHAT = '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z" fill="currentColor"/></svg>';
  var ICON_CLOSE = '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M6 6l12 12M18 6L6 18" stroke="currentColor" stroke-width="2.2" stroke-linecap="round"/></svg>';
  var ICON_SEND = '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M3 20l18-8L3 4v6l12 2-12 2z" fill="currentColor"/></svg>';

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var tag = document.createElement('script');
      tag.src = src;
      tag.async = true;
      tag.onload = function () { resolve(); };
      tag.onerror = function () { reject(new Error('cannot load ' + src)); };
      document.head.appendChild(tag);
    });
  }

  function loadCss(href) {
    if (!href || document.querySelector('link[data-darim-webchat]')) return;
    document.head.appendChild(el('link', { rel: 'stylesheet', href: href, 'data-darim-webchat': true }));
  }

  // ---------------------------------------------------------------- the widget

  function Widget(config) {
    this.config = config;
    var persistent = safeStorage('localStorage') || memoryStorage();
    var perTab = safeStorage('sessionStorage') || memoryStorage();
    this.store = makeStore(persistent, config.storageKey);
    this.tabStore = makeStore(perTab, config.storageKey);
    this.sessionId = this.store.get('session', null);
    this.history = this.store.get('history', []);
    if (!Array.isArray(this.history)) this.history = [];
    this.outbox = [];
    this.ready = false;        // connected and the session confirmed
    this.socket = null;
    this.typingTimer = null;
    this.build();
    this.renderHistory();
    this.setStatus('connecting');
    if (config.open || this.tabStore.get('open', false)) this.open(false);
  }

  Widget.prototype.build = function () {
    var self = this;
    this.launcher = el('button', {
      type: 'button', className: 'dwc-launcher', 'aria-controls': 'dwc-panel', 'aria-expanded': 'false',
      'aria-label': TEXTS.launcherOpen, title: TEXTS.launcherOpen, html: ICON_CHAT
    });
    this.badge = el('span', { className: 'dwc-badge', hidden: true, 'aria-hidden': 'true' });
    this.launcher.appendChild(this.badge);

    this.operatorButton = el('button', {
      type: 'button', className: 'dwc-operator', title: TEXTS.operatorHint, text: TEXTS.operator
    });
    this.closeButton = el('button', {
      type: 'button', className: 'dwc-close', 'aria-label': TEXTS.close, title: TEXTS.close, html: ICON_CLOSE
    });
    var header = el('header', { className: 'dwc-header' }, [
      el('div', { className: 'dwc-heading' }, [
        el('h2', { className: 'dwc-title', id: 'dwc-title', text: this.config.title }),
        el('p', { className: 'dwc-subtitle', text: TEXTS.subtitle })
      ]),
      this.operatorButton,
      this.closeButton
    ]);
    this.status = el('div', { className: 'dwc-status', role: 'status', 'aria-live': 'polite' });
    this.messages = el('div', {
      className: 'dwc-messages', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions',
      'aria-label': TEXTS.messages, tabindex: '0'
    });
    this.typing = el('div', { className: 'dwc-typing', hidden: true, role: 'status', 'aria-label': TEXTS.typing }, [
      el('span', { className: 'dwc-dot' }), el('span', { className: 'dwc-dot' }), el('span', { className: 'dwc-dot' }),
      el('span', { className: 'dwc-sr-only', text: TEXTS.typing })
    ]);
    this.input = el('input', {
      type: 'text', id: 'dwc-input', className: 'dwc-input', placeholder: TEXTS.placeholder,
      autocomplete: 'off', maxlength: '1000', enterkeyhint: 'send'
    });
    this.sendButton = el('button', {
      type: 'submit', className: 'dwc-send', 'aria-label': TEXTS.send, title: TEXTS.send, html: ICON_SEND
    });
    this.form = el('form', { className: 'dwc-form' }, [
      el('label', { 'for': 'dwc-input', className: 'dwc-sr-only', text: TEXTS.inputLabel }),
      this.input,
      this.sendButton
    ]);
    this.panel = el('section', {
      id: 'dwc-panel', className: 'dwc-panel', role: 'dialog', 'aria-labelledby': 'dwc-title', hidden: true
    }, [header, this.status, this.messages, this.typing, this.form]);
    this.root = el('div', { className: 'dwc', id: 'darim-webchat', 'data-state': 'connecting' }, [this.panel, this.launcher]);
    document.body.appendChild(this.root);

    this.launcher.addEventListener('click', function () { self.toggle(); });
    this.closeButton.addEventListener('click', function () { self.close(); });
    this.operatorButton.addEventListener('click', function () {
      self.send(TEXTS.operatorMessage, TEXTS.operatorMessage.charAt(0).toUpperCase() + TEXTS.operatorMessage.slice(1));
    });
    this.form.addEventListener('submit', function (event) {
      event.preventDefault();
      var text = self.input.value.trim();
      if (!text) return;
      self.input.value = '';
      self.send(text);
    });
    this.panel.addEventListener('keydown', function (event) {
      if (event.key === 'Escape') { self.close(); self.launcher.focus(); }
    });
  };

  // -------- panel

  Widget.prototype.open = function (focus) {
    this.panel.hidden = false;
    this.root.classList.add('dwc-is-open');
    this.launcher.setAttribute('aria-expanded', 'true');
    this.launcher.setAttribute('aria-label', TEXTS.launcherClose);
    this.launcher.title = TEXTS.launcherClose;
    this.badge.hidden = true;
    this.tabStore.set('open', true);
    this.scrollToEnd();
    if (focus !== false) this.input.focus();
  };

  Widget.prototype.close = function () {
    this.panel.hidden = true;
    this.root.classList.remove('dwc-is-open');
    this.launcher.setAttribute('aria-expanded', 'false');
    this.launcher.setAttribute('aria-label', TEXTS.launcherOpen);
    this.launcher.title = TEXTS.launcherOpen;
    this.tabStore.set('open', false);
  };

  Widget.prototype.toggle = function () {
    if (this.panel.hidden) this.open(); else this.close();
  };

  // -------- messages

  Widget.prototype.renderHistory = function () {
    this.messages.textContent = '';
    this.messages.appendChild(el('div', { className: 'dwc-msg dwc-msg-bot dwc-welcome' }, [
      el('div', { className: 'dwc-bubble', html: renderMarkdown(TEXTS.welcome) })
    ]));
    var lastUser = -1;
    this.history.forEach(function (m, i) { if (m.from === 'user') lastUser = i; });
    for (var i = 0; i < this.history.length; i++) {
      this.appendMessage(this.history[i], i > lastUser);
    }
  };

  /** Adds one message's DOM; buttons only when the customer has not answered after it. */
  Widget.prototype.appendMessage = function (message, withButtons) {
    var self = this;
    var fromUser = message.from === 'user';
    var node = el('div', { className: 'dwc-msg ' + (fromUser ? 'dwc-msg-user' : 'dwc-msg-bot') }, [
      el('span', { className: 'dwc-sr-only', text: (fromUser ? TEXTS.you : TEXTS.bot) + ': ' })
    ]);
    if (message.text) {
      node.appendChild(fromUser
        ? el('div', { className: 'dwc-bubble', text: message.text })
        : el('div', { className: 'dwc-bubble', html: renderMarkdown(message.text) }));
    }
    if (message.image) {
      var href = safeUrl(message.image);
      if (href) {
        node.appendChild(el('a', { className: 'dwc-image', href: href, target: '_blank', rel: 'noopener noreferrer' }, [
          el('img', { src: href, alt: TEXTS.image, loading: 'lazy' })
        ]));
      }
    }
    if (withButtons && message.buttons && message.buttons.length) {
      var group = el('div', { className: 'dwc-quick-replies', role: 'group', 'aria-label': TEXTS.quickReplies });
      message.buttons.forEach(function (button) {
        var b = el('button', { type: 'button', className: 'dwc-quick-reply', text: button.title });
        b.addEventListener('click', function () { self.send(button.payload, button.title); });
        group.appendChild(b);
      });
      node.appendChild(group);
    }
    this.messages.appendChild(node);
    this.scrollToEnd();
    return node;
  };

  Widget.prototype.remember = function (message) {
    this.history.push(message);
    if (this.history.length > HISTORY_LIMIT) this.history = this.history.slice(-HISTORY_LIMIT);
    this.store.set('history', this.history);
  };

  Widget.prototype.scrollToEnd = function () {
    this.messages.scrollTop = this.messages.scrollHeight;
  };

  /** Sends `payload` to Rasa and shows `shown` (default: the payload) as the customer's bubble. */
  Widget.prototype.send = function (payload, shown) {
    var text = String(payload == null ? '' : payload).trim();
    if (!text) return;
    var quickReplies = this.messages.querySelectorAll('.dwc-quick-replies');
    for (var i = 0; i < quickReplies.length; i++) quickReplies[i].remove();
    var message = { from: 'user', text: String(shown || text), ts: Date.now() };
    this.remember(message);
    this.appendMessage(message, false);
    this.outbox.push(text);
    this.flush();
    this.showTyping();
  };

  Widget.prototype.flush = function () {
    if (!this.ready || !this.socket) return;
    while (this.outbox.length) {
      this.socket.emit('user_uttered', { message: this.outbox.shift(), session_id: this.sessionId });
    }
  };

  Widget.prototype.receive = function (data) {
    var message = normalizeBotMessage(data);
    if (!message) return;
    message.ts = Date.now();
    this.hideTyping();
    this.remember(message);
    this.appendMessage(message, true);
    if (this.panel.hidden) {
      this.badge.hidden = false;
      this.launcher.setAttribute('aria-label', TEXTS.launcherOpen + ' (' + TEXTS.unread.toLowerCase() + ')');
    }
  };

  Widget.prototype.showTyping = function () {
    var self = this;
    this.typing.hidden = false;
    this.scrollToEnd();
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(function () { self.hideTyping(); }, this.config.typingTimeoutMs);
  };

  Widget.prototype.hideTyping = function () {
    clearTimeout(this.typingTimer);
    this.typing.hidden = true;
  };

  // -------- connection

  Widget.prototype.setStatus = function (state) {
    this.root.setAttribute('data-state', state);
    var text = state === 'online' ? '' : state === 'offline' ? TEXTS.offline : TEXTS.connecting;
    this.status.textContent = text;
    this.status.hidden = !text;
  };

  Widget.prototype.connect = function (io) {
    var self = this;
    var options = { path: this.config.socketPath, reconnection: true, reconnectionDelay: 1000, reconnectionDelayMax: 5000 };
    var socket = this.config.socketUrl ? io(this.config.socketUrl, options) : io(options);
    this.socket = socket;
    socket.on('connect', function () {
      // Rasa's session_persistence: the socket joins the room of our session id, so the bot's
      // answers reach every connection (a reload, a reconnect) of this conversation.
      socket.emit('session_request', { session_id: self.sessionId });
    });
    socket.on('session_confirm', function (data) {
      var id = data && typeof data === 'object' ? data.session_id : data;
      if (id) {
        self.sessionId = String(id);
        self.store.set('session', self.sessionId);
        self.root.setAttribute('data-session-id', self.sessionId);
      }
      self.ready = true;
      self.setStatus('online');
      self.flush();
    });
    socket.on('bot_uttered', function (data) { self.receive(data); });
    socket.on('disconnect', function (reason) {
      self.ready = false;
      self.setStatus('offline');
      // the server closed the connection on purpose: socket.io does not retry that by itself
      if (reason === 'io server disconnect') socket.connect();
    });
    socket.on('connect_error', function () {
      self.ready = false;
      self.setStatus('offline');
    });
  };

  // ---------------------------------------------------------------- start

  var api = {
    version: '1.0.0',
    escapeHtml: escapeHtml,
    renderMarkdown: renderMarkdown,
    normalizeBotMessage: normalizeBotMessage,
    widget: null
  };
  window.DarimWebchat = api;

  function start(config) {
    if (api.widget) return api.widget;
    loadCss(config.cssUrl);
    var widget = new Widget(config);
    if (!widget.sessionId) {
      widget.sessionId = newSessionId();
      widget.store.set('session', widget.sessionId);
    }
    widget.root.setAttribute('data-session-id', widget.sessionId);
    api.widget = widget;
    api.open = function () { widget.open(); };
    api.close = function () { widget.close(); };
    api.send = function (text, shown) { widget.send(text, shown); };
    api.sessionId = function () { return widget.sessionId; };
    api.reset = function () {
      widget.store.remove('history');
      widget.store.remove('session');
    };
    var ready = window.io ? Promise.resolve() : loadScript(config.ioUrl);
    ready.then(function () { widget.connect(window.io); }, function () { widget.setStatus('offline'); });
    return widget;
  }

  api.start = function (overrides) {
    var config = readConfig(currentScript);
    Object.keys(overrides || {}).forEach(function (k) { config[k] = overrides[k]; });
    return start(config);
  };

  var config = readConfig(currentScript);
  if (config.autostart) {
    if (document.body) api.start();
    else document.addEventListener('DOMContentLoaded', function () { api.start(); });
  }
})();
