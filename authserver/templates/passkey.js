// Gatehouse passkeys: runs the WebAuthn ceremony of each `form[data-passkey-form]`.
// Served from the issuer's origin (Content-Security-Policy script-src 'self'); the pages
// work without it for password sign-in.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }
  function fromB64url(s) {
    var b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) {
      b64 += "=";
    }
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out.buffer;
  }
  function toB64url(buf) {
    if (!buf) {
      return null;
    }
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) {
      bin += String.fromCharCode(bytes[i]);
    }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function decodeOptions(pk) {
    pk.challenge = fromB64url(pk.challenge);
    if (pk.user && pk.user.id) {
      pk.user.id = fromB64url(pk.user.id);
    }
    ["excludeCredentials", "allowCredentials"].forEach(function (k) {
      (pk[k] || []).forEach(function (c) {
        c.id = fromB64url(c.id);
      });
    });
    return pk;
  }
  function encodeCredential(c) {
    var r = c.response;
    var response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      if (r.getTransports) {
        response.transports = r.getTransports();
      }
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      response.userHandle = toB64url(r.userHandle);
    }
    return {
      id: c.id,
      rawId: toB64url(c.rawId),
      type: c.type,
      response: response,
      extensions: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
    };
  }
  document.querySelectorAll("form[data-passkey-form]").forEach(function (form) {
    var button = form.querySelector("button[data-ceremony]");
    var error = form.querySelector("[data-passkey-error]");
    if (!button) {
      return;
    }
    function fail(message) {
      error.textContent = message;
      error.hidden = false;
      button.disabled = false;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      if (form.reportValidity && !form.reportValidity()) {
        return;
      }
      button.disabled = true;
      error.hidden = true;
      var body = new URLSearchParams();
      body.set("_csrf", form.elements._csrf.value);
      fetch(button.dataset.options, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (r) {
          return r.json().then(function (j) {
            if (!r.ok) {
              throw new Error(j.error || error.dataset.unavailable);
            }
            return j;
          });
        })
        .then(function (options) {
          var publicKey = decodeOptions(options.publicKey);
          return button.dataset.ceremony === "create"
            ? navigator.credentials.create({ publicKey: publicKey })
            : navigator.credentials.get({ publicKey: publicKey });
        })
        .then(function (credential) {
          form.elements.credential.value = JSON.stringify(encodeCredential(credential));
          form.submit();
        })
        .catch(function (e) {
          fail(e && e.name === "NotAllowedError"
            ? error.dataset.cancelled
            : (e && e.message) || error.dataset.failed);
        });
    });
  });
})();
