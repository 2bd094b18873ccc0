/**
 * The server of `tc-query serve`: node:http, no framework. The surface is small (one page, its
 * three static files and five GET routes) and every route must pass the same checks (Host,
 * token, method), which one request handler says in a page; a framework would add routing and
 * middleware this does not need, and dependencies a host that runs offline must carry.
 *
 * An API route runs the tc-query program itself (query-program.ts) on the request's
 * parameters, each `name=value` becoming `--name=value` of that command, with --format json:
 * the same parser, checks, defaults and query code as the CLI, so the body is byte for byte
 * what `tc-query CMD ... --format json` prints, an error the CLI's error document (400 for a
 * usage error). Nothing here writes: the database is opened read-only by the commands
 * (src/query/db.ts), there is no SQL route, and only GET and HEAD are answered.
 */
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { buildProgram, errorOf, type ProgramIO } from '../../cli/query-program';
import { toJson, type Answer } from '../output';
import { TcError } from '../../errors';
import { readProblem } from '../../cidr-file';
import type { Completeness } from '../coverage';
import { firstRequests, readView } from './view';
import { Duck } from '../duck';

export interface ServeOptions {
  db: string;
  labels?: string;
  asn?: string[];
  listen: { host: string; port: number };
  tokenFile?: string;
  /** Further Host header names to accept (DNS names the view is reached by). */
  allowHosts?: string[];
}

/** The API's routes: the commands they run. */
export const API_COMMANDS = ['top', 'flows', 'series', 'status', 'names'] as const;

/** Options of a command that are not parameters: the output is always JSON; help is not an answer. */
const NOT_PARAMS = new Set(['format', 'help']);
/** Longest parameter value and query string accepted (every real value is far shorter). */
const MAX_VALUE = 256;
const MAX_QUERY = 4096;
/** Commands running at once: each opens DuckDB, whose threads and memory the host shares. */
const MAX_RUNNING = 4;

const WEB_DIR = path.join(__dirname, '..', '..', '..', 'web');
const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};

/**
 * Every response's security headers: the page's own files only (no inline script or style, no
 * other origin), no framing, no referrer.
 */
const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Frame-Options': 'DENY',
};

export const COMPLETENESS_HEADER = 'X-TC-Completeness';
export const NOTES_HEADER = 'X-TC-Notes';

const isLoopback = (host: string) => host === 'localhost' || /^127\./.test(host) || host === '::1';
const isWildcard = (host: string) => host === '0.0.0.0' || host === '::';

/** A header value holds ASCII only: JSON with every other character escaped. */
const asciiJson = (v: unknown) => toJson(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** The ports a Host header may leave out or name for a proxy in front: http's and https's defaults. */
const DEFAULT_PORTS = [80, 443];

/**
 * Host header values (lower case) that name this server: its own names with its port (without
 * one too when it listens on port 80, which a client leaves out), and each --allow-host name
 * with or without a port (a reverse proxy sends its own Host, `tc.example` or
 * `tc.example:443`); a name given with a port is accepted with that port only.
 */
export function allowedHosts(listen: { host: string; port: number }, extra: string[]): Set<string> {
  const names = new Set<string>();
  const add = (h: string) => names.add(h.includes(':') ? `[${h}]` : h.toLowerCase());
  if (isLoopback(listen.host) || isWildcard(listen.host)) ['localhost', '127.0.0.1', '::1'].forEach(add);
  if (isWildcard(listen.host)) {
    add(os.hostname());
    for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) add(a.address.replace(/%.*$/, ''));
  } else add(listen.host);
  const out = new Set([...names].flatMap((h) => (listen.port === 80 ? [h, `${h}:80`] : [`${h}:${listen.port}`])));
  for (const e of extra.map((h) => h.toLowerCase())) {
    if (/^(\[[^\]]*\]|[^:]*):\d+$/.test(e)) out.add(e);
    else for (const form of [e, `${e}:${listen.port}`, ...DEFAULT_PORTS.map((p) => `${e}:${p}`)]) out.add(form);
  }
  return out;
}

function readToken(file: string): Buffer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new TcError(`cannot read --auth-token-file ${file}: ${readProblem(err)}; give a file this user can read holding one token (e.g. \`openssl rand -hex 32 > ${file}\`)`, 'ERR_TC_USAGE');
  }
  if (text.length < 16 || /\s/.test(text)) throw new TcError(`--auth-token-file ${file} must hold one token of at least 16 characters without spaces (e.g. \`openssl rand -hex 32 > ${file}\`)`, 'ERR_TC_USAGE');
  return createHash('sha256').update(text).digest();
}

