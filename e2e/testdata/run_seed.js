// Runs a docs example (createGuestUser, then upgradeGuestUser) unchanged
// against a test server.
// Usage: node run_seed.js <example.js> <base URL> <client_id> <client_secret> <new name> <new password>
// Only the placeholder host (once per function) and the client id/secret
// literals are replaced; the functions run with Node's built-in fetch. It
// prints {"token": <createGuestUser's result>, "upgrade": <upgradeGuestUser's>}.
'use strict';
const fs = require('fs');
const vm = require('vm');

const [file, base, clientID, clientSecret, newName, newPassword] = process.argv.slice(2);
let src = fs.readFileSync(file, 'utf8');

function replaceAll(pattern, value, times) {
  const found = src.match(new RegExp(pattern.source, 'g')) || [];
  if (found.length !== times) {
    console.error(`expected ${times} of ${pattern} in ${file}, found ${found.length}`);
    process.exit(2);
  }
  src = src.replace(new RegExp(pattern.source, 'g'), value);
}
replaceAll(/'https:\/\/your-[a-z-]+-host\//, `'${base}/`, 2);
replaceAll(/'your_client_id'/, JSON.stringify(clientID), 1);
replaceAll(/'your_client_secret'/, JSON.stringify(clientSecret), 1);

const example = vm.runInThisContext(src + '\n({ createGuestUser, upgradeGuestUser });', { filename: file });
(async () => {
  const token = await example.createGuestUser();
  if (typeof token !== 'string' || token === '') {
    throw new Error('createGuestUser returned ' + token);
  }
  const upgrade = await example.upgradeGuestUser(token, newName, newPassword);
  process.stdout.write(JSON.stringify({ token, upgrade }));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
