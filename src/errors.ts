/**
 * The one error class of traffic-counter (recorder, tc-query and the capture engine's errors as
 * they cross napi): a message that says what went wrong and what to do, and a stable code
 * (ERR_TC_*) that `--format json` prints and scripts match on.
 */
export class TcError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
  }
}
