// Runs a docs example's createGuestUser unchanged against a test server.
// Usage: node run_seed.js <example.js> <base URL> <client_id> <client_secret>
// Only the placeholder host and client id/secret literals are replaced, each
// exactly once; the function then runs with Node's built-in fetch and the
// access token it returns is printed.
'use strict';
const fs = require('fs');
const vm = require('vm');

const [file, base, clientID, clientSecret] = process.argv.slice(2);
let src = fs.readFileSync(file, 'utf8');

function replaceOnce(pattern, value) {
  const found = src.match(new RegExp(pattern.source, 'g')) || [];
  if (found.length !== 1) {
    console.error(`expected one ${pattern} in ${file}, found ${found.length}`);
    process.exit(2);
  }
  src = src.replace(pattern, value);
}
replaceOnce(/'https:\/\/your-[a-z-]+-host\//, `'${base}/`);
replaceOnce(/'your_client_id'/, JSON.stringify(clientID));
replaceOnce(/'your_client_secret'/, JSON.stringify(clientSecret));

const createGuestUser = vm.runInThisContext(src + '\ncreateGuestUser;', { filename: file });
createGuestUser().then((token) => {
  if (typeof token !== 'string' || token === '') {
    console.error('createGuestUser returned', token);
    process.exit(1);
  }
  process.stdout.write(token);
}, (err) => {
  console.error(err);
  process.exit(1);
});
