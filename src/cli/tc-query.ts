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

/** Global options that take a value: their values are no command names. */
const GLOBAL_VALUES = new Set(['--db', '--labels', '--asn']);

/**
 * Where the command is named on the command line: the first word that is no option and no
 * option's value (-1: none). `--format X` given before it is skipped too: see formatAfterCommand.
 */
function commandIndex(argv: string[]): number {
  for (let i = 0; i < argv.length; i++) {
    if (GLOBAL_VALUES.has(argv[i]) || argv[i] === '--format') i++;
    else if (!argv[i].startsWith('-')) return i;
  }
  return -1;
}

/** The subcommand named on the command line (for the hint of a usage error), if any. */
function commandOf(argv: string[]): Command | undefined {
  const i = commandIndex(argv);
  return i < 0 ? undefined : program.commands.find((c) => c.name() === argv[i]);
}

/**
 * `tc-query --format json top ...` as `tc-query top --format json ...`: --format is an option of
 * each command (their formats differ: serve and chart write text or json), and people put it
 * first as they put --db; refusing it there as an unknown option helps nobody. A misspelt
 * command gets it too, so that commander names the command, not the option.
 */
export function formatAfterCommand(argv: string[]): string[] {
  const at = commandIndex(argv);
  // No command named: without --format, commander prints the help.
  if (at < 0) return argv.filter((a, i) => !(a === '--format' || a.startsWith('--format=') || argv[i - 1] === '--format'));
  const before: string[] = [];
  const moved: string[] = [];
  for (let i = 0; i < at; i++) {
    if (argv[i] === '--format' && i + 1 < at) moved.push(argv[i], argv[++i]);
    else if (argv[i].startsWith('--format=')) moved.push(argv[i]);
    else before.push(argv[i]);
  }
  return [...before, argv[at], ...moved, ...argv.slice(at + 1)];
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
program.parseAsync(formatAfterCommand(process.argv.slice(2)), { from: 'user' }).catch(fail);
