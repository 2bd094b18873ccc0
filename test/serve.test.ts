/**
 * `tc-query serve`'s JSON API: each route answers exactly what the command prints with
 * --format json (body byte for byte, errors included, with 400), the completeness facts in a
 * header; hostile parameters are refused; nothing is written; Host, method and token checks.
 */
import { test, after, before } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as http from 'node:http';
import { spawn } from 'node:child_process';
import { QUERY, query, queryJson, tmp } from './helpers';
import { replayed, serve, type Serving } from './support/serve';
import { allowedHosts, asParameters } from '../src/query/serve/server';

let db: string;
let s: Serving;
let first: string;
let last: string;
let talker: string;

before(async () => {
  db = replayed();
  const st = queryJson<{ first: string; last: string }>(['--db', db, 'status']);
  first = st.first;
  last = st.last;
  talker = queryJson<{ ip: string }[]>(['--db', db, 'top', '--all', '--limit', '3'])[1].ip;
  s = await serve(db);
});
after(async () => s?.stop());

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A GET (or another method) with Node's client, which sends any Host header asked for. */
function get(url: string, o: { method?: string; headers?: Record<string, string> } = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: o.method ?? 'GET', headers: o.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const api = (route: string, params: Record<string, string>) => get(`${s.url}api/${route}?${new URLSearchParams(params)}`);

/** The CLI's stdout for the same command and options (`--name=value`), --format json. */
function cli(cmd: string, params: Record<string, string>, flags: string[] = []): { status: number | null; stdout: string } {
  const r = query(['--db', db, cmd, ...Object.entries(params).map(([k, v]) => `--${k}=${v}`), ...flags, '--format', 'json']);
  return { status: r.status, stdout: r.stdout };
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

test('every route answers what the command prints with --format json, for the same window', async () => {
  const win = { since: first, until: last };
  const cases: [string, Record<string, string>, string[]][] = [
    ['top', { by: 'ip', since: '1h', limit: '20' }, []],
    ['top', { by: 'ip', limit: '20' }, ['--all']],
    ['top', { ...win, by: 'name', limit: '5' }, []],
    ['top', { ...win, by: 'flow', limit: '7' }, []],
    ['top', { ...win, by: 'src', proto: 'tcp', limit: '0' }, []],
    ['flows', { ...win, ip: talker }, []],
    ['series', { ...win, step: '30s' }, []],
    ['series', { ...win, ip: talker, step: '1m' }, []],
    ['series', { ...win, cidr: '52.0.0.0/8', step: '15s', tz: 'Europe/Berlin' }, []],
    ['status', {}, []],
    ['status', win, []],
    ['names', { ip: talker }, []],
    ['names', { ...win, name: '*.amazon.com' }, []],
  ];
  for (const [cmd, params, flags] of cases) {
    const p = { ...params, ...Object.fromEntries(flags.map((f) => [f.replace(/^--/, ''), 'true'])) };
    const got = await api(cmd, p);
    const want = cli(cmd, params, flags);
    assert.equal(want.status, 0, `${cmd} ${JSON.stringify(params)}: the CLI answers`);
    assert.equal(got.status, 200, `${cmd} ${JSON.stringify(p)}: ${got.body}`);
    assert.equal(got.body, want.stdout, `${cmd} ${JSON.stringify(p)}: the body is the CLI's JSON`);
    assert.match(String(got.headers['content-type']), /^application\/json/);
    JSON.parse(got.body);
  }
  // The example of the issue, on a file of 2017: an empty answer, the same as the CLI's.
  assert.equal((await api('top', { by: 'ip', since: '1h', limit: '20' })).body, '[]\n');
});

test('the completeness facts are a JSON header: the completeness line of the table form, and the figures', async () => {
  const got = await api('top', { since: first, until: last });
  const c = JSON.parse(String(got.headers['x-tc-completeness'])) as { line: string; intervals: number; gaps: number; window: { from: string; to: string } };
  const table = query(['--db', db, 'top', '--since', first, '--until', last]).stdout.trim().split('\n');
  assert.equal(c.line, table[table.length - 1]);
  assert.equal(c.intervals, queryJson<{ intervals: number }>(['--db', db, 'status']).intervals);
  assert.deepEqual(c.window, { from: first, to: last });
  // The notes the CLI writes on stderr (here: a window with no data) come as a header too.
  const empty = await api('top', { since: '1h' });
  const notes = JSON.parse(String(empty.headers['x-tc-notes'])) as string[];
  assert.equal(notes.length, 1);
  // Both windows end at their own now: the times of the note are masked.
  const masked = (t: string) => t.replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, 'T');
  assert.equal(masked(`tc-query: ${notes[0]}\n`), masked(query(['--db', db, 'top', '--since', '1h']).stderr));
});

test('hostile and bad parameters get the CLI\'s error document with 400; nothing is written', async () => {
  const before = sha(db);
  const same: [string, Record<string, string>][] = [
    ['top', { by: "ip' or 1=1; drop table batches; --" }],
    ['top', { ip: "1.2.3.4' or '1'='1" }],
    ['top', { cidr: '10.0.0.0/8 union select * from meta' }],
    ['top', { limit: '99999999999' }],
    ['top', { limit: '-1' }],
    ['top', { proto: 'tcp;--' }],
    ['series', { since: 'now() - interval 1 day' }],
    ['series', { since: '0', until: '2020-01-01', step: '1s' }],
    ['series', { step: '0' }],
    // Steps that cut the 5 s intervals: refused as by the CLI, not answered with inflated rates.
    ['series', { since: first, until: last, step: '1s' }],
    ['series', { since: first, until: last, step: '7s' }],
    ['series', { since: '2017-13-45T99:99:99Z' }],
    ['series', { tz: 'Mars/Olympus' }],
    ['flows', {}],
    ['names', { ip: 'not-an-address' }],
  ];
  for (const [cmd, params] of same) {
    const got = await api(cmd, params);
    const want = cli(cmd, params);
    assert.equal(got.status, 400, `${cmd} ${JSON.stringify(params)}: ${got.body}`);
    assert.equal(want.status, 1);
    assert.equal(got.body, asParameters(want.stdout), `${cmd} ${JSON.stringify(params)}: the CLI's error document (its options named as parameters)`);
    assert.equal((JSON.parse(got.body) as { error: { code: string } }).error.code, 'ERR_TC_USAGE');
  }
  // Parameters that are no option of the command, given twice, or far too long.
  for (const q of ['top?db=/etc/passwd', 'top?format=csv', 'top?help=1', 'status?labels=/etc/shadow', 'top?by=ip&by=flow', `top?since=${'1'.repeat(300)}`, 'top?all=maybe', `top?x=${'a'.repeat(5000)}`]) {
    const got = await get(`${s.url}api/${q}`);
    assert.equal(got.status, 400, `${q}: ${got.body}`);
    assert.equal((JSON.parse(got.body) as { error: { code: string } }).error.code, 'ERR_TC_USAGE', q);
  }
  // No SQL, export or copy route; nothing but GET and HEAD.
  for (const route of ['sql?query=select%201', 'export?out=/tmp/x.csv', 'copy?out=/tmp/x.db', 'serve']) assert.equal((await get(`${s.url}api/${route}`)).status, 404, route);
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) assert.equal((await get(`${s.url}api/status`, { method })).status, 405, method);
  assert.equal(sha(db), before, 'the database is unchanged');
});

