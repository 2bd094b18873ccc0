/**
 * Options in one place: the defaults `record --help` shows and the recorder uses are the core's
 * (native/core/src/options.rs, through optionDefaults()), the write queue's bounds are the
 * native hand-over's, and the core's one validate() refuses what the CLI refuses.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { recorder } from './helpers';
import { OPTION_DEFAULTS as D } from '../src/native';
import { DEFAULT_QUEUE_MAX, DEFAULT_QUEUE_MAX_BYTES } from '../src/recorder/write/sink';

/** The `(default: ...)` commander prints for each long option of `record --help`. */
function helpDefaults(): Map<string, string> {
  const r = recorder(['record', '--help']);
  assert.equal(r.status, 0, r.stderr);
  const text = r.stdout.replace(/\s+/g, ' ');
  const out = new Map<string, string>();
  for (const m of text.matchAll(/ (--[a-z-]+)(?: <[^>]+>)? (.*?)(?= -{1,2}[a-z]|$)/g)) {
    const d = /\(default: ([^)]*)\)/.exec(m[2]);
    if (d) out.set(m[1], d[1]);
  }
  return out;
}

test('record --help shows the defaults of the capture core', () => {
  const h = helpDefaults();
  assert.equal(h.get('--interval-secs'), String(D.intervalMs / 1000));
  assert.equal(h.get('--max-keys'), String(D.maxKeys));
  assert.equal(h.get('--block-size'), String(D.blockSize));
  assert.equal(h.get('--block-count'), String(D.blockCount));
  assert.equal(h.get('--frame-size'), String(D.frameSize));
  assert.equal(h.get('--snaplen'), String(D.snaplen));
  assert.equal(h.get('--queue-max'), String(D.queueMaxBatches));
  assert.equal(h.get('--queue-max-mib'), String(D.queueMaxBytes / 2 ** 20));
});

test('the write queue and the native hand-over share one bound', () => {
  assert.equal(DEFAULT_QUEUE_MAX, D.queueMaxBatches);
  assert.equal(DEFAULT_QUEUE_MAX_BYTES, D.queueMaxBytes);
});

test('the CLI refuses at entry what the core validate() refuses', () => {
  for (const [flag, bad] of [['--interval-secs', D.maxIntervalMs / 1000 + 1], ['--workers', D.maxWorkers + 1], ['--fanout-group', D.maxFanoutGroup + 1]] as const) {
    const r = recorder(['record', '--iface', 'lo', '--db', '/nonexistent/x.db', flag, String(bad)]);
    assert.equal(r.status, 1, `${flag} ${bad}`);
    assert.match(r.stderr, new RegExp(`${flag}.*must be between`), r.stderr);
  }
});
