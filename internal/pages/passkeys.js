// guestauth passkeys: the WebAuthn calls of the built-in pages. Served
// same-origin at <pages prefix>passkeys.js (the pages allow no inline
// script). Buttons carry data-prefix (the pages prefix) and data-return
// (where to go after a sign-in).
(function () {
  'use strict';

  function b64urlEncode(buf) {
    var bytes = new Uint8Array(buf), s = '';
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  function b64urlDecode(str) {
    var s = atob(str.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((str.length + 3) % 4));
    var bytes = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
    return bytes.buffer;
  }

  // Options from the server's JSON, by the browser's own parser when it
  // has one.
  function creationOptions(o) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) return PublicKeyCredential.parseCreationOptionsFromJSON(o);
    var c = Object.assign({}, o, {challenge: b64urlDecode(o.challenge), user: Object.assign({}, o.user, {id: b64urlDecode(o.user.id)})});
    c.excludeCredentials = (o.excludeCredentials || []).map(function (d) { return Object.assign({}, d, {id: b64urlDecode(d.id)}); });
    return c;
  }
  function requestOptions(o) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) return PublicKeyCredential.parseRequestOptionsFromJSON(o);
    var c = Object.assign({}, o, {challenge: b64urlDecode(o.challenge)});
    c.allowCredentials = (o.allowCredentials || []).map(function (d) { return Object.assign({}, d, {id: b64urlDecode(d.id)}); });
    return c;
  }
  function credentialJSON(cred) {
    if (typeof cred.toJSON === 'function') return cred.toJSON();
    var r = cred.response, out = {id: cred.id, rawId: b64urlEncode(cred.rawId), type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults(), response: {clientDataJSON: b64urlEncode(r.clientDataJSON)}};
    if (r.attestationObject) {
      out.response.attestationObject = b64urlEncode(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = b64urlEncode(r.authenticatorData);
      out.response.signature = b64urlEncode(r.signature);
      if (r.userHandle) out.response.userHandle = b64urlEncode(r.userHandle);
    }
    return out;
  }

  function post(url, body) {
    return fetch(url, {method: 'POST', credentials: 'same-origin', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body || {})})
      .then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (j) {
          if (!res.ok) throw new Error(j.error || 'The server answered ' + res.status + '.');
          return j;
        });
      });
  }

  function showError(msg) {
    var el = document.getElementById('passkey-error');
    if (!el) return;
    el.textContent = msg;
    el.hidden = false;
  }
  function failed(err) {
    // The visitor closing the browser's dialog is no error worth a word.
    if (err && err.name === 'NotAllowedError') { showError('The passkey request was cancelled or timed out.'); return; }
    showError((err && err.message) || 'The passkey could not be used.');
  }

  function register(btn) {
    var prefix = btn.getAttribute('data-prefix'), nameEl = document.getElementById('passkey-name');
    btn.disabled = true;
    post(prefix + 'passkeys/register/begin').then(function (begin) {
      return navigator.credentials.create({publicKey: creationOptions(begin.options.publicKey)}).then(function (cred) {
        return post(prefix + 'passkeys/register/finish', {handle: begin.handle, name: nameEl ? nameEl.value : '', credential: credentialJSON(cred)});
      });
    }).then(function (done) { window.location.assign(done.redirect); }, failed).then(function () { btn.disabled = false; });
  }

  function signIn(btn) {
    var prefix = btn.getAttribute('data-prefix');
    btn.disabled = true;
    post(prefix + 'passkeys/signin/begin').then(function (begin) {
      return navigator.credentials.get({publicKey: requestOptions(begin.options.publicKey)}).then(function (cred) {
        return post(prefix + 'passkeys/signin/finish', {handle: begin.handle, return_to: btn.getAttribute('data-return') || '/', credential: credentialJSON(cred)});
      });
    }).then(function (done) { window.location.assign(done.redirect); }, failed).then(function () { btn.disabled = false; });
  }

  function init() {
    var supported = window.PublicKeyCredential && navigator.credentials && window.isSecureContext;
    [['passkey-register', register], ['passkey-signin', signIn]].forEach(function (pair) {
      var btn = document.getElementById(pair[0]);
      if (!btn) return;
      if (!supported) { btn.hidden = true; return; }
      btn.hidden = false;
      btn.addEventListener('click', function () { pair[1](btn); });
    });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init); else init();
})();