/** The bearer token of a request matches: digests compared in constant time (equal lengths whatever was sent). */
function tokenMatches(req: http.IncomingMessage, digest: Buffer): boolean {
  const m = /^Bearer ([^\s]+)$/.exec(req.headers.authorization ?? '');
  return m !== null && timingSafeEqual(createHash('sha256').update(m[1]).digest(), digest);
}

/**
 * The command line of an API request: the global options the server was started with, the
 * command, then each parameter as `--name=value` (a flag as `--name`), refused unless it is an
 * option of that command. `=` keeps a value that starts with `-` a value.
 */
export function argvOf(cmdName: string, params: URLSearchParams, globals: string[], flagsOf: (cmd: string) => Map<string, boolean>): string[] {
  const known = flagsOf(cmdName);
  const argv = [...globals, cmdName];
  const seen = new Set<string>();
  for (const [name, value] of params) {
    if (seen.has(name)) throw new TcError(`parameter ${name} is given twice; give it once`, 'ERR_TC_USAGE');
    seen.add(name);
    const takesValue = known.get(name);
    if (takesValue === undefined) throw new TcError(`${cmdName} has no parameter ${JSON.stringify(name.slice(0, 40))} (it takes ${[...known.keys()].join(', ')})`, 'ERR_TC_USAGE');
    if (value.length > MAX_VALUE) throw new TcError(`parameter ${name} is ${value.length} characters long (at most ${MAX_VALUE})`, 'ERR_TC_USAGE');
    if (takesValue) argv.push(`--${name}=${value}`);
    else if (value === '' || value === 'true' || value === '1') argv.push(`--${name}`);
    else if (value !== 'false' && value !== '0') throw new TcError(`parameter ${name} is a flag: give ${name}=true or leave it out (not ${JSON.stringify(value.slice(0, 40))})`, 'ERR_TC_USAGE');
  }
  return [...argv, '--format=json'];
}

/** The parameters of each command: its long options but --format and --help, and whether each takes a value. */
function commandFlags(): (cmd: string) => Map<string, boolean> {
  const program = buildProgram({ format: 'json', answer: () => undefined });
  const map = new Map<string, Map<string, boolean>>();
  for (const c of program.commands) {
    const m = new Map<string, boolean>();
    for (const o of c.options) {
      const name = o.long?.replace(/^--/, '');
      if (name && !NOT_PARAMS.has(name)) m.set(name, o.required || o.optional);
    }
    map.set(c.name(), m);
  }
  return (cmd) => map.get(cmd)!;
}

interface ApiResult {
  status: number;
  body: string;
  completeness?: Completeness;
  notes: string[];
}

/** Runs one command of the tc-query program and returns its JSON answer, or its error document. */
async function runCommand(argv: string[]): Promise<ApiResult> {
  let answer: Answer | undefined;
  const io: ProgramIO = { format: 'json', answer: (a) => (answer = a) };
  try {
    await buildProgram(io).parseAsync(argv, { from: 'user' });
    if (!answer) throw new TcError('the command gave no answer', 'ERR_TC');
    return { status: 200, body: answer.out, completeness: answer.completeness, notes: answer.notes };
  } catch (err) {
    return errorResult(err);
  }
}

/**
 * Errors that are the request's, not the server's, beside usage errors: what this file cannot
 * answer (422: --side on a file without local networks, nothing to show).
 */
const UNANSWERABLE = new Set(['ERR_TC_NO_LOCAL_NETWORKS', 'ERR_TC_NO_DATA']);

/** The HTTP status of an error: 4xx for the request's mistakes; 500 only where the server failed. */
export function statusOf(code: string, usage: boolean): number {
  if (usage) return 400;
  if (code === 'ERR_TC_NO_DATABASE') return 404;
  return UNANSWERABLE.has(code) ? 422 : 500;
}

/**
 * A CLI message as a request's: commander's `option '--limit <n>' argument ...` names the
 * parameter (`parameter limit= argument ...`). Other messages keep their flags: they also name
 * options of serve itself (--labels), which no parameter sets.
 */
