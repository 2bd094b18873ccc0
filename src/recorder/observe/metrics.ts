/** The recorder's own health in the Prometheus text exposition format (`--metrics-listen`). */
import * as http from 'node:http';
import { statSync } from 'node:fs';
import type { Batch, CounterName, KernelBatchStats } from '../../native';
import { TcError } from '../../errors';

/**
 * The frames of a batch that are not counted, split as the interval line, `tc-query status`
 * and /metrics all name them: "non-IP" (in the eBPF filter or in userspace) and "filtered by
 * CIDR rules" (--ignore-file, --accept-source-file; in the filter or in userspace).
 */
export function notCounted(c: Record<CounterName, bigint>): { nonIp: bigint; cidrFiltered: bigint } {
  return { nonIp: c.nonIp + c.filterNonIp, cidrFiltered: c.filterIgnored + c.filterNotAccepted + c.ignored };
}

export class Metrics {
  packets = 0;
  bytes = 0;
  kernelPackets = 0;
  kernelDrops = 0;
  filterDrops = 0;
  nonIpFrames = 0;
  cidrFiltered = 0;
  lateFrames = 0;
  batchesWritten = 0;
  batchesSkipped = 0;
  lostIntervals = 0;
  writeErrors = 0;
  queueDepth = 0;
  queueBytes = 0;
  lastWriteSeconds = 0;
  writeSecondsSum = 0;
  writeTransactions = 0;
  ipKeys = 0;
  flowKeys = 0;
  /** The disk budget (0: none), the pages in use, and what it shed and folded. */
  budgetBytes = 0;
  usedBytes = 0;
  budgetFoldedIntervals = 0;
  budgetFoldedIpKeys = 0;
  budgetFoldedFlowKeys = 0;
  budgetFullWrites = 0;
  budgetFoldedNames = 0;
  /** Names the engine recorded (distinct address, name and source per interval), and those past --max-names. */
  namesRecorded = 0;
  namesOverflowed = 0;
  /** Live --count-in kernel: the last interval's switch and map fill (undefined in ring mode). */
  kernel: KernelBatchStats | undefined;
  /** Whether the kernel's flow map counts (--flows); without it only the address map is shown. */
  kernelFlows = false;
  kernelReturned = 0;
  private readonly shedBytes = new Map<string, number>();
  private readonly shedRows = new Map<string, number>();
  private readonly shedSteps = new Map<string, number>();
  private readonly started = Date.now();

  constructor(private readonly dbFile: string) {}

  /** Counts a batch from the engine (the one place packets and bytes are counted, drawn or not). */
  observe(b: Batch): void {
    const c = b.counters;
    this.packets += Number(c.ipPackets);
    this.bytes += Number(c.ipBytes);
    this.kernelPackets += Number(c.ringPackets);
    this.kernelDrops += Number(c.ringDrops);
    const nc = notCounted(c);
    this.filterDrops += Number(nc.nonIp + nc.cidrFiltered);
    this.nonIpFrames += Number(nc.nonIp);
    this.cidrFiltered += Number(nc.cidrFiltered);
    this.lateFrames += Number(c.late);
    this.ipKeys = b.ip.count;
    this.flowKeys = b.flow.count;
    this.namesRecorded += Number(c.namesRecorded);
    this.namesOverflowed += Number(c.namesOverflowed);
    if (b.kernel) {
      this.kernel = b.kernel;
      this.kernelReturned += b.kernel.returned;
    }
  }

  /** A budget shedding step removed `rows` of `level`, freeing `bytesFreed`. */
  shed(level: string, bytesFreed: number, rows: number): void {
    this.shedBytes.set(level, (this.shedBytes.get(level) ?? 0) + bytesFreed);
    this.shedRows.set(level, (this.shedRows.get(level) ?? 0) + rows);
    this.shedSteps.set(level, (this.shedSteps.get(level) ?? 0) + 1);
  }

  private dbSize(): number {
    let n = 0;
    for (const ext of ['', '-wal']) {
      try {
        n += statSync(this.dbFile + ext).size;
      } catch {
        /* not there */
      }
    }
    return n;
  }

