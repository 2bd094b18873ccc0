/** `--user`: the live recorder gives up root once its sockets, rings and filter exist. */
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync } from 'node:fs';
import type { Logger } from '../observe/log';
import { WriterLock } from '../write/lock';
import { TcError } from '../../errors';

export function userIds(name: string): { uid: number; gid: number } {
  const r = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) throw new TcError(`--user ${name}: no such user`, 'ERR_TC_BAD_OPTION');
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/**
 * Drops root after the sockets, rings and filter exist: the database files are handed to the
 * user, then gid and uid change. Changing every uid from 0 to non-zero clears the permitted,
 * effective and ambient capability sets (capabilities(7), "Effect of user ID changes").
 */
export function dropPrivileges(user: string, dbFile: string, log: Logger): void {
  const { uid, gid } = userIds(user);
  for (const f of [dbFile, `${dbFile}-wal`, `${dbFile}-shm`, WriterLock.lockFile(dbFile)]) if (existsSync(f)) chownSync(f, uid, gid);
  (process as unknown as { initgroups(u: string, g: number): void }).initgroups(user, gid);
  process.setgid!(gid);
  process.setuid!(uid);
  log.info(`running as ${user} (uid ${uid}, gid ${gid}) without capabilities`);
}
