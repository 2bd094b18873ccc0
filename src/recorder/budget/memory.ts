/**
 * What the recorder may use in memory at most, from its options: the capture engine's part
 * (rings, counting tables, batches waiting for this thread: native/core/src/budget.rs) and this
 * process's own (the write queue, a batch's scratch while it is written, the address and name
 * dictionary caches, the rollups' running sums, SQLite's page cache and one sorter, and the runtime).
 * Each part is the bound of a structure named in docs/recording.md ("Memory"); the start line
 * and `record --help` show the sum from this one function.
 */
import * as engine from '../../native';
import { DICT_CACHE_BYTES, NAME_CACHE_BYTES } from '../write/writer';
import { SUMS_BYTES } from '../typed-arrays/sums-room';
import { SQLITE_CACHE_BYTES } from '../write/db';
import { queueBounds, type RecordOptions } from '../record/options';

/**
 * Node, V8's heap of the recorder's own objects, the loaded modules and the addon, measured on an
 * idle recorder (about 75 MiB) with room to spare.
 */
export const RUNTIME_BYTES = 96 * 2 ** 20;
/** Bytes of scratch per row and per address while one batch is written (ids, row orders, radix keys). */
const SCRATCH_PER_ROW = 48;
const SCRATCH_PER_ADDR = 8;

export interface MemoryBudget {
  total: number;
  /** The parts, in the order they are shown. */
  parts: { name: string; bytes: number }[];
}

export type BudgetOptions = Pick<RecordOptions, 'workers' | 'blockSize' | 'blockCount' | 'frameSize' | 'intervalSecs' | 'maxKeys' | 'maxNames' | 'flows' | 'queueMax' | 'queueMaxMib' | 'countIn'>;

export function memoryBudget(o: BudgetOptions, live: boolean): MemoryBudget {
  const q = queueBounds(o as RecordOptions);
  const e = engine.engineMemory(
    {
      iface: '',
      workers: o.workers,
      blockSize: o.blockSize,
      blockCount: o.blockCount,
      frameSize: o.frameSize,
      count: { intervalMs: o.intervalSecs * 1000, maxKeys: o.maxKeys, maxNames: o.maxNames, flows: o.flows, countIn: o.countIn },
      handoverMaxBatches: q.queueMax,
      handoverMaxBytes: q.queueMaxBytes,
    },
    live,
  );
  // The write queue keeps its newest batch whatever its size, and the batch being written is in it.
  const queue = q.queueMaxBytes + e.batchBytes;
  const rows = o.maxKeys + 1;
  const scratch = rows * SCRATCH_PER_ROW * (o.flows ? 2 : 1) + e.batchAddrs * SCRATCH_PER_ADDR;
  const parts = [
    ...(live ? [{ name: 'rings', bytes: e.rings }] : []),
    { name: 'tables', bytes: e.tables },
    { name: 'queues', bytes: e.batches + queue + scratch },
    // The name cache fills only when the engine reads names (--max-names above 0).
    { name: 'dictionary', bytes: DICT_CACHE_BYTES + (o.maxNames === 0 ? 0 : NAME_CACHE_BYTES) },
    { name: 'rollup sums', bytes: SUMS_BYTES },
    { name: 'sqlite', bytes: 2 * SQLITE_CACHE_BYTES },
    { name: 'runtime', bytes: RUNTIME_BYTES },
  ];
  return { total: parts.reduce((s, p) => s + p.bytes, 0), parts };
}

const mib = (n: number) => `${Math.ceil(n / 2 ** 20)} MiB`;

/** "memory at most 463 MiB (rings 64 MiB, tables 160 MiB, ...)". */
export function describeBudget(b: MemoryBudget): string {
  return `memory at most ${mib(b.total)} (${b.parts.map((p) => `${p.name} ${mib(p.bytes)}`).join(', ')})`;
}

/**
 * "kernel maps 24 MiB (memlock)": what live --count-in kernel's maps take in the kernel, beside
 * the process's memory (native/core/src/kcount.rs map_memory; `measured` is what the kernel
 * charged, from the maps' fdinfo, once they are loaded).
 */
export function describeKernelMaps(o: Pick<BudgetOptions, 'maxKeys' | 'flows'>, measured?: number): string {
  return `kernel maps ${mib(measured ?? engine.kernelMapMemory(o.maxKeys, o.flows))} (memlock, shared by every CPU)`;
}
