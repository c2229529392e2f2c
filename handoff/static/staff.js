// What every staff page shares: the sign-in token (sessionStorage "console-token", so the
// console and the report page share one login), authorised requests, signing in and out.
// Pages put text on the page with Staff.el, which uses textContent, never HTML.
"use strict";

window.Staff = (() => {
  const KEY = "console-token";
  const staff = {
    token: sessionStorage.getItem(KEY),
    // The page's own sign-out (hide its views); called when the API answers 401.
    onUnauthorised: () => {},

    el(tag, text, className) {
      const node = document.createElement(tag);
      if (text !== undefined && text !== null) node.textContent = String(text);
      if (className) node.className = className;
      return node;
    },

    // The response of an authorised call; an Error (with status and data) when not ok.
    async request(method, path, body) {
      const headers = { "Accept": "application/json" };
      if (staff.token) headers["Authorization"] = "Bearer " + staff.token;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const response = await fetch(path, { method, headers,
        body: body === undefined ? undefined : JSON.stringify(body) });
      if (response.status === 401 && path !== "/api/auth/login") staff.onUnauthorised();
      if (!response.ok) {
        const data = await response.json().catch(() => ({}));
        const error = new Error(data.error || response.statusText);
        error.status = response.status;
        error.data = data;
        throw error;
      }
      return response;
    },

    async login(username, password) {
      const response = await staff.request("POST", "/api/auth/login", { username, password });
      staff.token = (await response.json()).token;
      sessionStorage.setItem(KEY, staff.token);
    },

    // Revoke the token on the server (best effort) and forget it here.
    forget() {
      if (staff.token) {
        fetch("/api/auth/logout", { method: "POST",
          headers: { "Authorization": "Bearer " + staff.token } }).catch(() => {});
      }
      staff.token = null;
      sessionStorage.removeItem(KEY);
    },
  };
  return staff;
})();
