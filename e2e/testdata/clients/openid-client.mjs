// openid-client 6 (the certified relying-party library) against guestauth,
// as an app would use it: discovery, the code flow with PKCE, state and
// nonce through the sign-in pages, the ID token validated (its signature
// too, against the JWKS), UserInfo, refresh, introspection, revocation,
// and RP-initiated logout through the end-session URL it builds.
import * as client from 'openid-client';
import { env, step, expect, PageBrowser } from './lib.mjs';

const issuer = new URL(env('ISSUER'));
const redirectUri = env('REDIRECT_URI');
const logoutUri = env('LOGOUT_URI');
const browser = new PageBrowser();

const config = await step('discovery', async () => {
  const c = await client.discovery(issuer, env('CLIENT_ID'), env('CLIENT_SECRET'), undefined, { execute: [client.allowInsecureRequests] });
  // Verify ID token signatures against jwks_uri (off by default).
  client.enableNonRepudiationChecks(c);
  expect(c.serverMetadata().end_session_endpoint, 'an end_session_endpoint');
  return c;
});

const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();

const callback = await step('authorization request, signed in through the pages as a guest', async () => {
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid profile',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  return browser.signIn(url.href, redirectUri, { as: 'guest' });
});

const tokens = await step('code grant (PKCE, state, nonce, ID token validated and signature checked)', async () => {
  const t = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  expect(t.access_token && t.refresh_token && t.id_token, 'access, refresh and ID tokens');
  return t;
});
const claims = tokens.claims();

await step('ID token claims: a guest', async () => {
  expect(claims.iss === issuer.href.replace(/\/$/, ''), `iss ${claims.iss}`);
  expect(claims.aud === env('CLIENT_ID') || claims.aud.includes(env('CLIENT_ID')), `aud ${claims.aud}`);
  expect(claims.is_anonymous === true, `is_anonymous true, got ${claims.is_anonymous}`);
});

await step('UserInfo', async () => {
  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  expect(info.sub === claims.sub, `sub ${info.sub}`);
});

const refreshed = await step('refresh', async () => {
  const t = await client.refreshTokenGrant(config, tokens.refresh_token);
  expect(t.access_token && t.access_token !== tokens.access_token, 'a new access token');
  expect(t.refresh_token && t.refresh_token !== tokens.refresh_token, 'a new (rotated) refresh token');
  return t;
});

await step('introspection', async () => {
  const r = await client.tokenIntrospection(config, refreshed.access_token);
  expect(r.active === true && r.sub === claims.sub && r.client_id === env('CLIENT_ID'), `an active token of ${claims.sub}: ${JSON.stringify(r)}`);
  const old = await client.tokenIntrospection(config, 'not-a-token');
  expect(old.active === false, 'an unknown token inactive');
});

await step('revocation ends the refresh token', async () => {
  await client.tokenRevocation(config, refreshed.refresh_token);
  let err;
  try {
    await client.refreshTokenGrant(config, refreshed.refresh_token);
  } catch (e) {
    err = e;
  }
  expect(err?.error === 'invalid_grant', `invalid_grant for the revoked refresh token, got ${err}`);
});

await step('client_secret_basic, and the signed-in browser gets a code at once', async () => {
  const basic = await client.discovery(issuer, env('CLIENT_ID'), undefined, client.ClientSecretBasic(env('CLIENT_SECRET')), { execute: [client.allowInsecureRequests] });
  const v = client.randomPKCECodeVerifier();
  const st = client.randomState();
  const url = client.buildAuthorizationUrl(basic, {
    redirect_uri: redirectUri, scope: 'openid', code_challenge: await client.calculatePKCECodeChallenge(v), code_challenge_method: 'S256', state: st,
  });
  const cb = await browser.signIn(url.href, redirectUri, { as: 'session' });
  const t = await client.authorizationCodeGrant(basic, new URL(cb), { pkceCodeVerifier: v, expectedState: st, idTokenExpected: true });
  expect(t.claims().sub === claims.sub, 'the same user');
});

await step('RP-initiated logout through the end-session URL', async () => {
  const url = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: logoutUri, state: 'bye' });
  const r = await browser.visit(url.href, (u) => u.startsWith(logoutUri));
  expect(r.stoppedAt === `${logoutUri}?state=bye`, `the redirect to ${logoutUri}?state=bye, got ${r.stoppedAt ?? r.status}`);
  // Signed out: the next authorization request shows the sign-in page.
  const again = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri, scope: 'openid', code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state,
  });
  const page = await browser.visit(again.href, (u) => u.startsWith(redirectUri));
  expect(!page.stoppedAt && page.status === 200 && page.html.includes('action="/auth/signin"'), 'the sign-in page after the logout');
});
