/**
 * The query side never writes: `tc-query sql` cannot reach the file system (COPY TO, ATTACH,
 * read_csv, INSTALL/LOAD, settings), every command reads a database it cannot write (a
 * read-only folder, with and without a -wal, run as an unprivileged user), unreadable files say
 * why, and `tc-query copy` takes a consistent one-file snapshot while a writer holds the file.
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { generate } from './support/gen';
import { exited, needRoot, pcapsDir, query, QUERY, RECORDER, recorder, sleep, tmp } from './helpers';

const P = (f: string) => path.join(pcapsDir(), f);
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

/** tc-query run as the unprivileged user nobody (setpriv), as an analyst without write access would. */
function asNobody(args: string[]) {
  return spawnSync('setpriv', [...NOBODY, process.execPath, QUERY, ...args], { encoding: 'utf8', timeout: 120_000 });
}

/** A temp folder that nobody can reach (mkdtemp makes it 0700). */
function openTmp(): string {
  const d = tmp();
  chmodSync(d, 0o755);
  return d;
}

function topJson(run: (a: string[]) => ReturnType<typeof asNobody>, db: string): unknown {
  const r = run(['--db', db, 'top', '--all', '--limit', '0', '--format', 'json']);
  assert.equal(r.status, 0, `top on ${db}: ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout);
}

/**
 * Files of a folder with their sizes and modification times: to show nothing was written.
 * SQLite's -wal and -shm, which any reader of a WAL file creates where it can, are left out.
 */
function snapshot(dir: string): string {
  return readdirSync(dir, { recursive: true, withFileTypes: false })
    .map(String)
    .filter((f) => !/-(wal|shm)$/.test(f))
    .sort()
    .map((f) => {
      const st = statSync(path.join(dir, f));
      return `${f} ${st.size} ${st.mtimeMs}`;
    })
    .join('\n');
}

let db = '';
let dir = '';
before(() => {
  dir = openTmp();
  db = path.join(dir, 'q.db');
  const r = recorder(['record', '--pcap', P('zeek_smtp.pcap'), '--db', db, '--flows', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
});

test('sql statements cannot read or write files, load extensions or change settings', () => {
  // The working folder holds DuckDB's default temp folder, .tmp, which DuckDB would allow.
  const cwd = openTmp();
  mkdirSync(path.join(cwd, '.tmp'));
  const victim = path.join(cwd, 'victim.db');
  copyFileSync(db, victim);
  const before = snapshot(cwd);
  const files: string[] = [
    `copy (select 1) to '${victim}'`,
    `copy (select * from ip_deltas) to '${path.join(cwd, 'out.csv')}'`,
    "copy (select 1) to '.tmp/x.csv'",
    `copy ip_deltas to '${path.join(cwd, 'x.parquet')}' (format parquet)`,
    "select * from read_csv('/etc/passwd')",
    "select * from read_text('/etc/passwd')",
    "select * from read_blob('/etc/passwd')",
    `select * from read_parquet('${path.join(cwd, '*.parquet')}')`,
    "select * from read_json('/etc/passwd')",
    "select * from glob('/etc/*')",
    `select * from sniff_csv('/etc/passwd')`,
    `attach '${path.join(cwd, 'new.duckdb')}' as x`,
    `attach '${victim}' as v`,
    'install httpfs',
    'load sqlite',
    `load '${path.join(cwd, 'x.duckdb_extension')}'`,
    `export database '${path.join(cwd, 'exp')}'`,
    `import database '${path.join(cwd, 'exp')}'`,
    "create persistent secret s (type s3, key_id 'k', secret 'v')",
    `select 1; copy (select 2) to '${path.join(cwd, 'second.csv')}'`,
  ];
  const settings = [
    'set enable_external_access = true',
    'reset enable_external_access',
    'set lock_configuration = false',
    "pragma enable_external_access = true",
    `set allowed_directories = ['${cwd}']`,
    `set temp_directory = '${cwd}'`,
    `set profiling_output = '${path.join(cwd, 'profile.json')}'`,
  ];
  for (const [sqls, re] of [
    [files, /^tc-query: error: sql: statements cannot read or write files \(.+\)$/],
    [settings, /^tc-query: error: sql: statements cannot change DuckDB's settings \(.+\)$/],
  ] as const) {
    for (const sql of sqls) {
      const r = spawnSync(process.execPath, [QUERY, '--db', victim, 'sql', sql], { encoding: 'utf8', cwd, timeout: 60_000 });
      assert.equal(r.status, 1, `${sql}: ${r.stdout}`);
      assert.match(r.stderr.trim(), re, sql);
      assert.equal(r.stderr.trim().split('\n').length, 1, sql);
    }
  }
  const j = spawnSync(process.execPath, [QUERY, '--db', victim, 'sql', `copy (select 1) to '${victim}'`, '--format', 'json'], { encoding: 'utf8', cwd });
  assert.equal(j.status, 1);
  assert.equal(JSON.parse(j.stdout).error.code, 'ERR_TC_SQL_FILES');
  assert.equal(snapshot(cwd), before, 'nothing was written');
  // An in-memory catalog touches no file: allowed. The loaded tables answer as before.
  const ok = spawnSync(process.execPath, [QUERY, '--db', victim, 'sql', "attach ':memory:' as m; select count(*) as n from ip_deltas", '--format', 'json'], { encoding: 'utf8', cwd });
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(JSON.parse(ok.stdout)[0].n > 0);
});

/**
 * Records `second` into `file` while a reader holds a snapshot from before it, so the
 * recorder's intervals stay in the -wal, committed but not checkpointed (as while a recorder
 * runs); `during` runs before the reader lets go.
 */
function recordIntoWal(file: string, second: string, during: () => void): void {
  const hold = new Database(file, { readonly: true });
  try {
    hold.exec('begin');
    hold.prepare('select count(*) from batches').get();
    const r = recorder(['record', '--pcap', second, '--db', file, '--flows', '--quiet']);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(statSync(`${file}-wal`).size > 32, 'the second capture is in the -wal');
    during();
    hold.exec('commit');
  } finally {
    hold.close();
  }
}

test('every command reads a database in a folder its user cannot write; a -wal it cannot read is refused, never skipped', (t) => {
  if (!needRoot(t)) return;
  const src = path.join(openTmp(), 'live.db');
  assert.equal(recorder(['record', '--pcap', P('zeek_smtp.pcap'), '--db', src, '--flows', '--quiet']).status, 0);
  const root = openTmp();
  const place = (name: string, suffixes: string[]) => {
    const d = path.join(root, name);
    mkdirSync(d);
    for (const s of suffixes) copyFileSync(src + s, path.join(d, `t.db${s}`));
    return path.join(d, 't.db');
  };
  let full: unknown;
  let mainOnly = '';
  let walShm = '';
  let walOnly = '';
  recordIntoWal(src, P('zeek_wikipedia.pcap'), () => {
    full = topJson((a) => query(a), src);
    walShm = place('wal-and-shm', ['', '-wal', '-shm']);
    walOnly = place('wal-no-shm', ['', '-wal']);
    mainOnly = place('main-only', ['']);
  });
  // As after a clean stop: the recorder checkpointed everything, no -wal, or an empty one.
  const clean = path.join(openTmp(), 'clean.db');
  assert.equal(recorder(['record', '--pcap', P('zeek_smtp.pcap'), P('zeek_wikipedia.pcap'), '--db', clean, '--flows', '--quiet']).status, 0);
  assert.ok(!existsSync(`${clean}-wal`));
  const cleanRo = path.join(root, 'clean');
  mkdirSync(cleanRo);
  copyFileSync(clean, path.join(cleanRo, 't.db'));
  const emptyWal = path.join(root, 'empty-wal');
  mkdirSync(emptyWal);
  copyFileSync(clean, path.join(emptyWal, 't.db'));
  writeFileSync(path.join(emptyWal, 't.db-wal'), '');
  for (const d of readdirSync(root)) chmodSync(path.join(root, d), 0o555);
  chmodSync(root, 0o555);

  const notMainOnly = topJson(asNobody, mainOnly);
  assert.notDeepEqual(notMainOnly, full, 'the main file alone misses the second capture');
  const out = openTmp();
  chmodSync(out, 0o777);
  const before = snapshot(root);
  for (const file of [walShm, path.join(cleanRo, 't.db'), path.join(emptyWal, 't.db')]) {
    assert.deepEqual(topJson(asNobody, file), full, file);
    const name = path.basename(path.dirname(file));
    for (const args of [
      ['flows', '--ip', '10.10.1.4', '--all'],
      ['series', '--all', '--step', '1d', '--format', 'json'],
      ['status'],
      ['sql', 'select count(*) as n from ip_deltas'],
      ['export', '--out', path.join(out, `${name}.csv`)],
      ['export', '--partition', '--out', path.join(out, name)],
      ['copy', '--out', path.join(out, `${name}.db`)],
    ]) {
      const r = asNobody(['--db', file, ...args]);
      assert.equal(r.status, 0, `${args.join(' ')} on ${file}: ${r.stderr}`);
    }
    assert.deepEqual(topJson(asNobody, path.join(out, `${name}.db`)), full, `the copy of ${file}`);
  }
  const r = asNobody(['--db', walOnly, 'top', '--all']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^tc-query: error: .*t\.db has changes in .*t\.db-wal that cannot be read here: .*not writable for this user; copy .*t\.db and .*t\.db-wal together to a writable folder/);
  const j = asNobody(['--db', walOnly, 'status', '--format', 'json']);
  assert.equal(JSON.parse(j.stdout).error.code, 'ERR_TC_WAL_UNREADABLE');
  assert.equal(snapshot(root), before, 'nothing was written beside the databases');
});

test('a database on read-only media (a read-only bind mount) is read, by root too', (t) => {
  if (!needRoot(t)) return;
  const src = openTmp();
  copyFileSync(db, path.join(src, 't.db'));
  const mnt = openTmp();
  const want = JSON.stringify(topJson((a) => query(a), db));
  // In a mount namespace of its own, so the mount ends with the command.
  const script = `mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && "$3" "$4" --db "$2/t.db" top --all --limit 0 --format json`;
  const r = spawnSync('unshare', ['-m', 'sh', '-c', script, 'sh', src, mnt, process.execPath, QUERY], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.stringify(JSON.parse(r.stdout)), want);
  assert.deepEqual(readdirSync(src), ['t.db'], 'nothing made beside it');
});

test('a file that cannot be read says why: permission denied with owner and mode, a directory, a folder on the way', (t) => {
  if (!needRoot(t)) return;
  const d = openTmp();
  const secret = path.join(d, 'secret.db');
  copyFileSync(db, secret);
  chmodSync(secret, 0o600);
  const folder = path.join(d, 'folder.db');
  mkdirSync(folder);
  const closed = path.join(d, 'closed');
  mkdirSync(closed, { mode: 0o700 });
  copyFileSync(db, path.join(closed, 't.db'));
  for (const [file, re] of [
    [secret, /^tc-query: error: cannot open database .*secret\.db: permission denied \(owner root, mode 0600\)/],
    [folder, /^tc-query: error: .*folder\.db is a directory, not a database file/],
    [path.join(closed, 't.db'), /^tc-query: error: cannot open database .*t\.db: permission denied on the folder .*closed \(owner root, mode 0700\)/],
  ] as const) {
    for (const cmd of [['top', '--all'], ['status'], ['sql', 'select 1'], ['copy', '--out', path.join(d, 'never.db')]]) {
      const r = asNobody(['--db', file, ...cmd]);
      assert.equal(r.status, 1, `${cmd[0]} ${file}`);
      assert.match(r.stderr, re, `${cmd[0]} ${file}`);
      assert.doesNotMatch(r.stderr, /not a SQLite database/);
    }
  }
});

test('copy: a one-file snapshot of what was committed, taken while a writer holds the file, that opens in a read-only folder', (t) => {
  const src = path.join(openTmp(), 'src.db');
  assert.equal(recorder(['record', '--pcap', P('zeek_smtp.pcap'), '--db', src, '--flows', '--quiet']).status, 0);
  const outDir = openTmp();
  const out = path.join(outDir, 'copy.db');
  let want: unknown;
  recordIntoWal(src, P('zeek_wikipedia.pcap'), () => {
    want = topJson((a) => query(a), src);
    // A writer in the middle of a transaction: what it has not committed is not in the copy.
    const w = new Database(src);
    try {
      w.exec('begin immediate');
      w.prepare("insert into events (at_ms, kind, detail) values (0, 'uncommitted', 'must not be copied')").run();
      const r = query(['--db', src, 'copy', '--out', out]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /^tc-query: copied .*src\.db to .*copy\.db \(\d+ intervals, .+ to .+, .+; a single file, no -wal needed\)\n$/);
      w.exec('rollback');
    } finally {
      w.close();
    }
  });
  assert.deepEqual(topJson((a) => query(a), out), want);
  const c = new Database(out, { readonly: true });
  assert.equal(c.prepare("select count(*) from events where kind = 'uncommitted'").pluck().get(), 0);
  const s = new Database(src, { readonly: true });
  assert.equal(c.prepare('select count(*) from batches').pluck().get(), s.prepare('select count(*) from batches').pluck().get());
  s.close();
  c.close();
  const head = readFileSync(out).subarray(0, 20);
  assert.deepEqual([head[18], head[19]], [1, 1], 'a rollback-journal file: no -wal, no -shm needed');
  assert.ok(!existsSync(`${out}-wal`) && !existsSync(`${out}-shm`));

  // An existing output is refused, then replaced with --force (with the old file's -wal gone).
  const again = query(['--db', src, 'copy', '--out', out]);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already exists; pass --force/);
  writeFileSync(`${out}-wal`, 'stale');
  assert.equal(query(['--db', src, 'copy', '--out', out, '--force']).status, 0);
  assert.ok(!existsSync(`${out}-wal`));
  assert.equal(query(['--db', src, 'copy', '--out', src, '--force']).status, 1, 'never over the database itself');

  if (process.getuid?.() !== 0) return;
  const ro = openTmp();
  copyFileSync(out, path.join(ro, 'copy.db'));
  chmodSync(ro, 0o555);
  assert.deepEqual(topJson(asNobody, path.join(ro, 'copy.db')), want);
  assert.deepEqual(readdirSync(ro), ['copy.db'], 'read in place: no -wal or -shm made');
});

test('copy while a replay writes: every copied interval is whole and the rollups agree with it', async (t) => {
  const d = openTmp();
  const cap = path.join(d, 'big.pcap');
  generate(cap, { packets: 400_000, hosts: 300, flows: 2_000, seconds: 4_000 });
  const src = path.join(d, 'src.db');
  const child = spawn(process.execPath, [RECORDER, 'record', '--pcap', cap, '--db', src, '--flows', '--quiet', '--interval-secs', '1'], { stdio: 'ignore' });
  const out = path.join(d, 'copy.db');
  try {
    for (let i = 0; i < 400 && !existsSync(`${src}-wal`); i++) await sleep(25);
    const r = query(['--db', src, 'copy', '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    const c = new Database(out, { readonly: true });
    try {
      assert.equal(c.pragma('integrity_check', { simple: true }), 'ok');
      const torn = c
        .prepare(
          `select count(*) from batches b where b.ip_bytes != coalesce((select sum(tx_bytes) from ip_deltas d where d.batch_id = b.id), 0)
             or b.ip_bytes != coalesce((select sum(bytes) from flow_deltas d where d.batch_id = b.id), 0)`,
        )
        .pluck()
        .get();
      assert.equal(torn, 0, 'no interval is partly copied');
      const raw = c.prepare('select coalesce(sum(tx_bytes + rx_bytes), 0) from ip_deltas').pluck().get() as number;
      const top = topJson((a) => query(a), out) as { bytes: number }[];
      assert.equal(top.reduce((s, x) => s + x.bytes, 0), raw, 'rollups and raw rows of the copy agree');
    } finally {
      c.close();
    }
    assert.equal(await exited(child, 120_000), 0);
    const copied = new Database(out, { readonly: true });
    const done = new Database(src, { readonly: true });
    t.diagnostic(`copied ${copied.prepare('select count(*) from batches').pluck().get()} of the replay's ${done.prepare('select count(*) from batches').pluck().get()} intervals`);
    copied.close();
    done.close();
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
