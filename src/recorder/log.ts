/** The recorder's log on stderr: human lines, or one JSON object per line (`--log-format json`). */
export type LogFormat = 'text' | 'json';

export class Logger {
  constructor(private readonly format: LogFormat = 'text') {}

  private emit(level: string, msg: string, fields: Record<string, unknown>): void {
    if (this.format === 'json') {
      const rec = { ts: new Date().toISOString(), level, msg, ...fields };
      process.stderr.write(`${JSON.stringify(rec, (_k, v) => (typeof v === 'bigint' ? (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()) : v))}\n`);
    } else {
      process.stderr.write(level === 'interval' ? `${msg}\n` : `traffic-counter: ${level === 'info' ? '' : `${level}: `}${msg}\n`);
    }
  }

  info(msg: string, fields: Record<string, unknown> = {}): void {
    this.emit('info', msg, fields);
  }
  warn(msg: string, fields: Record<string, unknown> = {}): void {
    this.emit('warning', msg, fields);
  }
  error(msg: string, fields: Record<string, unknown> = {}): void {
    this.emit('error', msg, fields);
  }
  /** The per-interval line. */
  interval(line: string, fields: Record<string, unknown>): void {
    this.emit('interval', line, fields);
  }
}
