/**
 * Labels, ASNs and networks through the built tc-query: `top --by label|asn|net` totals equal
 * the per-IP totals of the same window; the longest prefix wins (nested CIDRs, IPv4 and IPv6);
 * unmatched addresses under null; `--label` on top, flows, series and export equals that
 * label's addresses; label and ASN columns on --by ip rows and in exports; bad label files
 * name file:line; bad prefixes; a 500,000-range synthetic ip2asn table answers as a plain scan
 * of it does, through its parsed-table cache too.
 */
import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { pcapsDir, query, recordGenerated, recorder, tmp } from './helpers';
import { writeIp2Asn } from './support/asn';
import { parseAddr } from '../src/addr';

const COUNTERS = ['tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes', 'packets', 'bytes'] as const;
type Row = Record<string, unknown>;

let dir = '';
let gen = ''; // generated capture: 10.1.0.0-10.1.1.43 and 192.168.0.1-4, every 16th host as 2001:db8::...
let real = ''; // real captures: public IPv4 and IPv6 addresses
let labels = '';
let asn4 = '';
let asn6 = '';
// The cache of parsed ASN tables goes to a folder of this test's own.
const env = () => ({ XDG_CACHE_HOME: path.join(dir, 'cache'), TC_LABELS: '', TC_ASN: '' });

