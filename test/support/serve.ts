/** `tc-query serve` as a child process for the tests: started on an ephemeral port, stopped by its pid. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { QUERY, recorder, pcapsDir, tmp } from '../helpers';

export interface Serving {
  url: string;
  child: ChildProcess;
  /** Everything written to stderr up to the line naming the address. */
  stderr: string;
  stop(): Promise<void>;
}

/** Starts `tc-query --db DB serve --listen 127.0.0.1:0 ARGS...` and resolves with its URL once it listens. */
export function serve(db: string, args: string[] = [], listen = '127.0.0.1:0'): Promise<Serving> {
  const child = spawn(process.execPath, [QUERY, '--db', db, 'serve', '--listen', listen, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tc-query serve did not start in 20 s:\n${buf}`));
    }, 20_000);
    child.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /serving .* on (http:\/\/\S+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1],
          child,
          stderr: buf,
          stop: () =>
            new Promise<void>((done) => {
              if (child.exitCode !== null) return done();
              child.once('exit', () => done());
              child.kill('SIGTERM');
            }),
        });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`tc-query serve exited (${code}) before listening:\n${buf}`));
    });
  });
}

/** A replay of one capture of the corpus with flows, in a new temp folder. */
export function replayed(capture = 'ndpi_alexa-app.pcapng'): string {
  const db = path.join(tmp(), 'serve.db');
  const r = recorder(['record', '--pcap', path.join(pcapsDir(), capture), '--flows', '--db', db, '--quiet']);
  if (r.status !== 0) throw new Error(`replaying ${capture} failed: ${r.stderr}`);
  return db;
}
