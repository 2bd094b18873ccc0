/**
 * Appends interval batches to the event log: one synchronous better-sqlite3 transaction per
 * batch, prepared multi-row INSERTs, an in-memory address dictionary. The only writer of the
 * database.
 */
import type Database from 'better-sqlite3';
import { formatAddr } from '../addr';
import type { Batch } from '../native';

const ROWS_PER_INSERT = 50;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** The dictionary cache is cleared when it grows past this many addresses (bounded memory). */
const DICT_CACHE_MAX = 2_000_000;

/** JS number when exact, BigInt otherwise (better-sqlite3 binds both as INTEGER). */
function int(v: bigint): number | bigint {
  return v <= MAX_SAFE ? Number(v) : v;
}

export interface SessionSpec {
  key: string;
  kind: 'live' | 'replay';
  source: string;
  intervalMs: number;
  flows: boolean;
  options: Record<string, unknown>;
}

export interface WriteResult {
  /** False when the batch was already in the log (an idempotent re-append). */
  written: boolean;
  batchId: number;
  ipRows: number;
  flowRows: number;
}

export class BatchWriter {
  readonly sessionId: number;
  private seq: number;
  private readonly dict = new Map<string, number>();
  private readonly stmts;
  private readonly writeTx: (b: Batch) => WriteResult;