function json(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Row[] {
  const r = query([...args, '--format', 'json'], { env: { ...env(), ...extraEnv } });
  if (r.status !== 0) throw new Error(`tc-query ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as Row[];
}

before(() => {
  dir = tmp('tc-labels-');
  gen = recordGenerated({ packets: 20_000, hosts: 300, flows: 900, seconds: 20 }, 5);
  real = path.join(dir, 'real.db');
  const P = (f: string) => path.join(pcapsDir(), f);
  const r = recorder(['record', '--pcap', P('ndpi_alexa-app.pcapng'), P('zeek_wikipedia.pcap'), P('tcpdump_LINKTYPE_IPV6.pcap'), P('zeek_4in6.pcap'), '--db', real, '--flows', '--quiet', '--interval-secs', '1']);
  assert.equal(r.status, 0, r.stderr);
  labels = path.join(dir, 'labels.txt');
  // The more specific networks first: the order of the lines does not matter.
  writeFileSync(
    labels,
    [
      '# networks of the generated capture',
      '10.1.0.0/24 first',
      '',
      '10.1.0.0/16   remote hosts   # a comment after the label',
      '10.0.0.0/8 ten',
      '192.168.0.0/30 local',
      '2001:db8::a01:0/120 v6-small',
      '2001:db8::/32 doc',
      '10.1.0.77 one host',
      '2001:db8::a01:20/128 one v6 host',
    ].join('\n'),
  );
  // ip2asn as two files (IPv4, IPv6), AS 0 = not routed.
  asn4 = path.join(dir, 'ip2asn-v4.tsv');
  asn6 = path.join(dir, 'ip2asn-v6.tsv');
  writeFileSync(asn4, ['0.0.0.0\t10.0.255.255\t0\tNone\tNot routed', '10.1.0.0\t10.1.0.127\t64500\tUS\tEXAMPLE-A', '10.1.0.128\t10.1.0.255\t0\tNone\tNot routed', '10.1.1.0\t10.1.255.255\t64501\tDE\tEXAMPLE-B, Berlin', '192.168.0.0\t192.168.0.3\t64500\tUS\tEXAMPLE-A', ''].join('\n'));
  writeFileSync(asn6, ['2001:db8::\t2001:db8::a01:7f\t64502\tJP\tV6-NET', '2001:db8::c0a8:0\t2001:db8::c0a8:ffff\t4200000000\tNone\tPRIVATE-32BIT', ''].join('\n'));
});

/** The sum of each counter over rows. */
const totals = (rows: Row[]) => Object.fromEntries(COUNTERS.map((c) => [c, rows.reduce((a, r) => a + BigInt(r[c] as number), 0n)]));

/** Sums of rows grouped by `keyOf(row)` (JSON text of the key). */
function groupSums(rows: Row[], keyOf: (r: Row) => unknown): Map<string, Record<string, bigint>> {
  const m = new Map<string, Row[]>();
  for (const r of rows) {
    const k = JSON.stringify(keyOf(r));
    m.set(k, [...(m.get(k) ?? []), r]);
  }
  return new Map([...m].map(([k, rs]) => [k, totals(rs)]));
}

/** The network of an address at a prefix length, as `--by net` should print it (an independent masking). */
function netOf(ip: string, v4: number, v6: number): string {
  const b = parseAddr(ip)!;
  const prefix = b.length === 4 ? v4 : v6;
  const bits = [...b].map((x) => x.toString(2).padStart(8, '0')).join('').slice(0, prefix).padEnd(b.length * 8, '0');
  const bytes = Uint8Array.from({ length: b.length }, (_, i) => parseInt(bits.slice(i * 8, i * 8 + 8), 2));
  if (b.length === 4) return `${[...bytes].join('.')}/${prefix}`;
  // RFC 5952 through the URL parser's IPv6 serializer.
  const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i] << 8) | bytes[2 * i + 1]).toString(16)).join(':');
  return `${new URL(`http://[${groups}]/`).hostname.slice(1, -1)}/${prefix}`;
}

test('totals of --by label, asn and net equal the per-IP totals of the window, group by group', () => {
  for (const db of [gen, real]) {
    const base = ['--db', db, 'top', '--all', '--limit', '0', '--labels', labels, '--asn', asn4, '--asn', asn6];
    const ips = json(base);
    assert.ok(ips.length > 20, `${db}: ${ips.length} addresses`);
    assert.deepEqual(Object.keys(ips[0]), ['ip', ...COUNTERS, 'label', 'asn', 'as_name', 'country', 'local', 'name']);
    const groupings: [string[], (r: Row) => unknown, string[]][] = [
      [['--by', 'label'], (r) => r.label, ['label']],
      [['--by', 'asn'], (r) => r.asn, ['asn', 'as_name', 'country']],
      [['--by', 'net'], (r) => netOf(r.ip as string, 24, 64), ['net']],
      [['--by', 'net', '--v4-prefix', '16', '--v6-prefix', '120'], (r) => netOf(r.ip as string, 16, 120), ['net']],
      [['--by', 'net', '--v4-prefix', '0', '--v6-prefix', '128'], (r) => netOf(r.ip as string, 0, 128), ['net']],
    ];
    for (const [by, keyOf, fields] of groupings) {
      const rows = json([...base, ...by]);
      const what = `${path.basename(db)} ${by.join(' ')}`;
      assert.deepEqual(Object.keys(rows[0]), [...fields, ...COUNTERS], what);
      assert.deepEqual(totals(rows), totals(ips), `${what}: totals`);
      const want = groupSums(ips, keyOf);
      const got = new Map(rows.map((r) => [JSON.stringify(r[fields[0]]), totals([r])]));
      assert.deepEqual(got, want, `${what}: per group`);
      // Largest first.
      for (let i = 1; i < rows.length; i++) assert.ok(BigInt(rows[i - 1].bytes as number) >= BigInt(rows[i].bytes as number), what);
    }
  }
});

test('the longest prefix wins, IPv4 and IPv6, whatever the order of the lines; unmatched addresses are null', () => {
  const ips = json(['--db', gen, 'top', '--all', '--limit', '0', '--labels', labels]);
  const label = new Map(ips.map((r) => [r.ip as string, r.label]));
  const want: Record<string, string | null> = {
    '10.1.0.5': 'first',
    '10.1.0.77': 'one host',
    '10.1.1.5': 'remote hosts',
    '192.168.0.1': 'local',
    '192.168.0.4': null,
    '2001:db8::a01:10': 'v6-small',
    '2001:db8::a01:20': 'one v6 host',
    '2001:db8::a01:110': 'doc',
    '2001:db8::c0a8:1': 'doc',
  };
  for (const [ip, l] of Object.entries(want)) assert.equal(label.get(ip), l, ip);
  // Every address: the label of the longest matching line, computed here by trying each prefix.
  const lines: [string, number, string][] = [
    ['10.1.0.0', 24, 'first'], ['10.1.0.0', 16, 'remote hosts'], ['10.0.0.0', 8, 'ten'], ['192.168.0.0', 30, 'local'],
    ['2001:db8::a01:0', 120, 'v6-small'], ['2001:db8::', 32, 'doc'], ['10.1.0.77', 32, 'one host'], ['2001:db8::a01:20', 128, 'one v6 host'],
  ];
  for (const r of ips) {
    const ip = r.ip as string;
    const b = parseAddr(ip)!;
    const best = lines
      .filter(([n, p]) => parseAddr(n)!.length === b.length && netOf(ip, p, p) === `${netOf(n, p, p)}`)
      .sort((x, y) => y[1] - x[1])[0];
    assert.equal(r.label, best ? best[2] : null, ip);
  }
  // The unmatched addresses are one row, label null (csv: empty; table: "(no label)").
  const byLabel = json(['--db', gen, 'top', '--all', '--limit', '0', '--labels', labels, '--by', 'label']);
  const none = byLabel.filter((r) => r.label === null);
  assert.equal(none.length, 1);
  assert.deepEqual(totals(none), totals(ips.filter((r) => r.label === null)));
  const csv = query(['--db', gen, 'top', '--all', '--labels', labels, '--by', 'label', '--format', 'csv'], { env: env() });
  assert.match(csv.stdout, /^label,tx_packets,tx_bytes,rx_packets,rx_bytes,packets,bytes\n/);
  assert.match(csv.stdout, /\n,\d+,\d+,\d+,\d+,\d+,\d+\n/);
  const table = query(['--db', gen, 'top', '--all', '--labels', labels, '--by', 'label'], { env: env() });
  assert.match(table.stdout, /│ \(no label\) +│/);
  assert.match(table.stdout, /│ remote hosts +│/);
});

test('IPv6 networks of --by net, and --v6-prefix / --v4-prefix', () => {
  const nets = json(['--db', gen, 'top', '--all', '--limit', '0', '--by', 'net', '--v6-prefix', '120']).map((r) => r.net);
  assert.ok(nets.includes('2001:db8::a01:0/120'), nets.join(' '));
  assert.ok(nets.includes('2001:db8::a01:100/120'), nets.join(' '));
  assert.ok(nets.includes('2001:db8::c0a8:0/120'), nets.join(' '));
  assert.ok(nets.includes('10.1.0.0/24') && nets.includes('10.1.1.0/24') && nets.includes('192.168.0.0/24'), nets.join(' '));
  const defaults = json(['--db', gen, 'top', '--all', '--limit', '0', '--by', 'net']).map((r) => r.net);
  assert.deepEqual(defaults.filter((n) => String(n).includes(':')), ['2001:db8::/64']);
  const wide = json(['--db', real, 'top', '--all', '--limit', '0', '--by', 'net', '--v4-prefix', '8', '--v6-prefix', '16']).map((r) => String(r.net));
  for (const n of wide) assert.match(n, /^(\d+\.0\.0\.0\/8|([0-9a-f]{1,4})?::\/16)$/);
  assert.ok(wide.some((n) => n.endsWith('::/16')), 'the real captures hold IPv6 addresses');
});

test('bad --v4-prefix and --v6-prefix are refused with a message, in every format', () => {
  for (const [opt, v, msg] of [
    ['--v4-prefix', '33', /must be between 0 and 32/],
    ['--v4-prefix', '-1', /must be between 0 and 32/],
    ['--v4-prefix', 'abc', /expected a whole number, got "abc"/],
    ['--v6-prefix', '129', /must be between 0 and 128/],
    ['--v6-prefix', '6 4', /expected a whole number/],
  ] as const) {
    const t = query(['--db', gen, 'top', '--all', '--by', 'net', opt, v]);
    assert.equal(t.status, 1);
    assert.equal(t.stdout, '');
    assert.match(t.stderr, new RegExp(`^tc-query: error: option '${opt} <n>' argument '${v}' is invalid\\. ${msg.source}.*; see \`tc-query top --help\`\\n$`));
    const j = query(['--db', gen, 'top', '--all', '--by', 'net', opt, v, '--format', 'json']);
    assert.equal(j.status, 1);
    const doc = JSON.parse(j.stdout) as { error: { message: string; code: string } };
    assert.equal(doc.error.code, 'ERR_TC_USAGE');
    assert.match(doc.error.message, msg);
  }
  // A prefix with another grouping would be ignored: it is refused instead.
  for (const by of ['ip', 'label', 'flow']) {
    const t = query(['--db', gen, 'top', '--all', '--by', by, '--v4-prefix', '16', ...(by === 'label' ? ['--labels', labels] : [])]);
    assert.equal(t.status, 1);
    assert.match(t.stderr, new RegExp(`--v4-prefix groups addresses into networks for --by net only \\(this is --by ${by}\\); add --by net`));
    const j = query(['--db', gen, 'top', '--all', '--by', by, '--v6-prefix', '48', '--format', 'json', ...(by === 'label' ? ['--labels', labels] : [])]);
    assert.equal((JSON.parse(j.stdout) as { error: { code: string } }).error.code, 'ERR_TC_USAGE');
  }
});

