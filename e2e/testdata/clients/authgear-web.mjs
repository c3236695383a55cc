// @authgear/web (Authgear's browser SDK) against guestauth, in Node with
// hand-written browser globals for a page at APP_ORIGIN, installed before
// the import (the bundle reads window at load), and the browser's CORS
// checks on its fetches: an anonymous user by web sign-up, UserInfo,
// refresh, promotion (a promotion code, then the authorization endpoint
// with the anonymous login_hint, signing up on the pages) keeping the user
// id, logout by revocation, and a sign-in with the promoted account.
import { env, step, expect, PageBrowser, installBrowserGlobals } from './lib.mjs';

const origin = env('APP_ORIGIN');
const page = installBrowserGlobals(`${origin}/`);
const mod = await import('@authgear/web');
const authgear = mod.default.default;
const { SessionState } = mod.default;
const redirectURI = `${origin}/callback`;
const browser = new PageBrowser();
const username = `pat${Date.now() % 100000}`;
const password = 'correct horse battery staple';

await step('configure (discovery at the endpoint)', async () => {
  await authgear.configure({ clientID: env('CLIENT_ID'), endpoint: env('ENDPOINT'), sessionType: 'refresh_token' });
});

const anonymous = await step('authenticateAnonymously (POST /api/anonymous_user/signup)', async () => {
  const r = await authgear.authenticateAnonymously();
  expect(r.userInfo.isAnonymous === true, `isAnonymous, got ${JSON.stringify(r.userInfo)}`);
  expect(authgear.sessionState === SessionState.Authenticated, `AUTHENTICATED, got ${authgear.sessionState}`);
  return r.userInfo;
});

await step('refreshAccessToken, fetchUserInfo', async () => {
  const before = authgear.accessToken;
  await authgear.refreshAccessToken();
  expect(authgear.accessToken && authgear.accessToken !== before, 'a new access token');
  const info = await authgear.fetchUserInfo();
  expect(info.sub === anonymous.sub && info.isAnonymous === true, `the same anonymous user, got ${JSON.stringify(info)}`);
});

await step('startPromoteAnonymousUser, sign-up on the pages, finishPromoteAnonymousUser', async () => {
  await authgear.startPromoteAnonymousUser({ redirectURI, state: 'promote' });
  const to = new URL(page.navigations.at(-1));
  expect(to.searchParams.get('login_hint')?.startsWith('https://authgear.com/login_hint?type=anonymous&promotion_code='), `the anonymous login_hint, got ${to}`);
  page.arrive(await browser.signIn(to.href, redirectURI, { as: 'signup', username, password }));
  const r = await authgear.finishPromoteAnonymousUser();
  expect(r.userInfo.sub === anonymous.sub, `the same sub ${anonymous.sub}, got ${r.userInfo.sub}`);
  expect(r.userInfo.isAnonymous === false, 'no longer anonymous');
  expect(r.state === 'promote', `state promote, got ${r.state}`);
  const info = await authgear.fetchUserInfo();
  expect(info.isAnonymous === false && info.preferredUsername === username, `fetchUserInfo: ${JSON.stringify(info)}`);
});

await step('logout (revocation of the refresh token)', async () => {
  const rt = localStorage.getItem('authgear_default_refreshToken');
  expect(rt, 'a stored refresh token');
  await authgear.logout({ redirectURI: `${origin}/` });
  expect(authgear.sessionState === SessionState.NoSession, `NO_SESSION, got ${authgear.sessionState}`);
  // The refresh token is revoked at the server.
  const res = await fetch(`${env('ENDPOINT')}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', client_id: env('CLIENT_ID'), refresh_token: rt }),
  });
  expect(res.status === 400 && (await res.json()).error === 'invalid_grant', `the revoked refresh token refused, got ${res.status}`);
});

await step('startAuthentication, sign-in on the pages, finishAuthentication', async () => {
  page.arrive(`${origin}/`);
  await authgear.startAuthentication({ redirectURI, state: 'again', prompt: 'login' });
  page.arrive(await new PageBrowser().signIn(page.navigations.at(-1), redirectURI, { as: 'signin', username, password }));
  const r = await authgear.finishAuthentication();
  expect(r.userInfo.sub === anonymous.sub && r.userInfo.isAnonymous === false, `the promoted user, got ${JSON.stringify(r.userInfo)}`);
});
