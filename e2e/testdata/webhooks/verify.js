'use strict';
// Verifies one webhook delivery with the npm standardwebhooks package, as a
// receiver written in JavaScript would. Reads from stdin a JSON object
// {secret, raw, headers, body_b64}: raw keys the Webhook with the secret's
// UTF-8 bytes (a plain secret), else the secret is given as it is
// (whsec_...). Prints {"ok":true,"payload":...} or {"ok":false,"error":...}.
const { Webhook } = require('standardwebhooks');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const d = JSON.parse(input);
  const body = Buffer.from(d.body_b64, 'base64'); // the raw bytes, never re-encoded JSON
  let out;
  try {
    const wh = d.raw ? new Webhook(Buffer.from(d.secret, 'utf8'), { format: 'raw' }) : new Webhook(d.secret);
    out = { ok: true, payload: wh.verify(body, d.headers) };
  } catch (e) {
    out = { ok: false, error: `${e.name}: ${e.message}` };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
});
