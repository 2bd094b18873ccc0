/** Display of UTC epoch milliseconds: ISO-8601 UTC by default, or in a time zone (`--tz`). */
export function formatTime(ms: number, tz?: string): string {
  if (!tz || tz === 'UTC') return new Date(ms).toISOString().replace('.000Z', 'Z');
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone: tz,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false,
    timeZoneName: 'shortOffset',
  }).formatToParts(new Date(ms));
  const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour === '24' ? '00' : p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}

export function checkTz(tz: string): string {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return tz;
  } catch {
    throw new Error(`--tz ${JSON.stringify(tz)} is not a time zone (e.g. UTC, Europe/Berlin)`);
  }
}
