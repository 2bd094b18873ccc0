/**
 * tc-query export end to end: every documented combination (ip|flow x raw|1m|1h|1d x
 * parquet|csv|jsonl x one file or partitioned) writes exact integer counters and ISO-8601 UTC
 * times, read back by DuckDB (parquet) or parsed here (csv, jsonl); the format follows --out;
 * stdout; and whatever is refused is refused before anything is created.
 */
import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { DuckDBInstance } from '@duckdb/node-api';
import { pcapsDir, query, recorder, tmp } from './helpers';

const P = (f: string) => path.join(pcapsDir(), f);
let db = '';
let node = '';

before(() => {
  db = path.join(tmp(), 'e.db');
  // Two captures years apart: several date= partitions.
  const r = recorder(['record', '--pcap', P('zeek_smtp.pcap'), P('zeek_wikipedia.pcap'), '--db', db, '--flows', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  const d = new Database(db, { readonly: true });
  node = d.prepare("select value from meta where key = 'node_id'").pluck().get() as string;
  d.close();
});

type What = 'ip' | 'flow';
type Res = 'raw' | '1m' | '1h' | '1d';
const COUNTERS: Record<What, string[]> = { ip: ['tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes'], flow: ['packets', 'bytes'] };
const TIMES: Record<Res, string[]> = { raw: ['start', 'end'], '1m': ['bucket'], '1h': ['bucket'], '1d': ['bucket'] };
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/;

/** What the file holds for a table: row count, counter sums, and the UTC dates of its rows. */
function expected(what: What, res: Res): { rows: number; sums: number[]; dates: string[] } {
  const d = new Database(db, { readonly: true });
  try {
    const [from, time] = res === 'raw' ? [`${what}_deltas x join batches b on b.id = x.batch_id`, 'b.start_ms'] : [`${what}_${res} x`, 'x.bucket_ms'];
    const row = d.prepare(`select count(*), ${COUNTERS[what].map((c) => `coalesce(sum(x.${c}), 0)`).join(', ')} from ${from}`).raw().get() as number[];
    const dates = d.prepare(`select distinct strftime('%Y-%m-%d', ${time} / 1000, 'unixepoch') from ${from} order by 1`).pluck().all() as string[];
    return { rows: row[0], sums: row.slice(1), dates };
  } finally {
    d.close();
  }
}

/** Rows of a csv or jsonl file as objects of strings (csv) or JSON values (jsonl). */
function parseText(file: string, format: 'csv' | 'jsonl'): Record<string, unknown>[] {
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
  if (format === 'jsonl') return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const [head, ...rest] = lines;
  const keys = head.split(',');
  return rest.map((l) => Object.fromEntries(l.split(',').map((v, i) => [keys[i], v])));
}

function checkTextRows(rows: Record<string, unknown>[], what: What, res: Res, format: 'csv' | 'jsonl', label: string): number[] {
  const sums = COUNTERS[what].map(() => 0);
  for (const r of rows) {
    COUNTERS[what].forEach((c, i) => {
      const v = r[c];
      if (format === 'jsonl') assert.ok(typeof v === 'number' && Number.isInteger(v), `${label}: ${c} = ${JSON.stringify(v)}`);
      else assert.match(String(v), /^\d+$/, `${label}: ${c}`);
      sums[i] += Number(v);
    });
    for (const t of TIMES[res]) assert.match(String(r[t]), ISO, `${label}: ${t}`);
  }
  return sums;
}

test('every documented export combination writes exact integers and UTC times, one file or partitioned', async () => {
  const inst = await DuckDBInstance.create(':memory:');
  const conn = await inst.connect();
  try {
    for (const what of ['ip', 'flow'] as What[]) {
      for (const res of ['raw', '1m', '1h', '1d'] as Res[]) {
        for (const format of ['parquet', 'csv', 'jsonl'] as const) {
          for (const partition of [false, true]) {
            const label = `${what} ${res} ${format}${partition ? ' partitioned' : ''}`;
            const out = path.join(tmp(), partition ? 'folder' : `rows.${format}`);
            const r = query(['--db', db, 'export', '--what', what, '--resolution', res, '--format', format, '--out', out, ...(partition ? ['--partition'] : [])]);
            if (what === 'flow' && res === '1d') {
              assert.equal(r.status, 1, label);
              assert.match(r.stderr, /^tc-query: error: flows have minute and hour rollups only/, label);
              assert.ok(!existsSync(out), `${label}: nothing created`);
              continue;
            }
            assert.equal(r.status, 0, `${label}: ${r.stderr}`);
            const want = expected(what, res);
            assert.ok(want.rows > 0, label);
            assert.match(r.stderr, new RegExp(`^tc-query: exported ${want.rows} rows to `), label);
            const ext = format;
            let files: string[];
            if (partition) {
              assert.deepEqual(readdirSync(out), [`node=${node}`], `${label}: the node folder is the file's node id`);
              assert.deepEqual(readdirSync(path.join(out, `node=${node}`)).sort(), want.dates.map((d) => `date=${d}`), label);
              files = want.dates.map((d) => path.join(out, `node=${node}`, `date=${d}`, `data_0.${ext}`));
            } else {
              files = [out];
            }
            if (format === 'parquet') {
              const glob = partition ? `${out}/**/*.parquet` : out;
              const types = (await conn.runAndReadAll(`describe select * from read_parquet('${glob}', hive_partitioning = ${partition})`)).getRowObjectsJS() as { column_name: string; column_type: string }[];
              const type = Object.fromEntries(types.map((t) => [t.column_name, t.column_type]));
              for (const c of COUNTERS[what]) assert.equal(type[c], 'BIGINT', `${label}: ${c}`);
              for (const t of TIMES[res]) assert.equal(type[t], 'TIMESTAMP', `${label}: ${t}`);
              assert.equal(type.node, 'VARCHAR', label);
              const sums = (await conn.runAndReadAll(`select count(*)::bigint, ${COUNTERS[what].map((c) => `sum(${c})::bigint`).join(', ')}, count(distinct node)::bigint, min(node) from read_parquet('${glob}', hive_partitioning = ${partition})`)).getRows()[0];
              assert.deepEqual(sums.slice(0, -2).map(Number), [want.rows, ...want.sums], label);
              assert.deepEqual([Number(sums.at(-2)), sums.at(-1)], [1, node], label);
              if (partition) {
                // Each row lies in the folder of its own UTC date.
                const off = (await conn.runAndReadAll(`select count(*)::bigint from read_parquet('${glob}', hive_partitioning = true) where strftime("${TIMES[res][0]}", '%Y-%m-%d') != date::varchar`)).getRows()[0][0];
                assert.equal(Number(off), 0, label);
              }
            } else {
              let rows: Record<string, unknown>[] = [];
              for (const f of files) {
                const part = parseText(f, format);
                if (partition) {
                  const date = path.basename(path.dirname(f)).slice('date='.length);
                  for (const row of part) assert.equal(String(row[TIMES[res][0]]).slice(0, 10), date, `${label}: ${f}`);
                  assert.ok(part.every((row) => !('node' in row)), `${label}: the node is in the path`);
                } else {
                  assert.ok(part.every((row) => row.node === node), label);
                }
                rows = rows.concat(part);
              }
              assert.equal(rows.length, want.rows, label);
              assert.deepEqual(checkTextRows(rows, what, res, format, label), want.sums, label);
            }
          }
        }
      }
    }
  } finally {
    conn.closeSync();
    inst.closeSync();
  }
});

test('export: the format follows --out, stdout takes csv and jsonl, and refusals come before anything is created', () => {
  const d = tmp();
  const ok = (args: string[]) => {
    const r = query(['--db', db, 'export', ...args]);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    return r;
  };
  const refused = (args: string[], re: RegExp, created?: string) => {
    const r = query(['--db', db, 'export', ...args]);
    assert.equal(r.status, 1, args.join(' '));
    assert.match(r.stderr, re, args.join(' '));
    assert.equal(r.stdout, '', args.join(' '));
    if (created) assert.ok(!existsSync(created), `${args.join(' ')} created ${created}`);
    return r;
  };
  const want = expected('ip', 'raw');

  ok(['--out', path.join(d, 'x.csv')]);
  assert.match(readFileSync(path.join(d, 'x.csv'), 'utf8'), /^node,start,end,ip,tx_packets,tx_bytes,rx_packets,rx_bytes,name\n/);
  ok(['--out', path.join(d, 'x.ndjson')]);
  assert.equal(parseText(path.join(d, 'x.ndjson'), 'jsonl').length, want.rows);
  ok(['--out', path.join(d, 'x.JSONL')]);
  assert.equal(parseText(path.join(d, 'x.JSONL'), 'jsonl').length, want.rows);
  ok(['--out', path.join(d, 'x.parquet')]);
  assert.equal(readFileSync(path.join(d, 'x.parquet')).subarray(0, 4).toString(), 'PAR1');
  ok(['--partition', '--out', path.join(d, 'fleet')]);
  assert.ok(readdirSync(path.join(d, 'fleet', `node=${node}`)).length > 0);
  assert.ok(statSync(path.join(d, 'fleet', `node=${node}`, readdirSync(path.join(d, 'fleet', `node=${node}`))[0], 'data_0.parquet')).size > 0, 'parquet by default in a folder');

  refused(['--out', path.join(d, 'x.txt')], /^tc-query: error: --out .*x\.txt: the extension "\.txt" names no format; give --format parquet, csv or jsonl, or end the name in \.parquet, \.csv, \.jsonl, \.ndjson; see `tc-query export --help`\n$/, path.join(d, 'x.txt'));
  refused(['--out', path.join(d, 'noext')], /no extension to tell the format/, path.join(d, 'noext'));
  refused(['--out', '-'], /--out - \(stdout\) needs --format csv or jsonl/);
  refused(['--out', '-', '--format', 'parquet'], /parquet cannot be written to stdout/);
  refused(['--out', '-', '--format', 'csv', '--partition'], /--partition writes a folder; it cannot go to stdout/);
  refused(['--what', 'flow', '--resolution', '1d', '--partition', '--out', path.join(d, 'flows1d')], /flows have minute and hour rollups only/, path.join(d, 'flows1d'));

  for (const format of ['csv', 'jsonl'] as const) {
    const r = ok(['--out', '-', '--format', format]);
    const file = path.join(d, `stdout.${format}`);
    writeFileSync(file, r.stdout);
    const rows = parseText(file, format);
    assert.equal(rows.length, want.rows, format);
    assert.deepEqual(checkTextRows(rows, 'ip', 'raw', format, `stdout ${format}`), want.sums);
    assert.match(r.stderr, new RegExp(`^tc-query: exported ${want.rows} rows to stdout\\n$`));
    ok(['--out', path.join(d, `file.${format}`)]);
    assert.equal(r.stdout, readFileSync(path.join(d, `file.${format}`), 'utf8'), `stdout is what a ${format} file holds`);
  }

  // Existing output: refused (unchanged) unless --force.
  const file = path.join(d, 'x.csv');
  writeFileSync(file, 'keep me');
  refused(['--out', file], /^tc-query: error: --out .*x\.csv: .*x\.csv already exists; pass --force to replace it; see `tc-query export --help`\n$/);
  assert.equal(readFileSync(file, 'utf8'), 'keep me');
  ok(['--out', file, '--force']);
  assert.equal(parseText(file, 'csv').length, want.rows);
  refused(['--out', db, '--format', 'csv', '--force'], /is the database being read/);
  refused(['--out', path.join(d, 'fleet'), '--format', 'csv'], /is a folder; name a file/);
  // A folder that does not exist is said, never created on the way (a typo scatters nothing).
  refused(['--out', path.join(d, 'no', 'such', 'y.csv')], /--out .*y\.csv: the folder .*such does not exist; create it first/, path.join(d, 'no'));
  refused(['--partition', '--out', path.join(d, 'no', 'fleet')], /the folder .*no does not exist/, path.join(d, 'no'));
  const copied = query(['--db', db, 'copy', '--out', path.join(d, 'no', 'x.db')]);
  assert.equal(copied.status, 1);
  assert.match(copied.stderr, /the folder .*no does not exist/);
  assert.ok(!existsSync(path.join(d, 'no')), 'copy created no folder');

  const fleet = path.join(d, 'fleet');
  mkdirSync(path.join(fleet, 'node=another-host'), { recursive: true });
  writeFileSync(path.join(fleet, 'node=another-host', 'keep'), '');
  refused(['--partition', '--out', fleet], /^tc-query: error: --out .*fleet is not empty; pass --force to replace this database's node= folder in it; see `tc-query export --help`\n$/);
  writeFileSync(path.join(fleet, `node=${node}`, 'stale'), '');
  ok(['--partition', '--out', fleet, '--force', '--format', 'jsonl']);
  assert.ok(existsSync(path.join(fleet, 'node=another-host', 'keep')), 'other nodes stay');
  assert.ok(!existsSync(path.join(fleet, `node=${node}`, 'stale')), "this node's folder is replaced whole");
  assert.deepEqual(readdirSync(fleet).sort(), [`node=${node}`, 'node=another-host'].sort(), 'no staging folder left');
});