  constructor(db: Database.Database, nodeId: string, spec: SessionSpec) {
    const now = Date.now();
    db.prepare(
      `insert or ignore into sessions (session_key, node_id, kind, source, interval_ms, flows, started_at, options)
       values (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(spec.key, nodeId, spec.kind, spec.source, spec.intervalMs, spec.flows ? 1 : 0, now, JSON.stringify(spec.options));
    this.sessionId = (db.prepare('select id from sessions where session_key = ?').pluck().get(spec.key) as number);
    // A session appended to again (a replay of the same content) starts over at sequence 0:
    // batches already in the log are skipped, so nothing is counted twice.
    this.seq = 0;
    const values = (cols: number, rows: number) => Array(rows).fill(`(${Array(cols).fill('?').join(',')})`).join(',');
    this.stmts = {
      batch: db.prepare(
        `insert or ignore into batches (session_id, seq, start_ms, end_ms, frames, ip_packets, ip_bytes, ipv4_packets,
           ipv4_bytes, ipv6_packets, ipv6_bytes, non_ip, ip_header_incomplete, fragments_first, fragments_non_first,
           ip_length_field_zero, ignored, late, ring_packets, ring_drops, ring_freeze_q_cnt, filter_passed, filter_non_ip,
           filter_ignored, filter_not_accepted, ip_overflow_keys, flow_overflow_keys, ip_rows, flow_rows, last, written_at)
         values ${values(31, 1)}`,
      ),
      ipMany: db.prepare(`insert into ip_deltas (batch_id, ip_id, tx_packets, tx_bytes, rx_packets, rx_bytes) values ${values(6, ROWS_PER_INSERT)}`),
      ipOne: db.prepare(`insert into ip_deltas (batch_id, ip_id, tx_packets, tx_bytes, rx_packets, rx_bytes) values ${values(6, 1)}`),
      flowMany: db.prepare(
        `insert into flow_deltas (batch_id, src_id, dst_id, proto, sport, dport, packets, bytes) values ${values(8, ROWS_PER_INSERT)}`,
      ),
      flowOne: db.prepare(`insert into flow_deltas (batch_id, src_id, dst_id, proto, sport, dport, packets, bytes) values ${values(8, 1)}`),
      addrGet: db.prepare('select id from addresses where addr = ?').pluck(),
      addrPut: db.prepare('insert into addresses (addr, text) values (?, ?)'),
      endSession: db.prepare('update sessions set ended_at = ? where id = ?'),
    };
    this.writeTx = db.transaction((b: Batch) => this.writeInTx(b));
  }

  /** Dictionary id of the address at `addr[off..]` of family `fam` (0 = overflow row). */
  private addrId(fam: number, addr: Uint8Array, off: number): number {
    const len = fam === 4 ? 4 : fam === 6 ? 16 : 0;
    const buf = Buffer.from(addr.buffer, addr.byteOffset + off, len);
    const key = fam === 0 ? '' : String.fromCharCode(fam) + buf.toString('latin1');
    const hit = this.dict.get(key);
    if (hit !== undefined) return hit;
    let id = this.stmts.addrGet.get(buf) as number | undefined;
    if (id === undefined) {
      const text = fam === 0 ? 'overflow' : formatAddr(addr, off, fam);
      id = Number(this.stmts.addrPut.run(Buffer.from(buf), text).lastInsertRowid);
    }
    if (this.dict.size >= DICT_CACHE_MAX) this.dict.clear();
    this.dict.set(key, id);
    return id;
  }

  private writeInTx(b: Batch): WriteResult {
    const c = b.counters;
    const ring = b.hasRing;
    const filt = b.hasFilter;
    const seq = this.seq++;
    const r = this.stmts.batch.run(
      this.sessionId, seq, b.startMs, b.endMs,
      int(c.frames), int(c.ipPackets), int(c.ipBytes), int(c.ipv4Packets), int(c.ipv4Bytes), int(c.ipv6Packets),
      int(c.ipv6Bytes), int(c.nonIp), int(c.ipHeaderIncomplete), int(c.fragmentsFirst), int(c.fragmentsNonFirst),
      int(c.ipLengthFieldZero), int(c.ignored), int(c.late),
      ring ? int(c.ringPackets) : null, ring ? int(c.ringDrops) : null, ring ? int(c.ringFreezeQCnt) : null,
      filt ? int(c.filterPassed) : null, filt ? int(c.filterNonIp) : null, filt ? int(c.filterIgnored) : null,
      filt ? int(c.filterNotAccepted) : null,
      int(c.ipOverflowKeys), int(c.flowOverflowKeys), b.ip.count, b.flow.count, b.last ? 1 : 0, Date.now(),
    );
    if (r.changes === 0) return { written: false, batchId: 0, ipRows: 0, flowRows: 0 };
    const batchId = Number(r.lastInsertRowid);

    const ip = b.ip;
    const ipParams: (number | bigint)[] = [];
    for (let i = 0; i < ip.count; i++) {
      ipParams.push(batchId, this.addrId(ip.fam[i], ip.addr, i * 16), int(ip.txPackets[i]), int(ip.txBytes[i]), int(ip.rxPackets[i]), int(ip.rxBytes[i]));
      if (ipParams.length === 6 * ROWS_PER_INSERT) {
        this.stmts.ipMany.run(ipParams);
        ipParams.length = 0;
      }
    }
    for (let i = 0; i < ipParams.length; i += 6) this.stmts.ipOne.run(ipParams.slice(i, i + 6));

    const f = b.flow;
    const flowParams: (number | bigint)[] = [];
    for (let i = 0; i < f.count; i++) {
      flowParams.push(
        batchId, this.addrId(f.srcFam[i], f.src, i * 16), this.addrId(f.dstFam[i], f.dst, i * 16),
        f.proto[i], f.sport[i], f.dport[i], int(f.packets[i]), int(f.bytes[i]),
      );
      if (flowParams.length === 8 * ROWS_PER_INSERT) {
        this.stmts.flowMany.run(flowParams);
        flowParams.length = 0;
      }
    }
    for (let i = 0; i < flowParams.length; i += 8) this.stmts.flowOne.run(flowParams.slice(i, i + 8));
    return { written: true, batchId, ipRows: ip.count, flowRows: f.count };
  }

  /** Appends one batch in one transaction. Appending a batch already in the log is a no-op. */
  write(b: Batch): WriteResult {
    return this.writeTx(b);
  }

  end(): void {
    this.stmts.endSession.run(Date.now(), this.sessionId);
  }
}
