// casdoor-nodejs-sdk (Casdoor's server-side SDK for Node) against
// guestauth, configured as docs/sdks.md says: a guest through
// code=guest-user (the SDK sends Basic and the secret in the body), a code
// from the sign-in pages (sign-up) redeemed without redirect_uri, refresh,
// parseJwtToken with the certificate PEM made from /.well-known/jwks, and
// the user API of a client with manage_users; a client without it refused.
import casdoor from 'casdoor-nodejs-sdk';
import { env, step, expect, PageBrowser } from './lib.mjs';

const { SDK } = casdoor;
const endpoint = env('ENDPOINT');
const org = env('ORGANIZATION');
const redirectUri = env('REDIRECT_URI');
const appName = 'my-app';

// The certificate, as docs/sdks.md makes it: the x5c of the newest RS256
// key of /.well-known/jwks, as a PEM.
const certificate = await step('certificate PEM from /.well-known/jwks', async () => {
  const res = await fetch(`${endpoint}/.well-known/jwks`);
  expect(res.status === 200, `200 from /.well-known/jwks, got ${res.status}`);
  const { keys } = await res.json();
  const key = keys.filter((k) => k.alg === 'RS256').at(-1);
  expect(key?.x5c?.length, 'an RS256 key with x5c');
  return `-----BEGIN CERTIFICATE-----\n${key.x5c[0].match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;
});

const sdk = new SDK({ endpoint, clientId: env('CLIENT_ID'), clientSecret: env('CLIENT_SECRET'), certificate, orgName: org, appName });

const guest = await step('getAuthToken("guest-user"): a guest', async () => {
  const t = await sdk.getAuthToken('guest-user');
  expect(t.access_token && t.refresh_token, 'access and refresh tokens');
  return t;
});

const guestClaims = await step('parseJwtToken (RS256, the certificate)', async () => {
  const c = sdk.parseJwtToken(guest.access_token);
  expect(c.owner === org, `owner ${org}, got ${c.owner}`);
  expect(c.id && c.id === c.sub, `id = sub, got ${c.id} and ${c.sub}`);
  expect(c.tag === 'guest-user', `tag guest-user, got ${c.tag}`);
  return c;
});

await step('refreshToken', async () => {
  const t = await sdk.refreshToken(guest.refresh_token);
  expect(t.access_token && t.access_token !== guest.access_token && t.refresh_token, 'new tokens');
  expect(sdk.parseJwtToken(t.access_token).id === guestClaims.id, 'the same user');
});

await step('a token with a forged signature is refused by parseJwtToken', async () => {
  const [h, p] = guest.access_token.split('.');
  let err;
  try {
    sdk.parseJwtToken(`${h}.${p}.${Buffer.from('forged').toString('base64url')}`);
  } catch (e) {
    err = e;
  }
  expect(err, 'an error');
});

const username = `ana${Date.now() % 100000}`;
const password = 'correct horse battery staple';

await step('getSignInUrl, sign-up through the pages, getAuthToken(code)', async () => {
  const url = sdk.getSignInUrl(redirectUri);
  const browser = new PageBrowser();
  const cb = new URL(await browser.signIn(url, redirectUri, { as: 'signup', username, password }));
  expect(cb.searchParams.get('state') === appName, `state ${appName}, got ${cb.searchParams.get('state')}`);
  const t = await sdk.getAuthToken(cb.searchParams.get('code'));
  const c = sdk.parseJwtToken(t.access_token);
  expect(c.name === username && c.owner === org, `${org}/${username}, got ${c.owner}/${c.name}`);
});

const user = await step('getUser', async () => {
  const res = await sdk.getUser(username);
  expect(res.data.status === 'ok', `status ok: ${JSON.stringify(res.data)}`);
  const u = res.data.data;
  expect(u?.name === username && u.owner === org && u.password === '***', `the user, masked: ${JSON.stringify(u)}`);
  return u;
});

await step('getUsers', async () => {
  const res = await sdk.getUsers();
  const names = res.data.data.map((u) => u.name);
  expect(names.includes(username), `${username} among ${names}`);
  expect(res.data.data.some((u) => u.id === guestClaims.id), 'the guest among them');
});

await step('updateUser (displayName)', async () => {
  const res = await sdk.updateUser({ ...user, displayName: 'Ana Lima', isAdmin: false, score: 0, properties: {}, roles: null });
  expect(res.data.status === 'ok' && res.data.data === 'Affected', `Affected: ${JSON.stringify(res.data)}`);
  const after = await sdk.getUser(username);
  expect(after.data.data.displayName === 'Ana Lima', `displayName Ana Lima, got ${after.data.data.displayName}`);
});

const bob = `bob${Date.now() % 100000}`;
await step('addUser, then setPassword, then a sign-in with it through the pages', async () => {
  const res = await sdk.addUser({ name: bob, displayName: 'Bob', password: '' });
  expect(res.data.status === 'ok' && res.data.data === 'Affected', `Affected: ${JSON.stringify(res.data)}`);
  const set = await sdk.setPassword({ owner: org, name: bob, newPassword: 'bobs long password' });
  expect(set.data.status === 'ok', `status ok: ${JSON.stringify(set.data)}`);
  const browser = new PageBrowser();
  const cb = new URL(await browser.signIn(sdk.getSignInUrl(redirectUri), redirectUri, { as: 'signin', username: bob, password: 'bobs long password' }));
  const t = await sdk.getAuthToken(cb.searchParams.get('code'));
  expect(sdk.parseJwtToken(t.access_token).name === bob, `a token of ${bob}`);
});

await step('deleteUser', async () => {
  const res = await sdk.deleteUser({ name: bob });
  expect(res.data.status === 'ok' && res.data.data === 'Affected', `Affected: ${JSON.stringify(res.data)}`);
  const after = await sdk.getUser(bob);
  expect(after.data.data == null, `no user ${bob}: ${JSON.stringify(after.data)}`);
});

await step('a client without manage_users is refused', async () => {
  const plain = new SDK({ endpoint, clientId: env('PLAIN_CLIENT_ID'), clientSecret: env('PLAIN_CLIENT_SECRET'), certificate, orgName: org, appName });
  for (const [what, call] of [['getUser', () => plain.getUser(username)], ['deleteUser', () => plain.deleteUser({ name: username })]]) {
    let err;
    try {
      await call();
    } catch (e) {
      err = e;
    }
    expect(err?.response?.status === 403 && err.response.data?.status === 'error', `${what}: 403 in Casdoor's envelope, got ${err?.response?.status} ${JSON.stringify(err?.response?.data)}`);
  }
  const still = await sdk.getUser(username);
  expect(still.data.data?.name === username, 'the user still there');
});