export function asParameters(message: string): string {
  return message.replace(/option '--([a-z0-9-]+)(?: <[^>]*>)?'/g, 'parameter $1=');
}

function errorResult(err: unknown): ApiResult {
  const { message, code, usage } = errorOf(err);
  const status = statusOf(code, usage);
  return { status, body: `${toJson({ error: { message: status < 500 ? asParameters(message) : message, code } })}\n`, notes: [] };
}

/**
 * The page's first API requests as a `Link: rel=preload` header: the browser asks for them as
 * the page arrives, while it loads the script that asks for them, and hands the answers to the
 * page's own fetches (the same URL, and `crossorigin` for fetch()'s same-origin credentials).
 * Not with a token: the page's requests then carry it, which a preload cannot.
 */
function preloads(params: URLSearchParams): Record<string, string> {
  const api = firstRequests(readView(params), Date.now()).map((p) => `<${p}>; rel=preload; as=fetch; crossorigin`);
  return { Link: ['</app.css>; rel=preload; as=style', '</app.js>; rel=preload; as=script', ...api].join(', ') };
}

/** A counting semaphore: at most `n` holders at once, the others waiting in order. */
function limiter(n: number) {
  let running = 0;
  const queue: (() => void)[] = [];
  return async <T>(f: () => Promise<T>): Promise<T> => {
    if (running >= n) await new Promise<void>((r) => queue.push(r));
    running++;
    try {
      return await f();
    } finally {
      running--;
      queue.shift()?.();
    }
  };
}

export interface Served {
  server: http.Server;
  /** A URL to browse to on this host. */
  url: string;
  /** With a wildcard listen address: the URLs of this host's name and other addresses. */
  also: string[];
  /** Listening on every address of the host (0.0.0.0 or ::). */
  everyAddress: boolean;
  warnings: string[];
}