test('--label on top, flows, series and export: the addresses of that label, a flow by either end', () => {
  const L = ['--labels', labels];
  const ips = json(['--db', gen, 'top', '--all', '--limit', '0', ...L]);
  for (const name of ['first', 'doc', 'local', 'remote hosts']) {
    const mine = ips.filter((r) => r.label === name);
    assert.ok(mine.length > 0, name);
    const top = json(['--db', gen, 'top', '--all', '--limit', '0', ...L, '--label', name]);
    assert.deepEqual(new Set(top.map((r) => r.ip)), new Set(mine.map((r) => r.ip)), name);
    assert.deepEqual(totals(top), totals(mine), name);
    // One row of --by label.
    assert.deepEqual(json(['--db', gen, 'top', '--all', ...L, '--label', name, '--by', 'label']).map((r) => r.label), [name]);
    // series: the label's tx + rx per step, as --cidr gives it for a network.
    const steps = json(['--db', gen, 'series', '--all', '--step', '5s', ...L, '--label', name]);
    assert.deepEqual(
      { packets: steps.reduce((a, r) => a + BigInt(r.packets as number), 0n), bytes: steps.reduce((a, r) => a + BigInt(r.bytes as number), 0n) },
      { packets: totals(mine).packets, bytes: totals(mine).bytes },
      `series ${name}`,
    );
    // flows: every flow with an address of the label at either end, and no other.
    const flows = json(['--db', gen, 'flows', '--all', '--limit', '0', ...L, '--label', name]);
    const all = json(['--db', gen, 'top', '--by', 'flow', '--all', '--limit', '0']);
    const set = new Set(mine.map((r) => r.ip));
    const key = (r: Row) => `${r.src}|${r.dst}|${r.proto}|${r.sport}|${r.dport}`;
    assert.deepEqual(new Set(flows.map(key)), new Set(all.filter((r) => set.has(r.src) || set.has(r.dst)).map(key)), `flows ${name}`);
    // Per-IP export rows of the label only.
    const out = path.join(dir, `x-${name.replace(/ /g, '_')}.jsonl`);
    const e = query(['--db', gen, 'export', '--out', out, ...L, '--label', name], { env: env() });
    assert.equal(e.status, 0, e.stderr);
    const rows = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Row);
    assert.deepEqual(new Set(rows.map((r) => r.ip)), set, `export ${name}`);
    assert.ok(rows.every((r) => r.label === name));
    assert.equal(rows.reduce((a, r) => a + BigInt(r.tx_bytes as number) + BigInt(r.rx_bytes as number), 0n), totals(mine).bytes, `export ${name}`);
  }
  // flows --ip A --label L: A's flows whose other end (or A) has the label.
  const a = '192.168.0.4';
  const both = json(['--db', gen, 'flows', '--all', '--limit', '0', ...L, '--ip', a, '--label', 'first']);
  assert.ok(both.length > 0);
  for (const f of both) assert.ok((f.src === a && String(f.dst).startsWith('10.1.0.')) || (f.dst === a && String(f.src).startsWith('10.1.0.')), JSON.stringify(f));
});

