/**
 * Time zones of tc-query. Storage is UTC epoch ms; `--tz` changes only how times are shown (ISO
 * 8601 with the zone's offset, `2026-03-29T03:00:00+02:00`) and, for `series`, where steps start
 * (the local calendar). A zone is `UTC`, an IANA name, `local` (the system zone, which honours
 * the TZ environment variable) or a fixed offset (`+02:00`, `-0530`, `+05`), kept as `+HH:MM`.
 */
import { TcError } from '../errors';
import { DAY_MS } from '../schema/levels';

const HOUR_MS = 3_600_000;

const FIXED = /^([+-])(\d{2}):?(\d{2})?$/;

function fixedOffsetMs(tz: string): number | undefined {
  const m = FIXED.exec(tz);
  if (!m) return undefined;
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * HOUR_MS + Number(m[3] ?? 0) * 60_000);
}

/** The system's zone: the TZ environment variable when set, else the host's /etc/localtime. */
export function localZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone ?? 'UTC';
}

/** Validates a `--tz` value and returns it normalised (`local` resolved, offsets as `+HH:MM`). */
export function checkTz(tz: string): string {
  const v = tz.trim();
  if (/^(utc|z|gmt)$/i.test(v)) return 'UTC';
  if (v.toLowerCase() === 'local') return localZone();
  const m = FIXED.exec(v);
  if (m) {
    const h = Number(m[2]);
    const min = Number(m[3] ?? 0);
    if (h > 14 || min > 59) throw new TcError(`--tz ${JSON.stringify(tz)} is not an offset between -14:00 and +14:00`, 'ERR_TC_USAGE');
    return `${m[1]}${m[2]}:${String(min).padStart(2, '0')}`;
  }
  try {
    new Intl.DateTimeFormat('en', { timeZone: v });
    return v;
  } catch {
    throw new TcError(`--tz ${JSON.stringify(tz)} is not a time zone (UTC, local, an IANA name such as Europe/Berlin, or an offset such as +02:00)`, 'ERR_TC_USAGE');
  }
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The zone's offset from UTC at instant `t` (ms; positive east of Greenwich). */
export function offsetMs(t: number, tz: string | undefined): number {
  if (!tz || tz === 'UTC') return 0;
  const fixed = fixedOffsetMs(tz);
  if (fixed !== undefined) return fixed;
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    formatters.set(tz, f);
  }
  const p = Object.fromEntries(f.formatToParts(new Date(t)).map((x) => [x.type, x.value]));
  const wall = Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute), Number(p.second));
  return wall - (t - (((t % 1000) + 1000) % 1000));
}

function offsetText(off: number): string {
  const a = Math.abs(off) / 60_000;
  return `${off < 0 ? '-' : '+'}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(Math.round(a % 60)).padStart(2, '0')}`;
}

/** Display of UTC epoch milliseconds: ISO-8601 UTC (`Z`), or with the zone's offset (`--tz`). */
export function formatTime(ms: number, tz?: string): string {
  if (!tz || tz === 'UTC') return new Date(ms).toISOString().replace('.000Z', 'Z');
  const off = offsetMs(ms, tz);
  return `${new Date(ms + off).toISOString().replace(/(\.000)?Z$/, '')}${offsetText(off)}`;
}

/**
 * Start of the local day that contains `t`: local midnight, or where a midnight falls in a
 * daylight-saving gap, the instant the clocks jump. Assumes one offset change at most within
 * 14 h of a midnight (true of every zone's rules).
 */
export function localDayStart(t: number, tz: string): number {
  const wallMidnight = Math.floor((t + offsetMs(t, tz)) / DAY_MS) * DAY_MS;
  const before = wallMidnight - offsetMs(wallMidnight - 14 * HOUR_MS, tz);
  const after = wallMidnight - offsetMs(wallMidnight + 14 * HOUR_MS, tz);
  const valid = [before, after].filter((c) => c + offsetMs(c, tz) === wallMidnight);
  return valid.length ? Math.min(...valid) : before;
}

/** Start of the local day after the one that starts at `dayStart` (days last 23 to 25 hours). */
export function nextLocalDay(dayStart: number, tz: string): number {
  return localDayStart(dayStart + 36 * HOUR_MS, tz);
}

/**
 * Step starts of a series in a zone's calendar, covering [from, to): steps of whole days start
 * at local midnights (a day of a daylight-saving change lasts 23 or 25 hours); shorter steps
 * start at local midnight and every step after it, the day's last step ending at the next
 * midnight. Returns the starts and the end of the last step.
 */
export function localSteps(fromMs: number, toMs: number, stepMs: number, tz: string): number[] {
  const out: number[] = [];
  let day = localDayStart(fromMs, tz);
  if (stepMs % DAY_MS === 0) {
    const n = stepMs / DAY_MS;
    // Steps of several days start on local days whose number since 1970-01-01 divides by n.
    for (let k = Math.round((day + offsetMs(day, tz)) / DAY_MS) % n; k > 0; k--) day = localDayStart(day - 12 * HOUR_MS, tz);
    out.push(day);
    while (day < toMs) {
      for (let i = 0; i < n; i++) day = nextLocalDay(day, tz);
      out.push(day);
    }
    return dropBefore(out, fromMs);
  }
  if (stepMs > DAY_MS) {
    for (let s = day; ; s += stepMs) {
      out.push(s);
      if (s >= toMs) return dropBefore(out, fromMs);
    }
  }
  for (;;) {
    const next = nextLocalDay(day, tz);
    for (let s = day; s < next; s += stepMs) {
      if (s >= toMs) {
        out.push(s);
        return dropBefore(out, fromMs);
      }
      out.push(s);
    }
    day = next;
  }
}

/** Drops the starts of steps that end at or before `fromMs` (keeps the step containing it). */
function dropBefore(bounds: number[], fromMs: number): number[] {
  let i = 0;
  while (i + 1 < bounds.length && bounds[i + 1] <= fromMs) i++;
  return bounds.slice(i);
}
