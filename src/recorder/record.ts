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

export type { RecordOptions } from './record/options';

export async function record(o: RecordOptions): Promise<void> {
  // Everything the user gave is checked before the database is touched.
  if (o.ignoreFile) engine.checkCidrFile(o.ignoreFile);
  if (o.acceptSourceFile) engine.checkCidrFile(o.acceptSourceFile);
  const localNetworks = o.localNetworks !== undefined ? readLocalNetworksFile(o.localNetworks) : undefined;
  if (o.user) userIds(o.user);
  const replaying = o.pcap !== undefined && o.pcap.length > 0;
  if (o.replace && !replaying) throw new TcError('--replace applies to replays only (--pcap FILE...)', 'ERR_TC_BAD_OPTION');
  if (replaying) engine.probeCaptures(o.pcap!);
  else {
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
  if (!existsSync(dbFile)) throw new TcError(`database ${dbFile} does not exist`, 'ERR_TC_NO_DATABASE');
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