test('a Host header that is not the server\'s is refused (DNS rebinding); every response carries the CSP', async () => {
  const port = new URL(s.url).port;
  for (const host of ['evil.example', `evil.example:${port}`, `127.0.0.1:${Number(port) + 1}`]) {
    assert.equal((await get(`${s.url}api/status`, { headers: { Host: host } })).status, 421, host);
  }
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) assert.equal((await get(`${s.url}api/status`, { headers: { Host: host } })).status, 200, host);
  // A reverse proxy sends the name it is reached by, without a port or with its own.
  const proxied = await serve(db, ['--allow-host', 'TC.example', '--allow-host', 'other.example:8443']);
  try {
    const p = new URL(proxied.url).port;
    for (const host of ['tc.example', `tc.example:${p}`, 'tc.example:443', 'tc.example:80', 'other.example:8443']) {
      assert.equal((await get(`${proxied.url}api/status`, { headers: { Host: host } })).status, 200, host);
    }
    for (const host of ['other.example', `other.example:${p}`, '127.0.0.1', 'evil.example', 'tc.example.evil.example']) {
      assert.equal((await get(`${proxied.url}api/status`, { headers: { Host: host } })).status, 421, host);
    }
  } finally {
    await proxied.stop();
  }
  for (const p of ['', 'app.js', 'app.css', 'api/status', 'api/top?limit=x', 'nothing']) {
    const got = await get(`${s.url}${p}`);
    assert.match(String(got.headers['content-security-policy']), /default-src 'none'; script-src 'self'/, p);
    assert.equal(got.headers['x-content-type-options'], 'nosniff');
  }
  const page = await get(s.url);
  assert.equal(page.status, 200);
  // Nothing from another origin: every script and style is the server's own.
  assert.doesNotMatch(page.body, /https?:\/\//);
  assert.doesNotMatch((await get(`${s.url}app.js`)).body, /<script|https:\/\/cdn/);
});

