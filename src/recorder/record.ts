/**
 * `traffic-counter record`: checks what it is given, takes the writer lock and runs the capture
 * engine live (record/live.ts) or over capture files (record/replay.ts); every interval batch
 * goes to the sink, which appends it to the database. Also `traffic-counter rebuild`.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import * as engine from '../native';
import { checkWritable, openForWrite } from './write/db';
import { missingCapabilities } from './record/caps';
import { WriterLock } from './write/lock';
import { Rollups } from './rollups/rollups';
import { closeDb, type RecordOptions } from './record/options';
import { userIds } from './record/privileges';
import { recordLive } from './record/live';
import { recordReplay } from './record/replay';
import { readLocalNetworksFile } from './record/local-networks';
import { TcError } from '../errors';
import { accessProblem } from '../db-identity';

export type { RecordOptions } from './record/options';

/**
 * Refuses a file the user named that this process cannot read, saying what to do: the engine's
 * own message would end in the OS error ("No such file or directory (os error 2)").
 */
function checkReadable(file: string, what: string, flag: string, code: string): void {
  const problem = accessProblem(file);
  if (problem === undefined) return;
  const where = path.isAbsolute(file) ? '' : ` (relative to ${process.cwd()})`;
  if (problem === 'does not exist') throw new TcError(`cannot open ${what} ${file}: it does not exist${where}; check the path given to ${flag}`, code);
  if (problem === 'is a directory') {
    throw new TcError(`${file} is a directory, not a ${what}; give the file${flag === '--pcap' ? `s in it (${flag} ${path.join(file, '*.pcap')})` : ` in it (${flag} ${path.join(file, 'FILE')})`}`, code);
  }
  throw new TcError(`cannot open ${what} ${file}: ${problem}; make it readable for this user (chmod a+r ${file}), or run as one who can read it`, code);
}

/** A capture the engine cannot read, said with what to give instead. */
function captureRefused(err: unknown): unknown {
  if (!(err instanceof TcError) || err.code !== 'ERR_TC_NOT_A_CAPTURE' || !/is not a pcap or pcapng capture file/.test(err.message)) return err;
  return new TcError(`${err.message}; give --pcap a pcap or pcapng file (as tcpdump -w or dumpcap write them)`, err.code);
}

export async function record(o: RecordOptions): Promise<void> {
  // Everything the user gave is checked before the database is touched.
  for (const [file, flag] of [[o.ignoreFile, '--ignore-file'], [o.acceptSourceFile, '--accept-source-file']] as const) {
    if (file === undefined) continue;
    checkReadable(file, 'CIDR file', flag, 'ERR_TC_CIDR_FILE');
    engine.checkCidrFile(file);
  }
  const localNetworks = o.localNetworks !== undefined ? readLocalNetworksFile(o.localNetworks) : undefined;
  if (o.user) userIds(o.user);
  const replaying = o.pcap !== undefined && o.pcap.length > 0;
  if (o.replace && !replaying) throw new TcError('--replace applies to replays only (--pcap FILE...)', 'ERR_TC_BAD_OPTION');
  if (replaying) {
    // The codes the engine gives the same problems: a file it cannot open, a directory.
    for (const f of o.pcap!) checkReadable(f, 'capture file', '--pcap', accessProblem(f) === 'is a directory' ? 'ERR_TC_NOT_A_CAPTURE' : 'ERR_TC_OPEN');
    try {
      engine.probeCaptures(o.pcap!);
    } catch (err) {
      throw captureRefused(err);
    }
  } else {
    const missing = missingCapabilities({ ebpf: o.ebpf, user: o.user });
    if (missing.length > 0) {
      throw new TcError(
        `live capture needs ${missing.join(', ')}, which this process does not have; run as root, or grant ${missing.length === 1 ? 'it' : 'them'} (AmbientCapabilities= in contrib/traffic-counter.service)`,
        'ERR_TC_PERMISSION',
      );
    }
  }
  // One writer per file, checked before the database is opened (no migration, event or scan
  // of unclean shutdowns happens under another writer).
  checkWritable(o.db);
  const lock = WriterLock.acquire(o.db, replaying ? `replay of ${o.pcap!.map((f) => path.basename(f)).join(' ')}` : `live capture on ${o.iface ?? 'the default-route interface'}`);
  try {
    if (replaying) await recordReplay(o, o.pcap!, lock, localNetworks);
    else await recordLive(o, lock, localNetworks);
  } finally {
    lock.release();
  }
}

/** `traffic-counter rebuild`: recomputes every projection from the log. */
export async function rebuild(dbFile: string): Promise<{ buckets: number }> {
  if (!existsSync(dbFile)) throw new TcError(`database ${dbFile} does not exist; give the file the recorder writes (--db FILE, or TC_DB)`, 'ERR_TC_NO_DATABASE');
  checkWritable(dbFile);
  const lock = WriterLock.acquire(dbFile, 'rebuild');
  try {
    const db = await openForWrite(dbFile);
    try {
      return new Rollups(db.sqlite).rebuild();
    } finally {
      closeDb(db);
    }
  } finally {
    lock.release();
  }
}
