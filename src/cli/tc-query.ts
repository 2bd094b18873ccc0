#!/usr/bin/env node
/** `tc-query`: questions to a traffic-counter database (read-only), answered through DuckDB. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { top } from '../query/top';
import { makeWindow } from '../query/window';
import { renderError, type Format } from '../query/output';
import { defaultDb, intIn } from './options';

const program = new Command('tc-query')
  .description('Query a traffic-counter database (opened read-only)')
  .option('--db <file>', 'database file (env TC_DB)', defaultDb())
  .showHelpAfterError();

let format: Format = 'table';

const formatOption = () =>
  new Option('--format <fmt>', 'output format').choices(['table', 'json', 'csv']).default('table');

function windowOptions(cmd: Command): Command {
  return cmd
    .option('--since <time>', 'start: a duration before now (30s, 15m, 1h, 7d), an ISO-8601 time or epoch seconds (default 1h)')
    .option('--until <time>', 'end: same forms as --since (default now)')
    .option('--all', 'the whole file', false);
}

windowOptions(
  program
    .command('top')
    .description('top talkers (--by ip) or top flows (--by flow), largest bytes first')
    .addOption(new Option('--by <what>', 'group by').choices(['ip', 'flow']).default('ip')),
)
  .option('--limit <n>', 'rows to show (0 = every row)', intIn(0, 1e9), 20)
  .addOption(formatOption())
  .action(async (opts, cmd: Command) => {
    format = opts.format;
    const window = makeWindow(opts);
    const out = await top({ db: cmd.parent!.opts().db, by: opts.by, window, limit: opts.limit, format: opts.format });
    process.stdout.write(out);
  });

// Parse errors in json mode still print one JSON document.
program.exitOverride();
program.configureOutput({
  writeErr: (s) => {
    if (format !== 'json') process.stderr.write(s);
  },
});

function fail(err: unknown): void {
  const e = err as Error & { code?: string };
  if (e && e.code === 'commander.helpDisplayed') return;
  if (e && e.code === 'commander.version') return;
  const code = e instanceof InvalidArgumentError || (e.code ?? '').startsWith('commander.') ? 'ERR_TC_USAGE' : (e.code ?? 'ERR_TC');
  const msg = (e.message ?? String(err)).replace(/^error: /, '');
  const r = renderError(format, msg, code);
  if (r.out) process.stdout.write(r.out);
  if (r.err && !(e.code ?? '').startsWith('commander.')) process.stderr.write(r.err);
  process.exitCode = (e as { exitCode?: number }).exitCode ?? 1;
  if (process.exitCode === 0) process.exitCode = 1;
}

if (process.argv.includes('--format=json') || process.argv.some((a, i) => a === '--format' && process.argv[i + 1] === 'json')) format = 'json';
program.parseAsync(process.argv).catch(fail);
