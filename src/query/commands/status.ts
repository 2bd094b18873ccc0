/** `tc-query status`: what the file covers and how complete it is. */
import { openReadOnly } from '../db';
import type { Window } from '../window';
import { counted, toJson, type Answer, type Format } from '../output';
import { resolveWindow } from '../plan';
import { bounds, coarserText, completenessOf, coverage, EVENT_TIME, GAPS_SQL, type Coverage } from '../coverage';
import { formatTime } from '../time';
import { bytes, grouped } from '../../units';
import { networksBySession, networksOf, type LocalNetworkRow } from '../local';

interface ShedDetail {
  level: string;
  rows: number;
  parts: number;
  bytes_freed: number;
  addresses_removed: number;
  text: string;
}

function shedOf(detail: string): ShedDetail | undefined {
  try {
    return JSON.parse(detail) as ShedDetail;
  } catch {
    return undefined;
  }
}

/** What the disk budget shed in the window, per level: events, rows, bytes, and the span. */
function shedTotals(db: import('better-sqlite3').Database, from: number, to: number) {
  const per = new Map<string, { level: string; events: number; rows: number; bytes_freed: number; from: number; to: number }>();
  for (const e of db.prepare(`select start_ms, end_ms, detail from events where kind = 'budget-shed' and ${EVENT_TIME} >= ? and ${EVENT_TIME} < ? order by id`).all(from, to) as { start_ms: number; end_ms: number; detail: string }[]) {
    const d = shedOf(e.detail);
    if (!d) continue;
    const l = per.get(d.level) ?? { level: d.level, events: 0, rows: 0, bytes_freed: 0, from: e.start_ms, to: e.end_ms };
    l.events++;
    l.rows += d.rows;
    l.bytes_freed += d.bytes_freed;
    l.from = Math.min(l.from, e.start_ms);
    l.to = Math.max(l.to, e.end_ms);
    per.set(d.level, l);
  }
  return [...per.values()];
}

/**
 * "covers A to B, N intervals": with time whose interval records are gone, from the first time
 * any level holds, naming the levels that hold the older time (as the completeness line does).
 */
function coversLine(c: Coverage, t: (ms: number | null) => string | null, tz?: string): string {
  if (c.coarser.length === 0) return `covers          ${t(c.first) ?? '-'} to ${t(c.last) ?? '-'}, ${counted(c.intervals, 'interval')}`;
  const older = `${c.intervals ? 'older time ' : ''}only as totals: ${coarserText(c.coarser, tz)} (interval records removed by retention or the disk budget)`;
  const end = c.last ?? c.coarser[c.coarser.length - 1].to;
  return `covers          ${t(c.coarser[0].from)} to ${t(end)}, ${counted(c.intervals, 'interval')}${c.intervals ? ` from ${t(c.first)}` : ''}; ${older}`;
}

/**
 * A session's networks for the table: those local for the whole session on one line (a replay's;
 * a live session's from its start to its end), each that came or went while it ran with its
 * times.
 */
function localLines(nets: LocalNetworkRow[], t: (ms: number | null) => string | null): string {
  const pad = '\n                    ';
  if (nets.length === 0) return `${pad}no local networks`;
  const text = (n: LocalNetworkRow) => (n.address === null ? n.network : `${n.network} (${n.address})`);
  const origin = nets[0].origin === 'interface' ? `of ${nets[0].source}` : `from ${nets[0].source}`;
  const first = Math.min(...nets.map((n) => n.from_ms));
  const last = Math.max(...nets.map((n) => n.to_ms));
  const whole = nets.filter((n) => n.from_ms === first && (!n.closed || n.to_ms === last));
  const changed = nets.filter((n) => !whole.includes(n));
  return `${pad}local networks ${origin}: ${whole.length > 0 ? whole.map(text).join(', ') : '(none at the start)'}${changed.map((n) => `${pad}  ${text(n)} from ${t(n.from_ms)}${n.closed ? ` to ${t(n.to_ms)}` : ''}`).join('')}`;
}

/**
 * What the ring counters mean for a session counted in the kernel: the ring receives only what
 * the counting program hands back and the names socket's frames, so its packets are few and 0
 * drops is the norm.
 */
