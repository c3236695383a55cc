// Shared by the client scripts that e2e_clients_test.go runs: a browser
// without JavaScript for guestauth's server-rendered sign-in pages (a
// cookie jar, redirects followed by hand, links and forms as a person
// would use them), the browser globals the browser SDKs read (hand stubs:
// no jsdom), and the step reporting the Go test reads.

// Node's own fetch: the page browser's (top-level navigations, no CORS),
// before installBrowserGlobals puts the page's in its place.
const nodeFetch = globalThis.fetch;

// env is a required environment variable set by the Go test.
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is not set (run through go test)`);
  return v;
}

// step runs one named step: a failure names it, with its cause.
export async function step(name, fn) {
  try {
    const out = await fn();
    console.log(`ok - ${name}`);
    return out;
  } catch (err) {
    const detail = err?.response ? ` (HTTP ${err.response.status}: ${JSON.stringify(err.response.data)})` : '';
    const cause = err?.cause ? ` [cause: ${err.cause.message ?? err.cause}]` : '';
    console.error(`FAIL - ${name}: ${err?.stack ?? err}${detail}${cause}`);
    process.exit(1);
  }
}

export function expect(cond, what) {
  if (!cond) throw new Error(`expected ${what}`);
}

const decodeEntities = (s) => s.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>')
  .replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
  .replace(/&#(\d+);/g, (_, n) => String.fromCodePoint(Number(n)));

function attrs(tag) {
  const out = {};
  for (const m of tag.matchAll(/([a-zA-Z_:][-\w:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?/g)) {
    out[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

// PageBrowser is a browser without JavaScript. Its cookies are kept per
// host; it sends the Origin and Sec-Fetch-Site a browser sends with a
// page's form.
export class PageBrowser {
  constructor() {
    this.cookies = new Map(); // host -> Map(name -> value)
    this.trail = []; // every request, for failure messages
  }

  async request(url, { method = 'GET', form } = {}) {
    const u = new URL(url);
    const headers = { accept: 'text/html' };
    const jar = this.cookies.get(u.host);
    if (jar?.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let body;
    if (form) {
      body = new URLSearchParams(form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers.origin = u.origin;
      headers['sec-fetch-site'] = 'same-origin';
    }
    const res = await nodeFetch(url, { method, headers, body, redirect: 'manual' });
    for (const sc of res.headers.getSetCookie()) {
      const [pair, ...rest] = sc.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const gone = value === '' || rest.some((a) => /^\s*max-age\s*=\s*(0|-)/i.test(a));
      if (!this.cookies.has(u.host)) this.cookies.set(u.host, new Map());
      if (gone) this.cookies.get(u.host).delete(name);
      else this.cookies.get(u.host).set(name, value);
    }
    this.trail.push(`${method} ${url} -> ${res.status} ${res.headers.get('location') ?? ''}`);
    return res;
  }

  // visit follows redirects from url until one leads to a URL for which
  // stop is true (returned, not fetched) or a page arrives.
  async visit(url, stop, init) {
    let cur = url;
    let res = await this.request(cur, init);
    for (let hops = 0; hops < 20; hops++) {
      const loc = res.headers.get('location');
      if (res.status < 300 || res.status >= 400 || !loc) {
        return { url: cur, status: res.status, html: await res.text() };
      }
      await res.arrayBuffer();
      cur = new URL(loc, cur).href;
      if (stop(cur)) return { stoppedAt: cur };
      res = await this.request(cur);
    }
    throw new Error(`too many redirects: ${this.trail.slice(-5).join('; ')}`);
  }

  // signIn follows an authorization request to the redirect back to
  // redirectUri and returns that callback URL. as is the way through the
  // pages: 'session' (a signed-in browser: no page expected), 'guest'
  // ("continue as a guest"), 'signup' or 'signin' (with username and
  // password). It follows the pages' own links and forms.
  async signIn(authURL, redirectUri, { as = 'guest', username, password } = {}) {
    const stop = (u) => u === redirectUri || u.startsWith(redirectUri + '?');
    let r = await this.visit(authURL, stop);
    for (let pages = 0; !r.stoppedAt; pages++) {
      if (as === 'session' || pages > 4) {
        throw new Error(`a page instead of the redirect to ${redirectUri}: ${r.status} ${r.url}: ${r.html.slice(0, 400)}\n${this.trail.join('\n')}`);
      }
      const want = `/auth/${as}`;
      const form = [...r.html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)]
        .map((m) => ({ a: attrs(m[1]), inner: m[2] }))
        .find((f) => new URL(f.a.action ?? '', r.url).pathname === want);
      if (form) {
        const fields = {};
        for (const m of form.inner.matchAll(/<input\b([^>]*)>/gi)) {
          const a = attrs(m[1]);
          if (a.name && a.type === 'hidden') fields[a.name] = a.value ?? '';
        }
        if (as !== 'guest') Object.assign(fields, { username, password });
        r = await this.visit(new URL(form.a.action, r.url).href, stop, { method: 'POST', form: fields });
        continue;
      }
      const link = [...r.html.matchAll(/<a\b([^>]*)>/gi)].map((m) => attrs(m[1]))
        .find((a) => a.href && new URL(a.href, r.url).pathname === want && new URL(a.href, r.url).searchParams.has('return_to'));
      if (!link) throw new Error(`no form or link to ${want} on ${r.url} (${r.status}): ${r.html.slice(0, 400)}`);
      r = await this.visit(new URL(link.href, r.url).href, stop);
    }
    return r.stoppedAt;
  }
}

// MemoryStorage is Web Storage kept in memory.
class MemoryStorage {
  #m = new Map();
  get length() { return this.#m.size; }
  key(i) { return [...this.#m.keys()][i] ?? null; }
  getItem(k) { return this.#m.has(String(k)) ? this.#m.get(String(k)) : null; }
  setItem(k, v) { this.#m.set(String(k), String(v)); }
  removeItem(k) { this.#m.delete(String(k)); }
  clear() { this.#m.clear(); }
}

// installBrowserGlobals gives Node what a browser SDK reads of a page at
// appURL: window (globalThis, with Node's crypto and a fetch that makes
// the browser's CORS checks for the page's origin),
// location, localStorage, sessionStorage, a dummy document. A navigation
// (location.href = …, assign, replace) does not leave the page: it is
// recorded in navigations. arrive(url) is the page loading at url (the
// callback).
export function installBrowserGlobals(appURL) {
  const navigations = [];
  const state = {};
  const arrive = (href) => {
    const u = new URL(href, state.href ?? appURL);
    Object.assign(state, { href: u.href, origin: u.origin, protocol: u.protocol, host: u.host, hostname: u.hostname, port: u.port, pathname: u.pathname, search: u.search, hash: u.hash });
  };
  arrive(appURL);
  const location = new Proxy(state, {
    set(target, key, value) {
      if (key === 'href') navigations.push(String(value));
      else target[key] = value;
      return true;
    },
  });
  location.assign = (u) => navigations.push(String(u));
  location.replace = (u) => navigations.push(String(u));
  location.reload = () => {};
  location.toString = () => state.href;
  Object.assign(globalThis, {
    fetch: corsFetch(new URL(appURL).origin, nodeFetch),
    window: globalThis,
    self: globalThis,
    location,
    localStorage: new MemoryStorage(),
    sessionStorage: new MemoryStorage(),
    addEventListener() {},
    removeEventListener() {},
    document: { cookie: '', createElement: () => ({ style: {}, setAttribute() {} }), body: { appendChild() {} }, addEventListener() {}, removeEventListener() {} },
  });
  return { navigations, arrive };
}

// jwtPayload decodes a JWT's claims without verifying them.
export function jwtPayload(jwt) {
  return JSON.parse(Buffer.from(String(jwt).split('.')[1], 'base64url').toString('utf8'));
}

// corsFetch is fetch as a page at origin makes it, with the browser's CORS
// checks (the Fetch standard, reduced to what these SDKs send): a
// cross-origin request carries Origin; one that is not simple (a method
// other than GET, HEAD or POST, a header other than the safelisted ones,
// or a Content-Type other than a form's or text/plain) is preceded by a
// preflight that must allow it; the answer must name origin in
// Access-Control-Allow-Origin (and allow credentials when they were
// included). A failed check is a TypeError, as in a browser.
export function corsFetch(origin, realFetch = globalThis.fetch) {
  const safelisted = new Set(['accept', 'accept-language', 'content-language', 'content-type']);
  const simpleTypes = ['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain'];
  const allows = (res, credentials) => {
    const acao = res.headers.get('access-control-allow-origin');
    if (acao !== origin && !(acao === '*' && !credentials)) return false;
    return !credentials || res.headers.get('access-control-allow-credentials') === 'true';
  };
  return async (input, init = {}) => {
    const req = new Request(input, init);
    if (new URL(req.url).origin === origin) return realFetch(req);
    const credentials = req.credentials === 'include';
    const method = req.method.toUpperCase();
    const names = [...req.headers.keys()];
    const type = (req.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase();
    const unsafe = names.filter((n) => !safelisted.has(n) || (n === 'content-type' && !simpleTypes.includes(type)));
    if (!['GET', 'HEAD', 'POST'].includes(method) || unsafe.length) {
      const pre = await realFetch(req.url, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': method, ...(unsafe.length ? { 'access-control-request-headers': unsafe.sort().join(',') } : {}) },
      });
      const allowedHeaders = (pre.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(',').map((s) => s.trim());
      const allowedMethods = (pre.headers.get('access-control-allow-methods') ?? '').toUpperCase().split(',').map((s) => s.trim());
      if (!pre.ok || !allows(pre, credentials) || !(['GET', 'HEAD', 'POST'].includes(method) || allowedMethods.includes(method))
        || unsafe.some((h) => !allowedHeaders.includes(h))) {
        throw new TypeError(`CORS preflight for ${method} ${req.url} from ${origin} refused: ${pre.status}, allow-origin ${pre.headers.get('access-control-allow-origin')}, allow-headers ${pre.headers.get('access-control-allow-headers')}`);
      }
    }
    const headers = new Headers(req.headers);
    headers.set('origin', origin);
    const body = ['GET', 'HEAD'].includes(method) ? undefined : await req.arrayBuffer();
    const res = await realFetch(req.url, { method, headers, body, redirect: req.redirect });
    if (!allows(res, credentials)) {
      throw new TypeError(`CORS: ${method} ${req.url} from ${origin}: allow-origin ${res.headers.get('access-control-allow-origin')}, allow-credentials ${res.headers.get('access-control-allow-credentials')}`);
    }
    return res;
  };
}