test('label and AS columns: --by ip rows and per-IP exports gain them; --labels after the command and TC_LABELS work', () => {
  const withEnv = json(['--db', gen, 'top', '--all', '--limit', '0'], { TC_LABELS: labels });
  const given = json(['--db', gen, 'top', '--all', '--limit', '0', '--labels', labels]);
  assert.deepEqual(withEnv, given);
  const before = json(['--db', gen, '--labels', labels, 'top', '--all', '--limit', '0']);
  assert.deepEqual(before, given);
  assert.deepEqual(Object.keys(json(['--db', gen, 'top', '--all'])[0]), ['ip', ...COUNTERS, 'local', 'name'], 'no label or AS fields without --labels/--asn');
  const src = json(['--db', gen, 'top', '--by', 'src', '--all', '--asn', asn4, '--asn', asn6]);
  assert.deepEqual(Object.keys(src[0]), ['ip', 'packets', 'bytes', 'asn', 'as_name', 'country', 'local', 'name']);
  const as = new Map(json(['--db', gen, 'top', '--all', '--limit', '0', '--asn', asn4, '--asn', asn6]).map((r) => [r.ip, r]));
  assert.deepEqual([as.get('10.1.0.5')!.asn, as.get('10.1.0.5')!.as_name, as.get('10.1.0.5')!.country], [64500, 'EXAMPLE-A', 'US']);
  assert.deepEqual([as.get('10.1.0.200')!.asn, as.get('10.1.0.200')!.as_name, as.get('10.1.0.200')!.country], [null, null, null], 'AS 0: no ASN');
  assert.deepEqual([as.get('10.1.1.5')!.asn, as.get('10.1.1.5')!.as_name], [64501, 'EXAMPLE-B, Berlin']);
  assert.deepEqual([as.get('192.168.0.4')!.asn], [null], 'outside every range');
  assert.deepEqual([as.get('2001:db8::a01:70')!.asn, as.get('2001:db8::a01:70')!.country], [64502, 'JP']);
  assert.deepEqual([as.get('2001:db8::c0a8:1')!.asn, as.get('2001:db8::c0a8:1')!.country], [4200000000, null]);
  // One combined file, gzipped as iptoasn.com serves it, answers the same as the two files.
  const gz = path.join(dir, 'ip2asn-combined.tsv.gz');
  writeFileSync(gz, gzipSync(Buffer.concat([readFileSync(asn4), readFileSync(asn6)])));
  assert.deepEqual(json(['--db', gen, 'top', '--all', '--limit', '0', '--by', 'asn', '--asn', gz]), json(['--db', gen, 'top', '--all', '--limit', '0', '--by', 'asn', '--asn', asn4, '--asn', asn6]));
  // Exports: label, asn, as_name, country after the existing columns (csv header; parquet alike).
  const out = path.join(dir, 'keys.csv');
  const e = query(['--db', gen, 'export', '--out', out, '--labels', labels, '--asn', asn4, '--asn', asn6], { env: env() });
  assert.equal(e.status, 0, e.stderr);
  const lines = readFileSync(out, 'utf8').trim().split('\n');
  assert.equal(lines[0], 'node,start,end,ip,tx_packets,tx_bytes,rx_packets,rx_bytes,label,asn,as_name,country,name');
  assert.ok(lines.some((l) => /,10\.1\.1\.5,(\d+,){4}remote hosts,64501,"EXAMPLE-B, Berlin",DE,$/.test(l)), 'a labelled row with its AS');
  assert.ok(lines.some((l) => /,192\.168\.0\.4,(\d+,){4},,,,$/.test(l)), 'an unlabelled row outside every range');
  const flows = query(['--db', gen, 'export', '--what', 'flow', '--out', '-', '--format', 'csv', '--labels', labels], { env: env() });
  assert.match(flows.stdout, /^node,start,end,src,dst,proto,sport,dport,packets,bytes,src_label,dst_label,src_name,dst_name\n/, 'flow rows keep their columns, then gain the labels and names of both ends');
  assert.ok(flows.stdout.split('\n').some((l) => /,10\.1\.1\.5,192\.168\.0\.\d,(\d+,){5}remote hosts,local,,$/.test(l)), 'a flow row with the labels of its ends');
});

