/** Which session of the file a replay's capture is: its key, and the session already holding it. */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import * as engine from '../../native';
import type { WriteDb } from '../write/db';
import { legacyReplaySessions, sessionByKey, type PriorSession } from '../write/writer';

/** A replay's session key: the capture file's content alone, whatever its name or the options. */
export function replaySessionKey(file: string): string {
  return `replay:${engine.captureIdentity(file)}`;
}

/**
 * The session that already holds this capture, if any: keyed by its content, or by the key
 * earlier versions gave a replay of this one file (its size, first and last 4 MiB, and the
 * session's counting options as stored).
 */
export function priorSession(db: WriteDb, file: string, key: string): PriorSession | undefined {
  const byContent = sessionByKey(db.sqlite, key);
  if (byContent) return byContent;
  const legacy = legacyReplaySessions(db.sqlite);
  if (legacy.length === 0) return undefined;
  const h = createHash('sha256');
  const CHUNK = 4 << 20;
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    h.update(`${size}\0`);
    const buf = Buffer.alloc(Math.min(CHUNK, size));
    readSync(fd, buf, 0, buf.length, 0);
    h.update(buf);
    if (size > CHUNK) {
      const tail = Buffer.alloc(Math.min(CHUNK, size - CHUNK));
      readSync(fd, tail, 0, tail.length, size - tail.length);
      h.update(tail);
    }
  } finally {
    closeSync(fd);
  }
  return legacy.find((s) => `replay:${h.copy().update(s.options).digest('hex').slice(0, 32)}` === s.session_key);
}

/** The counting options of a replay session, as the command line gives them. */
export function describeOptions(json: string): string {
  let c: { intervalMs?: number; maxKeys?: number; flows?: boolean; ignoreFile?: string | null; acceptSourceFile?: string | null };
  try {
    c = JSON.parse(json);
  } catch {
    return json;
  }
  return [
    `--interval-secs ${(c.intervalMs ?? 0) / 1000}`,
    c.flows ? '--flows' : 'without --flows',
    `--max-keys ${c.maxKeys}`,
    ...(c.ignoreFile ? [`--ignore-file ${c.ignoreFile}`] : []),
    ...(c.acceptSourceFile ? [`--accept-source-file ${c.acceptSourceFile}`] : []),
  ].join(', ');
}