const KERNEL_RING_NOTE =
  'counted in the kernel (live --count-in kernel): these are the frames the counting program handed to userspace (those it cannot count exactly) and the DNS answers and ClientHellos passed for names, not the traffic; 0 drops expected, and a drop there loses names or those few frames, never the kernel\'s counts';

function countedIn(kind: string, options: string): string {
  try {
    const o = JSON.parse(options) as { countedIn?: string; countIn?: string };
    if (o.countedIn) return o.countedIn;
    // A replay counts in the kernel only when told to (and live sessions before kernel counting: the ring).
    return kind === 'replay' && o.countIn === 'kernel' ? 'kernel' : 'ring';
  } catch {
    return 'ring';
  }
}

export async function status(o: { db: string; window: Window; format: Format; tz?: string }): Promise<Answer> {
  const db = openReadOnly(o.db);
  try {
    const w = resolveWindow(db, o.window);
    const c = coverage(db, w);
    const [from, to] = bounds(w);
    const done = (out: string): Answer => ({ out, notes: [], completeness: completenessOf(c, w) });
    const t = (ms: number | null) => (ms === null ? null : formatTime(ms, o.format === 'table' ? o.tz : undefined));
    const gaps = (
      db
        .prepare(
          `${GAPS_SQL} order by prev_end limit 1000`,
        )
        .all(from, to) as { source: string; prev_end: number; start_ms: number }[]
    ).map((g) => ({ source: g.source, from: t(g.prev_end), to: t(g.start_ms), seconds: (g.start_ms - g.prev_end) / 1000 }));
    const nets = networksBySession(db);
    const sessions = (
      db.prepare('select id, node_id, kind, source, interval_ms, flows, started_at, ended_at, options from sessions order by id').all() as {
        id: number; node_id: string; kind: string; source: string; interval_ms: number; flows: number; started_at: number; ended_at: number | null; options: string;
      }[]
    ).map(({ options, ...s }) => ({
      ...s,
      // Where the session counted: "kernel" or "ring" (what the engine settled --count-in to).
      counted_in: countedIn(s.kind, options),
      started_at: t(s.started_at),
      ended_at: t(s.ended_at),
      flows: s.flows === 1,
      // This host's networks while the session ran, and when each was local (to: null while it still is).
      local_networks: (nets.get(s.id) ?? []).map((n) => ({ network: n.network, address: n.address, origin: n.origin, source: n.source, from: t(n.from_ms), to: n.closed ? t(n.to_ms) : null })),
    }));
    const meta = Object.fromEntries((db.prepare('select key, value from meta').all() as { key: string; value: string }[]).map((r) => [r.key, r.value]));
    const events = (db.prepare(`select at_ms, kind, start_ms, end_ms, detail from events where kind not in ('start', 'stop') and ${EVENT_TIME} >= ? and ${EVENT_TIME} < ? order by at_ms limit 1000`).all(from, to) as Record<string, number | string | null>[]).map((e) => {
      // A budget-shed event's detail is a JSON object: its text, and the figures as fields.
      const shed = e.kind === 'budget-shed' ? shedOf(e.detail as string) : undefined;
      return {
        at: t(e.at_ms as number),
        kind: e.kind,
        start: t(e.start_ms as number | null),
        end: t(e.end_ms as number | null),
        detail: shed ? shed.text : e.detail,
        ...(shed ? { shed: { level: shed.level, rows: shed.rows, parts: shed.parts, bytes_freed: shed.bytes_freed, addresses_removed: shed.addresses_removed } } : {}),
      };
    });
    const budgetShed = shedTotals(db, from, to);
    const maxDb = meta.max_db_size === undefined ? null : Number(meta.max_db_size);
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const usedBytes = ((db.pragma('page_count', { simple: true }) as number) - (db.pragma('freelist_count', { simple: true }) as number)) * pageSize;
    // Not counted, in the words of the recorder's interval line and /metrics (recorder/observe/metrics.ts notCounted).
    const nonIp = db.prepare('select coalesce(sum(non_ip + coalesce(filter_non_ip, 0)), 0) from batches where start_ms >= ? and start_ms < ?').pluck().get(w.fromMs, w.toMs) as number;
    const rollupsPending = db.prepare('select level, count(*) as n from rollup_dirty group by level').all();
    // The names the file holds (every session; names are not cut by the window), and what the
    // engine counted of them in the window's intervals.
    const held = db.prepare('select count(*) as pairs, count(distinct ip_id) as addresses, count(distinct name_id) as names, min(first_ms) as first, max(last_ms) as last from names').get() as {
      pairs: number; addresses: number; names: number; first: number | null; last: number | null;
    };
    const nc = db
      .prepare('select coalesce(sum(names_recorded), 0) as recorded, coalesce(sum(names_overflowed), 0) as overflowed, coalesce(sum(names_malformed), 0) as malformed, coalesce(sum(names_incomplete), 0) as incomplete from batches where start_ms >= ? and start_ms < ?')
      .get(w.fromMs, w.toMs) as { recorded: number; overflowed: number; malformed: number; incomplete: number };
    const namesLine = held.pairs > 0 || nc.recorded + nc.overflowed + nc.malformed + nc.incomplete > 0;
    const result = {
      file: o.db,
      node_id: meta.node_id ?? null,
      schema_version: Number(meta.schema_version ?? 0),
      window: { from: t(w.fromMs), to: t(w.toMs) },
      first: t(c.first),
      last: t(c.last),
      intervals: c.intervals,
      gaps: { count: c.gaps, seconds: c.gap_ms / 1000, list: gaps },
      lost_intervals: c.lost_intervals,
      unclean_shutdowns: c.unclean_shutdowns,
      kernel_packets: c.ring_packets,
      kernel_drops: c.ring_drops,
      kernel_drop_pct: Number(c.drop_pct.toFixed(4)),
      filter_drops: c.filter_drops,
      non_ip_frames: nonIp,
      ip_overflow_keys: c.ip_overflow_keys,
      flow_overflow_keys: c.flow_overflow_keys,
      late_frames: c.late,
      budget_folded_intervals: c.budget_folded_intervals,
      budget_folded_ip_keys: c.budget_folded_ip_keys,
      budget_folded_flow_keys: c.budget_folded_flow_keys,
      budget: { max_db_size: maxDb || null, used_bytes: usedBytes, shed: budgetShed.map((l) => ({ ...l, from: t(l.from), to: t(l.to) })) },
      rollups_pending: rollupsPending,
      sessions,
      events,
      // Time before the first interval record that only rollup totals hold (coverage.ts).
      coarser: c.coarser.map((p) => ({ level: p.level, from: t(p.from), to: t(p.to) })),
      names: { rows: held.pairs, names: held.names, addresses: held.addresses, first: t(held.first), last: t(held.last), ...nc },
    };
    if (o.format === 'json') return done(`${toJson(result)}\n`);
    if (o.format === 'csv') {
      const flat: [string, unknown][] = [
        ['first', result.first], ['last', result.last], ['intervals', result.intervals], ['gaps', c.gaps], ['gap_seconds', c.gap_ms / 1000],
        ['lost_intervals', c.lost_intervals], ['unclean_shutdowns', c.unclean_shutdowns], ['kernel_packets', c.ring_packets], ['kernel_drops', c.ring_drops],
        ['filter_drops', c.filter_drops], ['non_ip_frames', nonIp], ['ip_overflow_keys', c.ip_overflow_keys], ['flow_overflow_keys', c.flow_overflow_keys],
        ['late_frames', c.late], ['budget_folded_intervals', c.budget_folded_intervals], ['budget_folded_ip_keys', c.budget_folded_ip_keys],
        ['budget_folded_flow_keys', c.budget_folded_flow_keys], ['max_db_size', maxDb || ''], ['used_bytes', usedBytes],
        ['budget_shed_events', budgetShed.reduce((s, l) => s + l.events, 0)], ['budget_shed_bytes', budgetShed.reduce((s, l) => s + l.bytes_freed, 0)],
        ['coarser_from', c.coarser.length ? t(c.coarser[0].from) : ''],
        // The networks local at some time of the window, space-separated.
        ['local_networks', [...new Set(networksOf(db, from, to).map((n) => n.network))].join(' ')],
        ['names_rows', held.pairs], ['names_names', held.names], ['names_addresses', held.addresses],
        ['names_recorded', nc.recorded], ['names_overflowed', nc.overflowed], ['names_malformed', nc.malformed], ['names_incomplete', nc.incomplete],
      ];
      return done(`key,value\n${flat.map(([k, v]) => `${k},${v ?? ''}`).join('\n')}\n`);
    }
    const SHOWN = 5;
    const shown = sessions.slice(-SHOWN);
    const lines = [
      `file            ${o.db} (node ${result.node_id}, schema ${result.schema_version})`,
      coversLine(c, t, o.tz),
      `gaps            ${c.gaps}${c.gaps ? ` (${Math.round(c.gap_ms / 1000)} s)` : ''}${gaps.slice(0, 10).map((g) => `\n                  ${g.source}: ${g.from} to ${g.to} (${g.seconds} s)`).join('')}`,
      `lost intervals  ${c.lost_intervals}; unclean shutdowns ${c.unclean_shutdowns}`,
      // Replayed intervals have no kernel ring, so no kernel counters.
      c.ring_intervals > 0
        ? `kernel          ${counted(c.ring_packets, 'packet')}, ${grouped(c.ring_drops)} dropped (${c.drop_pct.toFixed(2)}%)${c.ring_intervals < c.intervals ? ` in the ${counted(c.ring_intervals, 'live interval')}` : ''}` +
          (sessions.some((s) => s.kind === 'live' && s.counted_in === 'kernel') ? `\n                  ${KERNEL_RING_NOTE}` : '')
        : `kernel          no kernel counters (replayed captures only)`,
      `not counted     ${counted(nonIp, 'non-IP frame')}, ${counted(c.filter_drops, 'frame')} filtered by CIDR rules`,
      `overflow        ~${counted(c.ip_overflow_keys, 'address key')}, ~${counted(c.flow_overflow_keys, 'flow key')}`,
      `late            ${counted(c.late, 'frame')} counted outside ${c.late === 1 ? 'its' : 'their'} own interval`,
      `budget          ${maxDb ? `${bytes(usedBytes)} used of ${bytes(maxDb)}` : 'none'}${c.budget_folded_intervals ? `; ${counted(c.budget_folded_intervals, 'interval')} kept as their heaviest keys (${counted(c.budget_folded_ip_keys, 'address', 'addresses')} and ${counted(c.budget_folded_flow_keys, 'flow')} folded)` : ''}${budgetShed.map((l) => `\n                  shed ${l.level}: ${counted(l.events, 'event')}, ${counted(l.rows, 'row')}, ${bytes(l.bytes_freed)} freed, ${t(l.from)} to ${t(l.to)}`).join('')}`,
      ...(namesLine
        ? [
            `names           ${held.pairs > 0 ? `${counted(held.names, 'name')} of ${counted(held.addresses, 'address', 'addresses')} seen ${t(held.first)} to ${t(held.last)} (\`tc-query names\`)` : 'none held'}` +
              `; in the window ${grouped(nc.recorded)} recorded, ${grouped(nc.overflowed)} past --max-names, ${counted(nc.malformed, 'message')} malformed, ${counted(nc.incomplete, 'split ClientHello')} given up`,
          ]
        : []),
      `sessions        ${sessions.length}${shown.length < sessions.length ? ` (showing the last ${shown.length} of ${sessions.length} sessions)` : ''}${shown.map((s) => `\n                  #${s.id} ${s.kind} ${s.source} ${s.started_at} to ${s.ended_at ?? '(running or killed)'}${localLines(nets.get(s.id) ?? [], t)}`).join('')}`,
      `database        ${bytes((db.pragma('page_count', { simple: true }) as number) * (db.pragma('page_size', { simple: true }) as number))}`,
    ];
    return done(`${lines.join('\n')}\n`);
  } finally {
    db.close();
  }
}
