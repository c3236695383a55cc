// casdoor-js-sdk (Casdoor's browser SDK) against guestauth, in Node with
// hand-written browser globals for a page at APP_ORIGIN (the SDK derives
// its redirect URI from it) and the browser's CORS checks on its fetches:
// the PKCE redirect through the sign-in pages, the code exchange as a
// public client, UserInfo, parseAccessToken, refresh.
import { env, step, expect, PageBrowser, installBrowserGlobals } from './lib.mjs';

const origin = env('APP_ORIGIN');
const page = installBrowserGlobals(`${origin}/`);
const { default: Sdk } = (await import('casdoor-js-sdk')).default;
const serverUrl = env('SERVER_URL');
const sdk = new Sdk({
  serverUrl,
  clientId: env('CLIENT_ID'),
  appName: 'my-spa',
  organizationName: env('ORGANIZATION'),
  redirectPath: '/callback',
  scope: 'openid profile',
});
const redirectUri = `${origin}/callback`;
const browser = new PageBrowser();

await step('signin_redirect, signed in through the pages as a guest', async () => {
  await sdk.signin_redirect();
  const to = page.navigations.at(-1);
  expect(to?.startsWith(`${serverUrl}/login/oauth/authorize?`), `a navigation to /login/oauth/authorize, got ${to}`);
  expect(new URL(to).searchParams.get('code_challenge_method') === 'S256', 'PKCE S256');
  page.arrive(await browser.signIn(to, redirectUri, { as: 'guest' }));
});

const tokens = await step('exchangeForAccessToken (public client, PKCE, state checked)', async () => {
  const t = await sdk.exchangeForAccessToken();
  expect(!t.error && t.access_token && t.refresh_token, `tokens, got ${JSON.stringify(t)}`);
  return t;
});

const claims = await step('parseAccessToken', async () => {
  const { header, payload } = sdk.parseAccessToken(tokens.access_token);
  expect(header.alg === 'RS256', `RS256, got ${header.alg}`);
  expect(payload.owner === env('ORGANIZATION') && payload.id === payload.sub && payload.tag === 'guest-user', `a guest of the organization: ${JSON.stringify(payload)}`);
  return payload;
});

await step('getUserInfo (cross-origin, preflighted)', async () => {
  const info = await sdk.getUserInfo(tokens.access_token);
  expect(info.sub === claims.sub, `sub ${claims.sub}, got ${JSON.stringify(info)}`);
});

await step('refreshAccessToken (client_id only)', async () => {
  const t = await sdk.refreshAccessToken(tokens.refresh_token);
  expect(!t.error && t.access_token && t.access_token !== tokens.access_token && t.refresh_token, `new tokens, got ${JSON.stringify(t)}`);
  expect(sdk.parseAccessToken(t.access_token).payload.sub === claims.sub, 'the same user');
});

await step('a callback with another state is refused', async () => {
  await sdk.signin_redirect();
  const cb = new URL(await browser.signIn(page.navigations.at(-1), redirectUri, { as: 'session' }));
  cb.searchParams.set('state', 'forged');
  page.arrive(cb.href);
  let err;
  try {
    await sdk.exchangeForAccessToken();
  } catch (e) {
    err = e;
  }
  expect(err, 'an error for the forged state');
});