test('the page names its first API requests as preloads, and each answers what the command prints', async () => {
  const view = `?since=${encodeURIComponent(first)}&until=${encodeURIComponent(last)}&by=name`;
  const links = async (q: string) => [...String((await get(`${s.url}${q}`)).headers.link).matchAll(/<([^>]*)>; rel=preload; as=(\w+)(; crossorigin)?/g)].map((m) => [m[1], m[2], m[3] ?? '']);
  // The page's own files first (they are served at once), then its first answers, as fetch() asks them.
  const got = await links(view);
  assert.deepEqual(got.slice(0, 2), [['/app.css', 'style', ''], ['/app.js', 'script', '']]);
  const api = got.slice(2);
  assert.deepEqual(api.map((l) => l[1] + l[2]), ['fetch; crossorigin', 'fetch; crossorigin']);
  const paths = api.map((l) => new URL(l[0], s.url));
  assert.deepEqual(paths.map((u) => u.pathname), ['/api/series', '/api/top']);
  assert.deepEqual(Object.fromEntries(paths[1].searchParams), { since: first, until: last, by: 'name', limit: '20' });
  // A window of minutes is charted at the interval length (5 s until the page knows the file's).
  assert.deepEqual(Object.fromEntries(paths[0].searchParams), { since: first, until: last, step: '5s' });
  for (const u of paths) {
    const r = await get(u.href);
    assert.equal(r.status, 200, u.href);
    assert.equal(r.body, cli(u.pathname.slice(5), Object.fromEntries(u.searchParams)).stdout, u.href);
  }
  // Without a window: the file's status too (it may open on its recorded range), and the default hour.
  const bare = (await links('')).slice(2).map((l) => new URL(l[0], s.url));
  assert.deepEqual(bare.map((u) => `${u.pathname}?${u.searchParams}`), ['/api/status?', '/api/series?since=1h&step=1m', '/api/top?since=1h&by=ip&limit=20']);
});

test('the page\'s files carry an ETag: a tab opened again revalidates them with 304', async () => {
  for (const f of ['', 'app.js', 'app.css']) {
    const first = await get(`${s.url}${f}`);
    assert.equal(first.status, 200);
    const etag = String(first.headers.etag);
    assert.match(etag, /^"[A-Za-z0-9_-]{27}"$/);
    const again = await get(`${s.url}${f}`, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304, f);
    assert.equal(again.body, '');
    assert.match(String(again.headers['content-security-policy']), /default-src 'none'/);
    assert.equal((await get(`${s.url}${f}`, { headers: { 'If-None-Match': '"other"' } })).status, 200);
  }
});