test('bad label files name file:line and what is wrong; a missing file says what to do; in every format', () => {
  const cases: [string, RegExp][] = [
    ['10.0.0.0/8 ok\n\n10.1.0.0/16\n', /bad\.txt:3: "10\.1\.0\.0\/16" has no label; each line is "CIDR label"/],
    ['# x\nten.0.0.0/8 a\n', /bad\.txt:2: "ten\.0\.0\.0\/8" is not a CIDR/],
    ['10.0.0.0/33 a\n', /bad\.txt:1: "10\.0\.0\.0\/33" is not a CIDR/],
    ['2001:db8::/200 a\n', /bad\.txt:1: "2001:db8::\/200" is not a CIDR/],
    ['10.1.2.3/16 a\n', /bad\.txt:1: 10\.1\.2\.3\/16 has bits set past its \/16; write the network, 10\.1\.0\.0\/16/],
    ['10.0.0.0/8 a\n2001:db8::/32 b\n10.0.0.0/8 c\n', /bad\.txt:3: 10\.0\.0\.0\/8 is already labelled on line 1/],
  ];
  const bad = path.join(dir, 'bad.txt');
  for (const [text, re] of cases) {
    writeFileSync(bad, text);
    for (const args of [['top', '--all'], ['series', '--all', '--label', 'a'], ['export', '--out', '-', '--format', 'csv']]) {
      for (const format of args[0] === 'top' ? ['table', 'csv', 'json'] : ['table']) {
        const fmt = args[0] === 'export' ? [] : ['--format', format];
        const r = query(['--db', gen, '--labels', bad, ...args, ...fmt], { env: env() });
        const what = `${JSON.stringify(text)} ${args.join(' ')} ${format}`;
        assert.equal(r.status, 1, what);
        if (format === 'json' && args[0] !== 'export') {
          const doc = JSON.parse(r.stdout) as { error: { message: string; code: string } };
          assert.match(doc.error.message, re, what);
          assert.equal(doc.error.code, 'ERR_TC_LABELS', what);
        } else {
          assert.equal(r.stdout, '', what);
          assert.match(r.stderr, new RegExp(`^tc-query: error: .*${re.source}[^\\n]*\\n$`), what);
        }
      }
    }
  }
  const missing = query(['--db', gen, 'top', '--all', '--labels', path.join(dir, 'none.txt'), '--format', 'json'], { env: env() });
  const doc = JSON.parse(missing.stdout) as { error: { message: string; code: string } };
  assert.match(doc.error.message, /cannot read label file .*none\.txt: no such file; give --labels FILE \(lines "CIDR label", e\.g\. "10\.1\.0\.0\/16 office"\), or unset TC_LABELS/);
  assert.equal(doc.error.code, 'ERR_TC_LABELS');
  const fromEnv = query(['--db', gen, 'top', '--all'], { env: { ...env(), TC_LABELS: path.join(dir, 'none.txt') } });
  assert.match(fromEnv.stderr, /^tc-query: error: cannot read label file .*none\.txt: no such file/);
  // What each option needs, and a label the file does not give.
  const needs: [string[], RegExp][] = [
    [['top', '--all', '--by', 'label'], /--by label needs a label file: give --labels FILE/],
    [['top', '--all', '--by', 'asn'], /--by asn needs an ASN table: give --asn FILE/],
    [['series', '--all', '--label', 'x'], /--label x needs a label file: give --labels FILE/],
    [['flows', '--all'], /flows needs --ip ADDR or --label NAME/],
    [['--labels', labels, 'top', '--all', '--label', 'Office'], /--label "Office": no line of .*labels\.txt gives that label \(it gives first, remote hosts, ten, local/],
  ];
  for (const [args, re] of needs) {
    const r = query(['--db', gen, ...args], { env: env() });
    assert.equal(r.status, 1, args.join(' '));
    assert.match(r.stderr, new RegExp(`^tc-query: error: ${re.source}`), args.join(' '));
  }
  // A bad ASN table names its file and line too.
  const badAsn = path.join(dir, 'bad-asn.tsv');
  writeFileSync(badAsn, '1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n1.0.1.0\t1.0.1.255\tAS13335\tUS\tX\n');
  const a = query(['--db', gen, 'top', '--all', '--by', 'asn', '--asn', badAsn, '--format', 'json'], { env: env() });
  assert.deepEqual(JSON.parse(a.stdout), { error: { message: `${badAsn}:2: AS_number "AS13335" is not a number from 0 to 4294967295`, code: 'ERR_TC_ASN' } });
});

/** The AS of each address by one merge pass over the table's lines (each family sorted), independent of tc-query's. */
function scanAsn(file: string, ips: string[]): Map<string, number | null> {
  const big = (s: string) => parseAddr(s)!.reduce((v, x) => (v << 8n) | BigInt(x), 0n);
  const out = new Map<string, number | null>(ips.map((ip) => [ip, null]));
  for (const fam of [4, 16]) {
    const mine = ips.filter((ip) => parseAddr(ip)!.length === fam).map((ip) => ({ ip, v: big(ip) })).sort((a, b) => (a.v < b.v ? -1 : a.v > b.v ? 1 : 0));
    let i = 0;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (i >= mine.length) break;
      const [s, e, as] = line.split('\t');
      if (!s || s.includes(':') !== (fam === 16)) continue;
      const lo = big(s);
      const hi = big(e);
      while (i < mine.length && mine[i].v < lo) i++;
      while (i < mine.length && mine[i].v <= hi) out.set(mine[i++].ip, Number(as) === 0 ? null : Number(as));
    }
  }
  return out;
}

