/**
 * One writer per database file. `record` (live or replay) and `rebuild` hold an exclusive
 * flock(2) on FILE.lock while they write (native/core/src/lock.rs): a second writer is refused
 * before it touches the database, and the kernel drops the lock when the holder dies, so a
 * crash never leaves a stale lock. The file names the holder, for the refusal's message.
 */
import { closeSync, ftruncateSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import * as engine from '../../native';
import { TcError } from '../../errors';

interface Holder {
  pid: number;
  session?: number;
  /** What it does: "live capture on eth0", "replay of a.pcap", "rebuild". */
  doing: string;
}

export class WriterLock {
  private constructor(
    private readonly file: string,
    private fd: number,
    private readonly holder: Holder,
  ) {}

  static lockFile(dbFile: string): string {
    return `${dbFile}.lock`;
  }

  /** Takes the lock of `dbFile` or throws TcError ERR_TC_LOCKED naming the process that holds it. */
  static acquire(dbFile: string, doing: string): WriterLock {
    const file = WriterLock.lockFile(dbFile);
    const fd = engine.tryLockFile(file);
    if (fd === null) {
      const h = readHolder(file);
      const who = h ? `pid ${h.pid}${h.session !== undefined ? `, session ${h.session}` : ''}` : 'pid unknown';
      throw new TcError(
        `another recorder (${who}) is writing ${dbFile}${h ? ` (${h.doing})` : ''}; stop it first${h ? ` (kill -INT ${h.pid})` : ''} or record into another --db`,
        'ERR_TC_LOCKED',
      );
    }
    const lock = new WriterLock(file, fd, { pid: process.pid, doing });
    lock.write();
    return lock;
  }

  /** Names the session being written, once it exists. */
  setSession(id: number): void {
    this.holder.session = id;
    this.write();
  }

  /** Removes the lock file, then releases the lock (lock.rs retries a lock won on a removed file). */
  release(): void {
    if (this.fd < 0) return;
    try {
      unlinkSync(this.file);
    } catch {
      /* not ours to remove (after --user) or already gone: the lock is released all the same */
    }
    closeSync(this.fd);
    this.fd = -1;
  }

  private write(): void {
    try {
      ftruncateSync(this.fd, 0);
      writeSync(this.fd, `${JSON.stringify(this.holder)}\n`, 0);
    } catch {
      /* a lock file this user cannot write: the lock holds, the refusal names no pid */
    }
  }
}

function readHolder(file: string): Holder | undefined {
  try {
    const h = JSON.parse(readFileSync(file, 'utf8')) as Holder;
    return typeof h.pid === 'number' ? h : undefined;
  } catch {
    return undefined;
  }
}