export async function startServer(o: ServeOptions): Promise<Served> {
  const warnings: string[] = [];
  const token = o.tokenFile ? readToken(o.tokenFile) : undefined;
  if (!isLoopback(o.listen.host)) {
    warnings.push(
      `listening on ${o.listen.host}, not loopback: anyone who can reach it reads the traffic of this file${token ? '' : ' (no --auth-token-file: every request is answered without a token)'}`,
    );
  }
  const globals = ['--db', o.db, ...(o.labels ? ['--labels', o.labels] : []), ...(o.asn ?? []).flatMap((f) => ['--asn', f])];
  const flagsOf = commandFlags();
  const limit = limiter(MAX_RUNNING);
  Duck.keepInstances(MAX_RUNNING);
  // The page's files with their ETags: a tab opened again revalidates them (304) and the
  // browser reuses its copy and the script's compiled code.
  const files = new Map<string, { body: Buffer; etag: string }>();
  const fileOf = (name: string) => {
    let f = files.get(name);
    if (!f) {
      const body = readFileSync(path.join(WEB_DIR, name));
      f = { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
      files.set(name, f);
    }
    return f;
  };
  let hosts = new Set<string>();

  const send = (res: http.ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}, head = false) => {
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': String(Buffer.byteLength(body)), ...extra });
    res.end(head ? undefined : body);
  };
  const sendError = (res: http.ServerResponse, status: number, message: string, code: string, extra: Record<string, string> = {}) =>
    send(res, status, 'application/json; charset=utf-8', `${toJson({ error: { message, code } })}\n`, { 'Cache-Control': 'no-store', ...extra });

  const answer = async (cmd: string, params: URLSearchParams): Promise<ApiResult> => {
    let argv: string[];
    try {
      argv = argvOf(cmd, params, globals, flagsOf);
    } catch (err) {
      return errorResult(err);
    }
    // A command reads SQLite on this thread before its first wait: requests that arrived with
    // this one (the page's script and styles beside its preloads) are answered first.
    await new Promise((resolve) => setImmediate(resolve));
    return limit(() => runCommand(argv));
  };

  const server = http.createServer(async (req, res) => {
    try {
      // A page of another origin that resolves its name to this address (DNS rebinding) sends its own Host.
      const host = (req.headers.host ?? '').toLowerCase();
      if (!hosts.has(host)) return sendError(res, 421, `Host ${JSON.stringify(host.slice(0, 100))} is not this server (it answers to ${[...hosts].slice(0, 3).join(', ')}${hosts.size > 3 ? ', ...' : ''}); give --allow-host NAME for another name`, 'ERR_TC_HOST');
      if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(res, 405, `${req.method} is not answered: the view is read-only (GET only)`, 'ERR_TC_METHOD', { Allow: 'GET, HEAD' });
      const head = req.method === 'HEAD';
      const url = new URL(req.url ?? '/', 'http://x');
      const st = STATIC[url.pathname];
      if (st) {
        const f = fileOf(st.file);
        const extra = { 'Cache-Control': 'no-cache', ETag: f.etag, ...(url.pathname === '/' && !token ? preloads(url.searchParams) : {}) };
        if (req.headers['if-none-match'] === f.etag) {
          res.writeHead(304, { ...SECURITY_HEADERS, ...extra });
          return res.end();
        }
        return send(res, 200, st.type, f.body, extra, head);
      }
      const m = /^\/api\/([a-z]+)$/.exec(url.pathname);
      if (!m || !(API_COMMANDS as readonly string[]).includes(m[1])) return sendError(res, 404, `no route ${url.pathname.slice(0, 100)} (the API: ${API_COMMANDS.map((c) => `/api/${c}`).join(', ')})`, 'ERR_TC_NOT_FOUND');
      if (token && !tokenMatches(req, token)) return sendError(res, 401, 'this server needs its token: send Authorization: Bearer TOKEN (the token of --auth-token-file)', 'ERR_TC_AUTH', { 'WWW-Authenticate': 'Bearer' });
      const r = (req.url ?? '').length > MAX_QUERY ? errorResult(new TcError(`the request is ${req.url!.length} characters long (at most ${MAX_QUERY})`, 'ERR_TC_USAGE')) : await answer(m[1], url.searchParams);
      const extra: Record<string, string> = { 'Cache-Control': 'no-store', [NOTES_HEADER]: asciiJson(r.notes) };
      if (r.completeness) extra[COMPLETENESS_HEADER] = asciiJson(r.completeness);
      send(res, r.status, 'application/json; charset=utf-8', r.body, extra, head);
    } catch (err) {
      if (!res.headersSent) sendError(res, 500, (err as Error).message, 'ERR_TC');
      else res.destroy();
    }
  });
  // Slow or stalled clients cannot hold sockets for long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 120_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(o.listen, err)));
    server.listen(o.listen.port, o.listen.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  hosts = allowedHosts({ host: o.listen.host, port }, o.allowHosts ?? []);
  const urlOf = (h: string) => `http://${h.includes(':') ? `[${h}]` : h}:${port}/`;
  if (!isWildcard(o.listen.host)) return { server, url: urlOf(o.listen.host), also: [], everyAddress: false, warnings };
  // 0.0.0.0 or :: is no address to browse to: this host's loopback, and its name and addresses for the others.
  return { server, url: urlOf(o.listen.host === '::' ? '::1' : '127.0.0.1'), also: [os.hostname(), ...externalAddresses()].map(urlOf), everyAddress: true, warnings };
}

/** This host's addresses other than loopback (link-local ones need a zone no browser takes). */
function externalAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flatMap((l) => l ?? [])
    .filter((a) => !a.internal && !/^fe80:/i.test(a.address))
    .map((a) => a.address);
}

/** Why --listen failed, and what to give instead. */
function listenError(listen: { host: string; port: number }, err: NodeJS.ErrnoException): TcError {
  const at = `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`;
  const fix = `give --listen HOST:PORT with an address of this host, e.g. 127.0.0.1:${listen.port || 8080} (0.0.0.0:${listen.port || 8080}: every address${externalAddresses().length ? `; this host has ${externalAddresses().slice(0, 4).join(', ')}` : ''})`;
  const why =
    err.code === 'EADDRINUSE'
      ? 'the port is in use (another server listens there); pick another with --listen HOST:PORT'
      : err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN' || err.code === 'EAI_NONAME'
        ? `${JSON.stringify(listen.host)} is no address and no host name that resolves; ${fix}`
        : err.code === 'EADDRNOTAVAIL'
          ? `${listen.host} is not an address of this host; ${fix}`
          : err.code === 'EACCES'
            ? `port ${listen.port} needs privileges (ports below 1024 do); pick a port from 1024 up, e.g. --listen ${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:8080`
            : `${err.message}; ${fix}`;
  return new TcError(`cannot listen on ${at}: ${why}`, 'ERR_TC_LISTEN');
}
