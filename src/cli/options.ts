/** Option parsers shared by both programs: values are validated where they enter. */
import { InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

export function intIn(min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v.trim())) throw new InvalidArgumentError(`expected a whole number, got ${JSON.stringify(v)}`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`must be between ${min} and ${max}`);
    return n;
  };
}

export function defaultDb(): string {
  return process.env.TC_DB && process.env.TC_DB.length > 0 ? process.env.TC_DB : './traffic.db';
}

/** The version in package.json (both programs' `--version`). */
export function packageVersion(): string {
  // dist/src/cli/ -> the package root
  return (JSON.parse(readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
}

/**
 * A node id: it names `node=` folders of partitioned exports, so it must be safe as one path
 * component.
 */
export function nodeId(v: string): string {
  if (!/^[A-Za-z0-9._-]{1,253}$/.test(v) || v === '.' || v === '..') {
    throw new InvalidArgumentError(`${JSON.stringify(v)} is not a node id (letters, digits, ".", "_", "-"; at most 253; not "." or "..")`);
  }
  return v;
}

/**
 * Makes a usage error one line, `PROGRAM: error: MESSAGE; see \`PROGRAM CMD --help\``, instead
 * of the error followed by the whole help; with `json`, one `{"error": {message, code}}`
 * document on stdout (code ERR_TC_USAGE), as the program's other errors. Call it on each
 * command once it has its name.
 */
export function usageErrors(cmd: import('commander').Command, program: string, json = false): void {
  const name = cmd.parent ? `${program} ${cmd.name()}` : program;
  cmd.showHelpAfterError(false).configureOutput({
    outputError: (str, write) => {
      const message = `${str.trim().replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')}; see \`${name} --help\``;
      if (json) process.stdout.write(`${JSON.stringify({ error: { message, code: 'ERR_TC_USAGE' } })}\n`);
      else write(`${program}: error: ${message}\n`);
    },
  });
}

/**
 * Optimal string alignment distance (Levenshtein plus the swap of two neighbours: `max-db-sise`
 * is 1 from `max-db-size`, `itnerval` 1 from `interval`). Written here because commander's own
 * (lib/suggestSimilar.js, behind its "Did you mean" for flags) is not exported.
 */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/**
 * The known words nearest to `word`, as commander suggests a flag: at most 3 edits away and
 * more than 40% the same (so `colour` suggests nothing); the nearest ones only, in order given.
 */
export function nearest(word: string, known: string[]): string[] {
  let best = 4;
  let out: string[] = [];
  for (const k of known) {
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if ((Math.max(word.length, k.length) - d) / Math.max(word.length, k.length) <= 0.4 || d > best) continue;
    if (d < best) [best, out] = [d, []];
    out.push(k);
  }
  return out;
}
