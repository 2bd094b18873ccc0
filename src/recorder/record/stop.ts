/**
 * SIGINT and SIGTERM as one AbortSignal: live capture and replay both stop through it. A stop
 * asked for before the capture runs is carried out as soon as it does (`onStop` on an aborted
 * signal runs at once), instead of killing the process half-way through its set-up.
 */
export class StopSignals {
  private readonly ctl = new AbortController();
  /** Aborted with the signal's name ('SIGINT', 'SIGTERM'). */
  readonly signal: AbortSignal = this.ctl.signal;
  private reload: (() => void) | undefined;
  private readonly onInt = () => this.ctl.abort('SIGINT');
  private readonly onTerm = () => this.ctl.abort('SIGTERM');
  private readonly onHup = () => this.reload?.();

  /**
   * `secondKills`: a second SIGINT or SIGTERM takes the default action (a replay can be forced
   * to end); otherwise later ones are ignored while the stop runs. `hup`: SIGHUP is taken (and
   * ignored until `onReload` gives it a handler).
   */
  constructor(private readonly how: { secondKills: boolean; hup: boolean }) {
    const on = how.secondKills ? process.once.bind(process) : process.on.bind(process);
    on('SIGINT', this.onInt);
    on('SIGTERM', this.onTerm);
    if (how.hup) process.on('SIGHUP', this.onHup);
  }

  get stopped(): boolean {
    return this.signal.aborted;
  }

  /** Calls `f` with the signal's name once a stop is asked for (at once when it already was). */
  onStop(f: (name: string) => void): () => void {
    const run = () => f(String(this.signal.reason));
    if (this.signal.aborted) {
      run();
      return () => undefined;
    }
    this.signal.addEventListener('abort', run, { once: true });
    return () => this.signal.removeEventListener('abort', run);
  }

  /** What SIGHUP does from now on. */
  onReload(f: () => void): void {
    this.reload = f;
  }

  dispose(): void {
    process.off('SIGINT', this.onInt);
    process.off('SIGTERM', this.onTerm);
    if (this.how.hup) process.off('SIGHUP', this.onHup);
  }
}
