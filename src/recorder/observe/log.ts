/** The recorder's log on stderr: human lines, or one JSON object per line (`--log-format json`). */
export type LogFormat = 'text' | 'json';

let outputClosed = false;

/**
 * A closed stdout or stderr (`2>&1 | head`, a log pipe that went away) ends the output quietly,
 * not the program: further log lines are dropped, and a recorder goes on recording (it stops on
 * SIGINT/SIGTERM as always, which a shell sends the whole pipeline on Ctrl-C). Without this,
 * the first write after the reader left threw EPIPE and killed the recorder mid-write.
 */
export function quietOnClosedOutput(): void {
  for (const s of [process.stdout, process.stderr]) {
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') outputClosed = true;
      else throw err;
    });
  }
}

function writeErr(line: string): void {
  if (!outputClosed) process.stderr.write(line);
}

export class Logger {
  constructor(private readonly format: LogFormat = 'text') {}

  private emit(level: string, msg: string, fields: Record<string, unknown>): void {
    if (this.format === 'json') {
      const rec = { ts: new Date().toISOString(), level, msg, ...fields };
      writeErr(`${JSON.stringify(rec, (_k, v) => (typeof v === 'bigint' ? (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()) : v))}\n`);
    } else {
      writeErr(level === 'interval' ? `${msg}\n` : `traffic-counter: ${level === 'info' ? '' : `${level}: `}${msg}\n`);
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
