/** The line a recorder prints per interval (text or JSON, through the logger). */
import type * as engine from '../../native';
import type { Logger } from '../observe/log';
import { notCounted } from '../observe/metrics';
import { bytes, grouped, isoUtc, si } from '../../units';

export class IntervalPrinter {
  private prevIps = 0;
  private prevFlows = 0;
  constructor(private readonly log: Logger, private readonly quiet: boolean) {}
  observe(b: engine.Batch): void {
    const c = b.counters;
    if (this.quiet) return;
    const nc = notCounted(c);
    const drops = b.hasRing ? grouped(c.ringDrops) : '-';
    const filterDrops = b.hasFilter ? c.filterNonIp + c.filterIgnored + c.filterNotAccepted + c.ignored : c.ignored;
    const ipKeys = b.ip.count;
    const flowKeys = b.flow.count;
    const k = b.kernel;
    const d = (n: number, p: number) => `${n - p >= 0 ? '+' : ''}${n - p}`;
    this.log.interval(
      `${isoUtc(b.startMs)}  ${bytes(c.ipBytes).padStart(10)}  ${si(c.ipPackets, 'pkt').padStart(9)}  ` +
        `kernel drops ${drops}  non-IP ${grouped(nc.nonIp)}  filtered by CIDR rules ${grouped(nc.cidrFiltered)}  ips ${grouped(ipKeys)} (${d(ipKeys, this.prevIps)})  ` +
        `flows ${grouped(flowKeys)} (${d(flowKeys, this.prevFlows)})` +
        (c.ipOverflowKeys + c.flowOverflowKeys > 0n ? `  overflowed keys ${c.ipOverflowKeys}/${c.flowOverflowKeys}` : '') +
        // Kernel counting: when the switch to the other maps completed after the boundary, and their fill.
        (k ? `  kernel switch +${(k.switchLateUs / 1000).toFixed(1)} ms, maps ${grouped(k.ipEntries)}${k.flowEntries ? `/${grouped(k.flowEntries)}` : ''} of ${grouped(k.capacity)}` : ''),
      {
        start: new Date(b.startMs).toISOString(),
        end: new Date(b.endMs).toISOString(),
        bytes: c.ipBytes,
        packets: c.ipPackets,
        kernel_drops: b.hasRing ? c.ringDrops : null,
        filter_drops: filterDrops,
        non_ip: nc.nonIp,
        cidr_filtered: nc.cidrFiltered,
        ip_keys: ipKeys,
        ip_keys_growth: ipKeys - this.prevIps,
        flow_keys: flowKeys,
        flow_keys_growth: flowKeys - this.prevFlows,
        ip_overflow_keys: c.ipOverflowKeys,
        flow_overflow_keys: c.flowOverflowKeys,
        ...(k
          ? { kernel_switch_late_us: k.switchLateUs, kernel_drain_us: k.drainUs, kernel_returned: k.returned, kernel_ip_entries: k.ipEntries, kernel_flow_entries: k.flowEntries, kernel_map_capacity: k.capacity }
          : {}),
      },
    );
    this.prevIps = ipKeys;
    this.prevFlows = flowKeys;
  }
}