test('a listen address other than loopback warns; with --auth-token-file a request without the token gets 401', async () => {
  const open = await serve(db, [], '0.0.0.0:0');
  try {
    assert.match(open.stderr, /warning: listening on 0\.0\.0\.0, not loopback: .*no --auth-token-file/);
    // 0.0.0.0 is no address to browse to: a loopback URL, and that it listens on every address.
    assert.match(open.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.match(open.stderr, /serving .* on http:\/\/127\.0\.0\.1:\d+\/ \(listening on every address of this host/);
    assert.equal((await get(`${open.url}api/status`)).status, 200);
  } finally {
    await open.stop();
  }
  const dir = tmp();
  const tokenFile = path.join(dir, 'token');
  const token = 'c2VjcmV0LXRva2VuLWZvci10ZXN0cw';
  writeFileSync(tokenFile, `${token}\n`);
  const locked = await serve(db, ['--auth-token-file', tokenFile]);
  try {
    assert.doesNotMatch(locked.stderr, /warning/);
    const url = `${locked.url}api/top?all=true`;
    const none = await get(url);
    assert.equal(none.status, 401);
    assert.equal((JSON.parse(none.body) as { error: { code: string } }).error.code, 'ERR_TC_AUTH');
    assert.equal((await get(url, { headers: { Authorization: `Bearer ${token}x` } })).status, 401);
    assert.equal((await get(url, { headers: { Authorization: `Bearer ${token.slice(1)}` } })).status, 401);
    assert.equal((await get(url, { headers: { Authorization: token } })).status, 401);
    const ok = await get(url, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    assert.equal(ok.body, cli('top', {}, ['--all']).stdout);
    // The page's requests carry the token, which a preload cannot: none named.
    assert.equal((await get(locked.url)).headers.link, undefined);
  } finally {
    await locked.stop();
  }
  writeFileSync(tokenFile, 'short\n');
  const r = query(['--db', db, 'serve', '--listen', '127.0.0.1:0', '--auth-token-file', tokenFile]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /must hold one token of at least 16 characters/);
  // A file that cannot be read and an address that is none are said at the start, not per request.
  const missing = query(['--db', path.join(dir, 'none.db'), 'serve', '--listen', '127.0.0.1:0']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /database .*none\.db does not exist/);
  const bad = query(['--db', db, 'serve', '--listen', 'host:99999']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr + bad.stdout, /is not HOST:PORT/);
  // A name that does not resolve and an address of another host: what is wrong and what to give.
  const unknown = query(['--db', db, 'serve', '--listen', 'nonsense.invalid:8080']);
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /cannot listen on nonsense\.invalid:8080: "nonsense\.invalid" is no address and no host name that resolves; give --listen HOST:PORT with an address of this host, e\.g\. 127\.0\.0\.1:8080/);
  assert.doesNotMatch(unknown.stderr, /getaddrinfo/);
  const foreign = query(['--db', db, 'serve', '--listen', '198.51.100.9:8080', '--format', 'json']);
  assert.equal(foreign.status, 1);
  const e = (JSON.parse(foreign.stdout) as { error: { message: string; code: string } }).error;
  assert.equal(e.code, 'ERR_TC_LISTEN');
  assert.match(e.message, /198\.51\.100\.9 is not an address of this host; give --listen HOST:PORT with an address of this host, e\.g\. 127\.0\.0\.1:8080/);
});

test('serve --format json: the listening line is one JSON document on stdout', async () => {
  const child = spawn(process.execPath, [QUERY, '--db', db, 'serve', '--listen', '127.0.0.1:0', '--format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`no listening line in 20 s: ${buf}`)), 20_000);
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        if (buf.includes('\n')) {
          clearTimeout(timer);
          resolve(buf.split('\n')[0]);
        }
      });
      child.once('exit', (code) => reject(new Error(`serve exited (${code}): ${buf}`)));
    });
    const doc = JSON.parse(line) as { listening: string; db: string; every_address: boolean; warnings: string[] };
    assert.match(doc.listening, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(doc.db, db);
    assert.equal(doc.every_address, false);
    assert.deepEqual(doc.warnings, []);
    assert.equal((await get(`${doc.listening}api/status`)).status, 200);
  } finally {
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await gone;
  }
});

test('on port 80 the listen address is accepted without a port, as clients send it', () => {
  const on80 = allowedHosts({ host: '192.0.2.7', port: 80 }, []);
  assert.deepEqual([...on80].sort(), ['192.0.2.7', '192.0.2.7:80']);
  const on8080 = allowedHosts({ host: '192.0.2.7', port: 8080 }, ['tc.example']);
  assert.ok(!on8080.has('192.0.2.7'));
  assert.ok(on8080.has('192.0.2.7:8080') && on8080.has('tc.example') && on8080.has('tc.example:8080') && on8080.has('tc.example:443'));
});

test('API errors: what the file cannot answer is 4xx, not 500; commander\'s option names read as parameters', async () => {
  // A replay has no local networks: side=local is the request's mistake.
  const side = await api('top', { all: 'true', side: 'local' });
  assert.equal(side.status, 422, side.body);
  assert.equal((JSON.parse(side.body) as { error: { code: string } }).error.code, 'ERR_TC_NO_LOCAL_NETWORKS');
  // No --labels given to serve: by=label is a usage error.
  assert.equal((await api('top', { all: 'true', by: 'label' })).status, 400);
  const limit = await api('top', { limit: '-1' });
  assert.equal(limit.status, 400);
  const msg = (JSON.parse(limit.body) as { error: { message: string } }).error.message;
  assert.match(msg, /parameter limit= argument/);
  assert.doesNotMatch(msg, /option '--limit/);
});
