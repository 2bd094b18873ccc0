/** `tc-query serve`: the options of the web view; the server itself loads on use (server.ts). */
import { Command, InvalidArgumentError, Option } from 'commander';
import { openReadOnly } from '../db';
import type * as ServerMod from './server';

/** `--listen HOST:PORT`, `[v6]:PORT`, `HOST` (port 8080) or `:PORT` (loopback). */
export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*))(?::(\d{1,5}))?$/.exec(v.trim());
  const port = m?.[3] === undefined ? DEFAULT_PORT : Number(m[3]);
  const host = m ? (m[1] ?? m[2] ?? '') : '';
  if (!m || port > 65535 || (m[1] === undefined && host.includes(':'))) {
    throw new InvalidArgumentError(`${JSON.stringify(v)} is not HOST:PORT (127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080, or :8080 for loopback; port 0 picks a free one)`);
  }
  return { host: host === '' ? DEFAULT_HOST : host, port };
}

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8080;

export function addServe(program: Command): void {
  program
    .command('serve')
    .description('a read-only web view of the file (one page) and a JSON API that answers as the commands do with --format json: /api/top, /api/flows, /api/series, /api/status, /api/names, their parameters the commands\' options (/api/top?by=ip&since=1h&limit=20); the global --labels and --asn (given before serve) apply to every request (by=label, by=asn, label=)')
    .addOption(
      new Option('--listen <host:port>', 'address to listen on; another than loopback is warned about (give --auth-token-file then)')
        .argParser(parseListen)
        .default({ host: DEFAULT_HOST, port: DEFAULT_PORT }, `${DEFAULT_HOST}:${DEFAULT_PORT}`),
    )
    .option('--auth-token-file <file>', 'file holding a bearer token that every /api request must carry (Authorization: Bearer TOKEN); the page asks for it')
    .option('--allow-host <name>', 'a further Host name to accept (a DNS name the view is reached by, e.g. through a reverse proxy): accepted without a port, with the listen port or with :80/:443; NAME:PORT accepts that port only; repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .addOption(new Option('--format <fmt>', 'how start-up errors and the listening line are written: text on stderr, or json: one document on stdout ({"listening": URL, ...}; an error {"error": ...})').choices(['text', 'json']).default('text'))
    .action(async (opts, cmd: Command) => {
      const g = cmd.parent!.opts() as { db: string; labels?: string; asn?: string[] };
      const json = opts.format === 'json';
      // A file that cannot be read is said now, not on the first request.
      openReadOnly(g.db).close();
      /* eslint-disable-next-line @typescript-eslint/no-require-imports */
      const { startServer } = require('./server') as typeof ServerMod;
      const s = await startServer({ db: g.db, labels: g.labels, asn: g.asn, listen: opts.listen, tokenFile: opts.authTokenFile, allowHosts: opts.allowHost ?? [] });
      if (json) process.stdout.write(`${JSON.stringify({ listening: s.url, db: g.db, every_address: s.everyAddress, also: s.also, warnings: s.warnings })}\n`);
      else {
        for (const w of s.warnings) process.stderr.write(`tc-query: warning: ${w}\n`);
        const every = s.everyAddress ? ` (listening on every address of this host${s.also.length ? `; from others: ${s.also.join(', ')}` : ''})` : '';
        process.stderr.write(`tc-query: serving ${g.db} read-only on ${s.url}${every}\n`);
      }
      // Until a signal: every request has been answered or is dropped with the process.
      await new Promise<void>((resolve) => {
        const stop = () => {
          s.server.close(() => resolve());
          s.server.closeAllConnections();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
