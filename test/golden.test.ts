/**
 * Golden: replaying every capture of ../shared/pcaps and reading it back with
 * `tc-query --db X top --by ip|flow --all --limit 0 --format json` reproduces expected/*.json.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { pcapsDir, queryJson, recorder, tmp } from './helpers';

interface Expected {
  hosts: Record<string, { tx_packets: number; tx_bytes: number; rx_packets: number; rx_bytes: number }>;
  flows: { src: string; dst: string; proto: number; sport: number; dport: number; packets: number; bytes: number }[];
}

const dir = pcapsDir();
const files = readdirSync(path.join(dir, 'expected')).map((f) => f.replace(/\.json$/, '')).sort();

test('the corpus has 40 captures', () => assert.equal(files.length, 40));

const flowKey = (f: Expected['flows'][number]) => `${f.src}|${f.dst}|${f.proto}|${f.sport}|${f.dport}`;

for (const name of files) {
  test(`golden ${name}`, () => {
    const exp = JSON.parse(readFileSync(path.join(dir, 'expected', `${name}.json`), 'utf8')) as Expected;
    const db = path.join(tmp(), 'g.db');
    const r = recorder(['record', '--pcap', path.join(dir, name), '--db', db, '--flows', '--quiet']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'no warnings for a complete capture');

    const ips = queryJson<Record<string, number | string | null>[]>(['--db', db, 'top', '--by', 'ip', '--all', '--limit', '0']);
    const want = Object.entries(exp.hosts)
      .map(([ip, h]) => ({ ip, ...h, packets: h.tx_packets + h.rx_packets, bytes: h.tx_bytes + h.rx_bytes }))
      .sort((a, b) => a.ip.localeCompare(b.ip));
    // A replay without --local-networks has no local networks: every row's `local` is null. The
    // names the capture's DNS answers and ClientHellos carry are test/names.test.ts's.
    for (const row of ips) assert.deepEqual(Object.keys(row), ['ip', 'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes', 'packets', 'bytes', 'local', 'name']);
    for (const row of ips) assert.equal(row.local, null);
    const counts = ips.map(({ local: _local, name: _name, ...counters }) => counters);
    assert.deepEqual([...counts].sort((a, b) => String(a.ip).localeCompare(String(b.ip))), want);
    for (let i = 1; i < ips.length; i++) assert.ok(Number(ips[i - 1].bytes) >= Number(ips[i].bytes), 'sorted by bytes, largest first');

    const named = queryJson<(Expected['flows'][number] & { src_name: string | null; dst_name: string | null })[]>(['--db', db, 'top', '--by', 'flow', '--all', '--limit', '0']);
    for (const row of named) assert.deepEqual(Object.keys(row), ['src', 'dst', 'proto', 'sport', 'dport', 'packets', 'bytes', 'src_name', 'dst_name']);
    const flows = named.map(({ src_name: _s, dst_name: _d, ...flow }) => flow);
    const sortK = (a: Expected['flows'][number], b: Expected['flows'][number]) => flowKey(a).localeCompare(flowKey(b));
    assert.deepEqual([...flows].sort(sortK), [...exp.flows].sort(sortK));
    for (let i = 1; i < flows.length; i++) assert.ok(flows[i - 1].bytes >= flows[i].bytes, 'sorted by bytes, largest first');
  });
}