test('a 500,000-range synthetic ip2asn table answers as a scan of it does, parsed or from its cache, and a changed table applies', () => {
  const table = path.join(dir, 'ip2asn-big.tsv');
  assert.equal(writeIp2Asn(table, { v4: 430_000, v6: 90_000 }), 520_000);
  const ask = (by: string) => json(['--db', real, 'top', '--all', '--limit', '0', '--by', by, '--asn', table]);
  const first = ask('ip');
  const want = scanAsn(table, first.map((r) => r.ip as string));
  const distinct = new Set([...want.values()].filter((v) => v !== null));
  assert.ok(distinct.size > 10, `the addresses fall in ${distinct.size} ASes`);
  for (const r of first) assert.equal(r.asn, want.get(r.ip as string), r.ip as string);
  const byAsn = ask('asn');
  assert.deepEqual(new Map(byAsn.map((r) => [JSON.stringify(r.asn), totals([r])])), groupSums(first, (r) => r.asn));
  // The second answer comes from the parsed-table cache: the same.
  assert.deepEqual(ask('ip'), first);
  assert.deepEqual(ask('asn'), byAsn);
  // A changed table (another seed, same path) is parsed again: the answer follows it.
  writeIp2Asn(table, { v4: 430_000, v6: 90_000, seed: 99 });
  utimesSync(table, new Date(), new Date(Date.now() + 5000));
  const changed = ask('ip');
  const want2 = scanAsn(table, changed.map((r) => r.ip as string));
  for (const r of changed) assert.equal(r.asn, want2.get(r.ip as string), r.ip as string);
  assert.notDeepEqual(changed.map((r) => r.asn), first.map((r) => r.asn));
});

