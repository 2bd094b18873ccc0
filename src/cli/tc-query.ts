#!/usr/bin/env node
/** `tc-query`: questions to a traffic-counter database (read-only), answered through DuckDB. */
import type { Command } from 'commander';
import { buildProgram, errorOf, type ProgramIO } from './query-program';
import { renderError, type Answer } from '../query/output';
import { addServe } from '../query/serve/command';

const io: ProgramIO = {
  format: 'table',
  /** Prints an answer: the document on stdout, what explains it (an empty window, ...) on stderr. */
  answer(a: Answer) {
    for (const n of a.notes) process.stderr.write(`tc-query: ${n}\n`);
    process.stdout.write(a.out);
  },
};
const program = buildProgram(io);
addServe(program);

/** The subcommand named on the command line (for the hint of a usage error), if any. */
function commandOf(argv: string[]): Command | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--db' || argv[i] === '--labels' || argv[i] === '--asn') i++;
    else if (!argv[i].startsWith('-')) return program.commands.find((c) => c.name() === argv[i]);
  }
  return undefined;
}

function fail(err: unknown): void {
  const e = err as Error & { code?: string; exitCode?: number };
  if (e && (e.code === 'commander.helpDisplayed' || e.code === 'commander.version')) return;
  // Help printed instead of an answer (no command given) is on stderr and exits 1.
  if (e && e.code === 'commander.help') {
    process.exitCode = e.exitCode ?? 1;
    return;
  }
  const { message, code, usage } = errorOf(err);
  const sub = commandOf(process.argv.slice(2));
  const hint = usage ? `; see \`tc-query ${sub ? `${sub.name()} ` : ''}--help\`` : '';
  const r = renderError(io.format, message, code, hint);
  if (r.out) process.stdout.write(r.out);
  if (r.err) process.stderr.write(r.err);
  process.exitCode = e.exitCode && e.exitCode !== 0 ? e.exitCode : 1;
}

// A reader that stops early (`tc-query ... | head -1`) closes the pipe: end quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

if (process.argv.includes('--format=json') || process.argv.some((a, i) => a === '--format' && process.argv[i + 1] === 'json')) io.format = 'json';
program.parseAsync(process.argv).catch(fail);
