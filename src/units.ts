/** Human units for terminal output (json/csv keep exact integers). */

const IEC = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
const SI = ['', 'k', 'M', 'G', 'T', 'P', 'E'];

export function bytes(n: number | bigint): string {
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < IEC.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${IEC[i]}`;
}

/** 1234567 -> "1.23 M" (SI), for packet counts and rates. */
export function si(n: number | bigint, unit = ''): string {
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1000 && i < SI.length - 1) {
    v /= 1000;
    i++;
  }
  const num = i === 0 ? String(Math.round(v * 100) / 100) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0);
  return `${num} ${SI[i]}${unit}`.trimEnd();
}

export function bitRate(bytesCount: number | bigint, seconds: number): string {
  return si((Number(bytesCount) * 8) / Math.max(seconds, 1e-9), 'bit/s');
}

export function grouped(n: number | bigint): string {
  return n.toLocaleString('en-US');
}

/** 1 -> "1 interval", 7 -> "7 intervals". */
export function plural(n: number | bigint, one: string, many = `${one}s`): string {
  return `${grouped(n)} ${n === 1 || n === 1n ? one : many}`;
}

export function isoUtc(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

/** The IEC unit whose numbers read best for values up to `max`: its power of 1024 and name. */
export function unitFor(max: number): { div: number; name: string } {
  let i = 0;
  while (i < IEC.length - 1 && max >= 1024 ** (i + 1)) i++;
  return { div: 1024 ** i, name: IEC[i] };
}

/** "12.3 KiB" with the unit chosen for the value itself. */
export function iec(v: number, suffix = ''): string {
  const u = unitFor(v);
  const x = v / u.div;
  const digits = u.div === 1 && Number.isInteger(x) ? 0 : x < 10 ? 2 : x < 100 ? 1 : 0;
  return `${x.toFixed(digits)} ${u.name}${suffix}`;
}