test('the cache of a table that no longer exists is removed when another table is cached; a live table keeps its cache', () => {
  const cache = path.join(dir, 'cache', 'traffic-counter');
  const caches = () => (existsSync(cache) ? readdirSync(cache).filter((f) => f.startsWith('asn-')).sort() : []);
  const gone = path.join(dir, 'ip2asn-gone.tsv');
  const kept = path.join(dir, 'ip2asn-kept.tsv');
  const next = path.join(dir, 'ip2asn-next.tsv');
  for (const f of [gone, kept, next]) writeIp2Asn(f, { v4: 50, v6: 10 });
  const before = new Set(caches());
  const ask = (t: string) => json(['--db', real, 'top', '--limit', '1', '--by', 'asn', '--asn', t]);
  ask(gone);
  ask(kept);
  const two = caches().filter((f) => !before.has(f));
  assert.equal(two.length, 2, `one cache per table: ${two}`);
  writeFileSync(path.join(cache, 'asn-0000000000000000.bin.123.tmp'), 'x');
  utimesSync(path.join(cache, 'asn-0000000000000000.bin.123.tmp'), new Date(0), new Date(0));
  rmSync(gone);
  ask(next);
  const after = caches().filter((f) => !before.has(f));
  assert.equal(after.length, 2, `the deleted table's cache and the stale temporary file are gone: ${after}`);
  assert.equal(two.filter((f) => after.includes(f)).length, 1, 'the live table keeps its cache');
  assert.ok(!after.some((f) => f.endsWith('.tmp')));
});
