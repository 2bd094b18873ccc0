/**
 * The capture engine's per-interval counters: the one TS list, in the order of the addon's
 * counter buffer (`COUNTERS` in native/src/lib.rs; native.ts refuses an addon that reports
 * another order, and test/schema.test.ts compares them). The `batches` table has one column per
 * counter (the name in snake case), and the writer's INSERT is generated from this list.
 */

export const COUNTER_NAMES = [
  'frames', 'ipPackets', 'ipBytes', 'ipv4Packets', 'ipv4Bytes', 'ipv6Packets', 'ipv6Bytes', 'nonIp',
  'ipHeaderIncomplete', 'fragmentsFirst', 'fragmentsNonFirst', 'ipLengthFieldZero', 'ignored', 'late',
  'ringPackets', 'ringDrops', 'ringFreezeQCnt', 'filterPassed', 'filterNonIp', 'filterIgnored',
  'filterNotAccepted', 'ipOverflowKeys', 'flowOverflowKeys',
  // Names seen in the traffic (native/core/src/names): pairs in the batch, new pairs past
  // --max-names, DNS messages / ClientHellos skipped as malformed, split ClientHellos given up.
  'namesRecorded', 'namesOverflowed', 'namesMalformed', 'namesIncomplete',
] as const;

export type CounterName = (typeof COUNTER_NAMES)[number];

/** The batch's flags (NativeBatch fields, not counters): whether the kernel ring / eBPF filter counters are present. */
export type CounterFlag = 'hasRing' | 'hasFilter';

type Snake<S extends string> = S extends `${infer H}${infer T}` ? `${H extends Lowercase<H> ? H : `_${Lowercase<H>}`}${Snake<T>}` : S;
/** A counter's column in `batches`. */
export type CounterColumn = Snake<CounterName>;

export interface BatchCounter {
  name: CounterName;
  column: CounterColumn;
  /** Ring and filter counters are NULL in a batch without a ring (replays) / filter (--no-ebpf). */
  presentIf?: CounterFlag;
}

const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The counters stored in `batches`, in column order. */
export const BATCH_COUNTERS: readonly BatchCounter[] = COUNTER_NAMES.map((n) => ({
  name: n,
  column: snake(n) as CounterColumn,
  presentIf: n.startsWith('ring') ? 'hasRing' : n.startsWith('filter') ? 'hasFilter' : undefined,
}));

/**
 * The writer's own per-interval counters (not the engine's): keys of the interval the disk
 * budget folded into the overflow row (src/recorder/budget/fold.ts), one `batches` column each.
 */
export const BUDGET_COUNTERS = [
  { name: 'budgetFoldedIpKeys', column: 'budget_folded_ip_keys' },
  { name: 'budgetFoldedFlowKeys', column: 'budget_folded_flow_keys' },
] as const;
export type BudgetCounterColumn = (typeof BUDGET_COUNTERS)[number]['column'];
