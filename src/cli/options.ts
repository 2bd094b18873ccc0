/** Option parsers shared by both programs: values are validated where they enter. */
import { InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

export function intIn(min: number, max: number) {
  return (v: string): number => {
    if (!/^-?\d+$/.test(v.trim())) throw new InvalidArgumentError(`expected a whole number, got ${JSON.stringify(v)}`);
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
 * document on stdout (code ERR_TC_USAGE), as the program's other errors. `tagged`: the line
 * ends in ` [ERR_TC_USAGE]`, for a program whose other error lines name their code
 * (traffic-counter's, which a service log is searched by). Call it on each command once it has
 * its name.
 */
export function usageErrors(cmd: import('commander').Command, program: string, json = false, tagged = false): void {
  const name = cmd.parent ? `${program} ${cmd.name()}` : program;
  cmd.showHelpAfterError(false).configureOutput({
    outputError: (str, write) => {
      // Without commander's closing period ("Allowed choices are a, b."): the hint follows.
      const message = `${str.trim().replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').replace(/\.$/, '')}; see \`${name} --help\``;
      if (json) process.stdout.write(`${JSON.stringify({ error: { message, code: 'ERR_TC_USAGE' } })}\n`);
      else write(`${program}: error: ${message}${tagged ? ' [ERR_TC_USAGE]' : ''}\n`);
    },
  });
}
