// Interactive API docs, served from the package (no CDN, works offline).
// Signed in to the web UI? Requests use that session cookie; writes get the
// X-CSRF-Token header copied from the cogumi_csrf cookie. With an API key,
// use "Authorize" (it is sent as Authorization: Bearer, and the cookie is
// then ignored by the server).
(function () {
  "use strict";
  var SAFE = { GET: true, HEAD: true, OPTIONS: true };

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function addCsrf(request) {
    var method = (request.method || "GET").toUpperCase();
    var csrf = cookie("cogumi_csrf");
    if (!SAFE[method] && csrf) request.headers["X-CSRF-Token"] = csrf;
    return request;
  }

  window.addEventListener("load", function () {
    window.ui = SwaggerUIBundle({
      url: document.body.getAttribute("data-openapi-url"),
      dom_id: "#swagger-ui",
      deepLinking: true,
      validatorUrl: null,
      withCredentials: true,
      tryItOutEnabled: false,
      requestInterceptor: addCsrf,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
    });
  });
})();
