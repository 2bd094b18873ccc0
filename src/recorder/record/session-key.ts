/** Which session of the file a replay's capture is: its key, and the session already holding it. */
import * as engine from '../../native';
import type { WriteDb } from '../write/db';
import { sessionByKey, type PriorSession } from '../write/writer';

/** A replay's session key: the capture file's content alone, whatever its name or the options. */
export function replaySessionKey(file: string): string {
  return `replay:${engine.captureIdentity(file)}`;
}

/** `replaySessionKey`, the file read off the JS thread. */
export async function replaySessionKeyAsync(file: string): Promise<string> {
  return `replay:${await engine.captureIdentityAsync(file)}`;
}

/** The session that already holds this capture, if any: keyed by its content alone. */
export function priorSession(db: WriteDb, key: string): PriorSession | undefined {
  return sessionByKey(db.sqlite, key);
}

/** The counting options of a replay session, as the command line gives them. */
export function describeOptions(json: string): string {
  let c: { intervalMs?: number; maxKeys?: number; flows?: boolean; ignoreFile?: string | null; acceptSourceFile?: string | null; localNetworks?: string | null };
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
    ...(c.localNetworks ? [`--local-networks ${c.localNetworks}`] : []),
  ].join(', ');
}