  render(): string {
    const m: [string, string, string, number][] = [
      ['tc_packets_total', 'counter', 'IP packets counted', this.packets],
      ['tc_bytes_total', 'counter', 'IP bytes counted (IP length field)', this.bytes],
      ['tc_kernel_packets_total', 'counter', 'packets the kernel ring received (PACKET_STATISTICS)', this.kernelPackets],
      ['tc_kernel_drops_total', 'counter', 'packets the kernel dropped because a ring was full', this.kernelDrops],
      ['tc_filter_drops_total', 'counter', 'frames not counted, as non-IP or by the CIDR rules, wherever dropped (socket filter, counting program, userspace): tc_non_ip_frames_total plus tc_cidr_filtered_frames_total, alike in every --count-in mode', this.filterDrops],
      ['tc_non_ip_frames_total', 'counter', 'non-IP frames (not counted)', this.nonIpFrames],
      ['tc_cidr_filtered_frames_total', 'counter', 'frames filtered by CIDR rules (--ignore-file, --accept-source-file; not counted)', this.cidrFiltered],
      ['tc_late_frames_total', 'counter', 'frames counted in a later interval than their timestamp (replay: beyond the reorder window; live: handed over late)', this.lateFrames],
      ['tc_batches_written_total', 'counter', 'interval batches appended to the database', this.batchesWritten],
      ['tc_batches_skipped_total', 'counter', 'batches already in the log (idempotent re-appends)', this.batchesSkipped],
      ['tc_lost_intervals_total', 'counter', 'intervals dropped because the write queue (or the engine\'s hand-over queue) was full', this.lostIntervals],
      ['tc_write_errors_total', 'counter', 'failed database writes (retried)', this.writeErrors],
      ['tc_write_queue_depth', 'gauge', 'batches waiting to be written', this.queueDepth],
      ['tc_write_queue_bytes', 'gauge', 'bytes of batch data waiting to be written', this.queueBytes],
      ['tc_write_latency_seconds', 'gauge', 'duration of the last write transaction', this.lastWriteSeconds],
      ['tc_write_seconds_total', 'counter', 'time spent in write transactions', this.writeSecondsSum],
      ['tc_write_transactions_total', 'counter', 'write transactions committed (queued batches are grouped, one or more per transaction)', this.writeTransactions],
      ['tc_ip_keys', 'gauge', 'addresses in the last interval', this.ipKeys],
      ['tc_flow_keys', 'gauge', 'flows in the last interval', this.flowKeys],
      ['tc_database_bytes', 'gauge', 'size of the database file and its WAL', this.dbSize()],
      ['tc_uptime_seconds', 'gauge', 'seconds since the recorder started', (Date.now() - this.started) / 1000],
    ];
    m.push(
      ['tc_database_budget_bytes', 'gauge', 'the disk budget of the database file (--max-db-size; 0 = none)', this.budgetBytes],
      ['tc_database_used_bytes', 'gauge', 'bytes of the database file\'s pages in use (page_count - freelist_count) at the last write', this.usedBytes],
      ['tc_budget_folded_intervals_total', 'counter', 'intervals the disk budget stored as their heaviest keys (the rest folded into the overflow row)', this.budgetFoldedIntervals],
      ['tc_budget_folded_ip_keys_total', 'counter', 'addresses the disk budget folded into the overflow row', this.budgetFoldedIpKeys],
      ['tc_budget_folded_flow_keys_total', 'counter', 'flows the disk budget folded into the overflow row', this.budgetFoldedFlowKeys],
      ['tc_budget_full_writes_total', 'counter', 'write groups that reached the budget\'s hard stop (SQLITE_FULL), rolled back and retried', this.budgetFullWrites],
      ['tc_budget_folded_names_total', 'counter', 'names of an interval the disk budget did not store (past the interval\'s share of it)', this.budgetFoldedNames],
      ['tc_names_recorded_total', 'counter', 'names read from the traffic (DNS answers, TLS server names): distinct (address, name, source) per interval', this.namesRecorded],
      ['tc_names_overflowed_total', 'counter', 'new (address, name, source) pairs of an interval past --max-names (estimated; not recorded)', this.namesOverflowed],
    );
    const k = this.kernel;
    if (k) {
      m.push(
        ['tc_kernel_switch_late_seconds', 'gauge', 'how long after the last interval boundary the switch to the other kernel maps completed', k.switchLateUs / 1e6],
        ['tc_kernel_drain_seconds', 'gauge', 'reading and clearing the old kernel maps after the last switch', k.drainUs / 1e6],
        ['tc_kernel_returned_frames_total', 'counter', 'frames the counting program handed to userspace to be counted there', this.kernelReturned],
      );
    }
    const out = m.map(([name, type, help, v]) => `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${v}\n`);
    if (k) {
      // Each map's fill at the end of the last interval (a map only grows while it counts).
      const maps: [string, number][] = [['ips', k.ipEntries], ...(this.kernelFlows ? [['flows', k.flowEntries] as [string, number]] : [])];
      out.push(`# HELP tc_kernel_map_entries entries of the kernel counting maps at the end of the last interval\n# TYPE tc_kernel_map_entries gauge\n${maps.map(([n, v]) => `tc_kernel_map_entries{map="${n}"} ${v}\n`).join('')}`);
      out.push(`# HELP tc_kernel_map_capacity entries the kernel counting maps hold (--max-keys)\n# TYPE tc_kernel_map_capacity gauge\n${maps.map(([n]) => `tc_kernel_map_capacity{map="${n}"} ${k.capacity}\n`).join('')}`);
      out.push(`# HELP tc_kernel_map_fill_ratio entries / capacity of the kernel counting maps at the end of the last interval\n# TYPE tc_kernel_map_fill_ratio gauge\n${maps.map(([n, v]) => `tc_kernel_map_fill_ratio{map="${n}"} ${v / k.capacity}\n`).join('')}`);
    }
    for (const [name, help, map] of [
      ['tc_budget_shed_steps_total', 'disk budget shedding steps, by level', this.shedSteps],
      ['tc_budget_shed_rows_total', 'rows the disk budget shed, by level', this.shedRows],
      ['tc_budget_shed_bytes_total', 'bytes of pages the disk budget freed by shedding, by level', this.shedBytes],
    ] as const) {
      out.push(`# HELP ${name} ${help}\n# TYPE ${name} counter\n${[...map].map(([l, v]) => `${name}{level="${l}"} ${v}\n`).join('')}`);
    }
    return out.join('');
  }

