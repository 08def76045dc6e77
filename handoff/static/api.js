// The console's JSON API as its pages call it: same-origin cookies, JSON both ways, and errors that
// carry the server's message ({"error": {"message"}}) and the HTTP status (401: log in again).
window.consoleApi = function (method, path, body) {
  "use strict";
  return fetch(path, { method: method, credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body) }).then(function (r) {
    return r.json().catch(function () { return {}; }).then(function (data) {
      if (!r.ok) { var e = new Error((data.error && data.error.message) || ("HTTP " + r.status)); e.status = r.status; throw e; }
      return data;
    });
  });
};
