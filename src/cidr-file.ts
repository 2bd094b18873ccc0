/**
 * CIDR files of the command line, one network a line: tc-query's label files (`CIDR label`)
 * and the recorder's `--local-networks` (`CIDR`). IPv4 and IPv6; an address alone is its /32 or
 * /128; `#` comments (a line starting with `#`, or the rest of a line from a `#` after a blank)
 * and blank lines. The one parser of both, so that they read a line alike and say a problem
 * alike: with the file and the line, and what a line should be.
 */
import { readFileSync } from 'node:fs';
import { formatAddr, parseCidr } from './addr';
import { TcError } from './errors';

/** A line's network (its address masked to the prefix), the text after it, and the line number. */
export interface CidrLine {
  addr: Uint8Array;
  prefix: number;
  /** The text after the CIDR ('' when a line holds the CIDR alone). */
  rest: string;
  line: number;
}

export interface CidrFileSpec {
  /** The file as messages name it ("label file"). */
  what: string;
  /** What to do when it cannot be read ("give --labels FILE (...)"). */
  remedy: string;
  /** The text after the CIDR: required (a label, named `restName`) or none allowed. */
  rest: 'required' | 'none';
  restName?: string;
  /** What a line is, for the messages ('each line is "CIDR label" (e.g. "10.1.0.0/16 office")'). */
  form: string;
  /** The error code of every problem with the file. */
  code: string;
}

/** Why a file cannot be read, in words. */
export function readProblem(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'it is a directory' : e.code === 'EACCES' ? 'permission denied' : e.message;
}

/** Reads a CIDR file; every problem names the file and line and says what a line should be. */
export function readCidrFile(file: string, spec: CidrFileSpec): CidrLine[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TcError(`cannot read ${spec.what} ${file}: ${readProblem(err)}; ${spec.remedy}`, spec.code);
  }
  const out: CidrLine[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const where = `${file}:${i + 1}`;
    const line = lines[i].replace(/(^|\s)#.*$/, '').trim();
    if (line === '') continue;
    const m = /^(\S+)(?:\s+(.+))?$/.exec(line)!;
    const [, cidrText, rest = ''] = m;
    if (spec.rest === 'required' && rest === '') throw new TcError(`${where}: ${JSON.stringify(line)} has no ${spec.restName ?? 'text after the CIDR'}; ${spec.form}`, spec.code);
    if (spec.rest === 'none' && rest !== '') throw new TcError(`${where}: ${JSON.stringify(line)} is more than one CIDR; ${spec.form}`, spec.code);
    const c = parseCidr(cidrText);
    if (!c) throw new TcError(`${where}: ${JSON.stringify(cidrText)} is not a CIDR (e.g. 10.1.0.0/16, 2001:db8::/32, or one address)`, spec.code);
    // The address as written (before masking): host bits past the prefix are refused, since
    // "10.1.2.3/16" may mean the network or the one address.
    const given = parseCidr(cidrText.split('/')[0])?.addr;
    if (given && !given.every((b, k) => b === c.addr[k])) {
      throw new TcError(`${where}: ${cidrText} has bits set past its /${c.prefix}; write the network, ${formatAddr(c.addr)}/${c.prefix}`, spec.code);
    }
    out.push({ addr: c.addr, prefix: c.prefix, rest, line: i + 1 });
  }
  return out;
}