  /** Serves /metrics on ADDR:PORT ("[::1]:9464", "127.0.0.1:9464", ":9464"). */
  listen(addr: string): Promise<http.Server> {
    const m = addr.match(/^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/);
    if (!m) throw new TcError(`--metrics-listen ${JSON.stringify(addr)} is not ADDR:PORT (e.g. 127.0.0.1:9464)`, 'ERR_TC_BAD_OPTION');
    const host = m[1] ?? (m[2] || '0.0.0.0');
    const port = Number(m[3]);
    const server = http.createServer((req, res) => {
      if (req.url === '/metrics' || req.url === '/') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(this.render());
      } else {
        res.writeHead(404).end();
      }
    });
    return new Promise((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const why =
          err.code === 'EADDRINUSE'
            ? 'the port is in use by another process (see `ss -ltnp`); choose another port or stop that process'
            : err.code === 'EACCES'
              ? 'not allowed to bind it (ports below 1024 need root or CAP_NET_BIND_SERVICE); choose a port of 1024 or above'
              : err.code === 'EADDRNOTAVAIL'
                ? 'the address is not one of this host\'s (see `ip -br addr`); use one of them, 127.0.0.1 or :PORT for all'
                : 'choose another ADDR:PORT';
        reject(new TcError(`--metrics-listen ${addr}: cannot listen (${err.code ?? err.message}): ${why}`, 'ERR_TC_METRICS_LISTEN'));
      });
      server.listen(port, host, () => resolve(server));
    });
  }
}
