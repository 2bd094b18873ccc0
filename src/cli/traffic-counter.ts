#!/usr/bin/env node
/** `traffic-counter`: the recorder. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { rebuild, record } from '../recorder/record';
import { DEFAULT_RETENTION, DEFAULT_RETENTION_TEXT, parseRetention, type Retention } from '../recorder/upkeep/retention';
import { DEFAULT_QUEUE_MAX, DEFAULT_QUEUE_MAX_BYTES } from '../recorder/write/sink';
import { quietOnClosedOutput } from '../recorder/observe/log';
import { defaultDb, intIn, nodeId, packageVersion, usageErrors } from './options';
import { nearest } from '../nearest';
import { accessProblem } from '../db-identity';
import { TcError } from '../errors';
import { OPTION_DEFAULTS as D, REORDER_WINDOW_MS } from '../native';
import { DEFAULT_MAX_DB_SIZE_TEXT, parseSize, SIZE_FORMS } from '../recorder/budget/disk';
import { describeBudget, describeKernelMaps, memoryBudget } from '../recorder/budget/memory';

quietOnClosedOutput();

const program = new Command('traffic-counter')
  .description('Count bytes and packets per IP address and per flow into one SQLite file')
  .version(packageVersion());
const retention = (v: string) => {
  try {
    return parseRetention(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};

/** A retention option whose help shows its default as a person writes it (`48h`, `forever`). */
function retainOption(flag: string, help: string, key: keyof Retention): Option {
  return new Option(flag, help).argParser(retention).default(DEFAULT_RETENTION[key], DEFAULT_RETENTION_TEXT[key]);
}

/**
 * Options whose value is parsed in the action rather than by commander, so that a wrong one is
 * an ERR_TC_BAD_OPTION error like the recorder's others; --config checks them with the same rule.
 */
const PARSED_IN_ACTION: Record<string, (v: string) => unknown> = { maxDbSize: parseSize };

/**
 * Applies a JSON config file: keys are the long option names (`"iface": "eth0"`,
 * `"retain-raw-ip": "48h"`, `"no-ebpf": true`); options given on the command line win. A value
 * goes through the option's own parser, so it meets the rule and the message of the command
 * line, prefixed with the file and the key; an unknown key names the nearest known ones.
 */
function applyConfig(cmd: Command, file: string): void {
  const fail = (why: string) => new TcError(`--config ${file}: ${why}`, 'ERR_TC_CONFIG');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const why = accessProblem(file) ?? (err as Error).message;
    const where = { 'does not exist': 'no such file', 'is a directory': 'a directory' }[why];
    if (where) throw fail(`cannot read it (${where}); check the path, or drop --config (${CONFIG_EXAMPLE} is an example)`);
    throw fail(`cannot read it: ${why}; make it readable for this user (chmod a+r ${file}), or run as one who can read it`);
  }
  let cfg: unknown;
  try {
    cfg = JSON.parse(text);
  } catch (err) {
    throw fail(`not JSON (${(err as Error).message.replace(/\s+/g, ' ')}); write one JSON object of long option names, e.g. {"iface": "eth0", "flows": true}`);
  }
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) {
    throw fail('expected a JSON object of long option names, e.g. {"iface": "eth0", "flows": true}');
  }
  const keys = cmd.options.filter((o) => !o.hidden && o.long && o.long !== '--config').map((o) => o.long!.slice(2));
  for (const [k, v] of Object.entries(cfg)) {
    const bad = (why: string) => fail(`${JSON.stringify(k)}: ${why}`);
    if (k === 'config') throw bad('a config file cannot name another one; give its options here instead');
    const opt = cmd.options.find((o) => o.long === `--${k}` || o.attributeName() === k);
    if (!opt) {
      const near = nearest(k, keys);
      throw bad(`unknown option${near.length ? `; did you mean ${near.map((n) => JSON.stringify(n)).join(' or ')}?` : ''} (the keys are the long options of \`traffic-counter record --help\`)`);
    }
    const name = opt.attributeName();
    if (cmd.getOptionValueSource(name) === 'cli' || cmd.getOptionValueSource(name) === 'env') continue;
    let value: unknown;
    if (opt.isBoolean() || opt.negate) {
      if (typeof v !== 'boolean') throw bad(`expected true or false, got ${JSON.stringify(v)}`);
      // "no-ebpf": true sets ebpf to false; "ebpf": false does too.
      value = opt.negate && k === opt.long!.slice(2) ? !v : v;
    } else if (opt.variadic) {
      const list = Array.isArray(v) ? v : [v];
      if (!list.every((x) => typeof x === 'string')) throw bad(`expected a list of strings, got ${JSON.stringify(v)}`);
      value = list;
    } else {
      if (typeof v !== 'string' && typeof v !== 'number') throw bad(`expected a string or a number, got ${JSON.stringify(v)}`);
      try {
        value = opt.parseArg ? opt.parseArg(String(v), undefined) : String(v);
        PARSED_IN_ACTION[name]?.(String(v));
      } catch (err) {
        // The rule's own words, without the flag they name on the command line.
        throw bad((err as Error).message.replace(new RegExp(`^${opt.long} `), ''));
      }
    }
    cmd.setOptionValueWithSource(name, value, 'config');
  }
}

/** The example config file shipped beside the service unit. */
const CONFIG_EXAMPLE = 'contrib/traffic-counter.json';

/**
 * What the recorder may use in memory at most with the defaults (docs/recording.md, "Memory"),
 * from the one function the start line uses too.
 */
function memoryHelp(): string {
  const defaults = { intervalSecs: D.intervalMs / 1000, maxKeys: D.maxKeys, maxNames: D.maxNames, flows: false, blockSize: D.blockSize, blockCount: D.blockCount, frameSize: D.frameSize };
  const line = (flows: boolean, live: boolean) => describeBudget(memoryBudget({ ...defaults, flows }, live));
  const kline = (flows: boolean) => `${describeBudget(memoryBudget({ ...defaults, flows, countIn: 'kernel' }, true))} + ${describeKernelMaps({ maxKeys: D.maxKeys, flows })}`;
  return [
    '',
    'Memory (a bound, computed from the options: the start line states it for the options given):',
    `  live, defaults (${D.blockSize / 2 ** 20} MiB x ${D.blockCount} ring blocks per worker, one worker per CPU): ${line(false, true)}`,
    `  live, defaults and --flows: ${line(true, true)}`,
    `  replay, defaults and --flows: ${line(true, false)}`,
    `  live, --count-in kernel (one counting socket, one names socket), defaults: ${kline(false)}`,
    `  live, --count-in kernel, defaults and --flows: ${kline(true)}`,
  ].join('\n');
}

/** Options that set up live capture: a replay (--pcap) refuses them instead of ignoring them. */
const LIVE_ONLY = ['iface', 'workers', 'blockSize', 'blockCount', 'frameSize', 'fanoutGroup', 'ebpf', 'snaplen', 'user', 'retainRawIp', 'retainRawFlows', 'retainMinutes', 'retainHours', 'retainDays'];

function refuseLiveOnlyWithPcap(cmd: Command): void {
  const given = cmd.options.filter((o) => LIVE_ONLY.includes(o.attributeName()) && ['cli', 'config'].includes(cmd.getOptionValueSource(o.attributeName()) ?? ''));
  if (given.length === 0) return;
  const names = given.map((o) => `${o.long}${cmd.getOptionValueSource(o.attributeName()) === 'config' ? ' (from --config)' : ''}`);
  throw new InvalidArgumentError(
    `--pcap replays capture files; ${names.join(', ')} ${given.length === 1 ? 'sets' : 'set'} up live capture${given.some((o) => o.attributeName().startsWith('retain')) ? ' (replays never prune)' : ''}: drop ${given.length === 1 ? 'it' : 'them'}, or drop --pcap to record live`,
  );
}

program
  .command('record')
  .description('record live traffic (AF_PACKET + eBPF) or replay pcap/pcapng files into the database')
  .option('--config <file>', 'JSON file of options (long names as keys); the command line wins')
  .option('--db <file>', 'database file (env TC_DB)', defaultDb())
  .option('-i, --iface <name>', 'interface to capture on (default: the interface of the default route)')
  .option('--pcap <files...>', `replay these pcap/pcapng files instead of capturing, each as its own session (frames up to ${REORDER_WINDOW_MS / 1000} s out of order are counted in their own interval; a capture already in the file is skipped)`)
  .option('--replace', 'with --pcap: record a capture already in the file again with the options given now, in place of its earlier session (in one transaction)', false)
  .option('--workers <n>', 'capture workers, one ring each (default: number of CPUs; counting in the kernel uses one socket whatever this says)', intIn(1, D.maxWorkers))
  .option('--block-size <bytes>', 'TPACKET_V3 block size (power of two, multiple of the page size)', intIn(1, 2 ** 30), D.blockSize)
  .option('--block-count <n>', 'blocks per ring', intIn(1, 1 << 20), D.blockCount)
  .option('--frame-size <bytes>', 'TPACKET_V3 frame size', intIn(1, 2 ** 30), D.frameSize)
  .option('--fanout-group <id>', 'PACKET_FANOUT group id of the ring sockets (default: derived from the process id; counting in the kernel joins none)', intIn(0, D.maxFanoutGroup))
  .option('--interval-secs <n>', 'interval length in seconds (aligned to UTC epoch multiples)', intIn(D.minIntervalMs / 1000, D.maxIntervalMs / 1000), D.intervalMs / 1000)
  .addOption(new Option('--report-interval-secs <n>', 'alias of --interval-secs').argParser(intIn(D.minIntervalMs / 1000, D.maxIntervalMs / 1000)).hideHelp())
  .option('--max-keys <n>', 'most addresses / flows per interval and table before folding into an overflow row', intIn(1, 100_000_000), D.maxKeys)
  .option('--max-names <n>', 'most new (address, name) pairs per interval read from DNS answers and TLS server names, the rest counted as overflowed (0: names off, nothing read past the headers)', intIn(0, D.maxNamesLimit), D.maxNames)
  .option('--flows', 'also count per unidirectional 5-tuple flow', false)
  .addOption(
    new Option(
      '--count-in <where>',
      'where frames are counted: kernel (live: the counting program attached to one packet socket counts each frame where it arrives and copies none, but DNS answers and TLS ClientHellos, which a second socket passes to userspace for names only, and frames it cannot count exactly, which userspace counts; --workers is then moot; its maps take kernel memory, below; with --pcap every Ethernet frame runs through it with BPF_PROG_TEST_RUN, to check it against userspace), ring (every frame copied to userspace and counted there), auto (live: kernel where the kernel loads the program and the interface is Ethernet or loopback, else ring, the start line says which; replays: ring)',
    )
      .choices(['kernel', 'ring', 'auto'])
      .default('auto'),
  )
  .option('--ignore-file <file>', 'CIDRs whose traffic (as source or destination) is not counted')
  .option('--accept-source-file <file>', 'count only frames whose source is in these CIDRs')
  .option('--local-networks <file>', "this host's networks, one CIDR a line (# comments), for tc-query --side local|remote: in place of the capture interface's addresses and prefixes, which live capture records by default (and their changes); a replay has local networks only with it; SIGHUP re-reads it")
  .option('--no-ebpf', 'do not load the eBPF socket filter (rules are applied in userspace; frames are counted in the ring)')
  .option('--snaplen <bytes>', 'bytes of each frame the eBPF filter keeps', intIn(64, 65535), D.snaplen)
  .addOption(retainOption('--retain-raw-ip <period>', 'live: keep per-interval per-IP rows this long', 'rawIpMs'))
  .addOption(retainOption('--retain-raw-flows <period>', 'live: keep per-interval per-flow rows this long', 'rawFlowMs'))
  .addOption(retainOption('--retain-minutes <period>', 'live: keep minute rollups this long', 'minutesMs'))
  .addOption(retainOption('--retain-hours <period>', 'live: keep hour rollups this long', 'hoursMs'))
  .addOption(retainOption('--retain-days <period>', 'live: keep day rollups this long ("forever")', 'daysMs'))
  .addOption(new Option('--max-db-size <size>', `most bytes the database file may take: old detail is shed, oldest first, and a flood's interval keeps its heaviest keys (${SIZE_FORMS}); the WAL beside it has its own bound (default: ${DEFAULT_MAX_DB_SIZE_TEXT})`))
  .option('--queue-max <batches>', 'batches kept in memory while the database cannot be written (and, again, waiting for the writer\'s thread)', intIn(1, 100_000), DEFAULT_QUEUE_MAX)
  .option('--queue-max-mib <MiB>', 'MiB of batch data kept in memory while the database cannot be written (and, again, waiting for the writer\'s thread)', intIn(1, 1_048_576), DEFAULT_QUEUE_MAX_BYTES / 2 ** 20)
  .addOption(new Option('--log-format <fmt>', 'log lines as text or JSON objects').choices(['text', 'json']).default('text'))
  .option('--metrics-listen <addr:port>', 'serve Prometheus metrics on /metrics (e.g. 127.0.0.1:9464)')
  .option('--user <name>', 'after setting up capture, drop root and all capabilities and run as this user')
  .option('--node-id <id>', 'node id of a new database file (default: this host\'s name); a file keeps the one it was created with', nodeId)
  .option('-q, --quiet', 'no per-interval lines', false)
  .option('--progress', 'draw the progress bar while replaying even when stderr is not a terminal')
  .option('--no-progress', 'no progress bar while replaying')
  .addHelpText('after', memoryHelp)
  .action(async (opts, cmd: Command) => {
    if (opts.config) {
      applyConfig(cmd, opts.config);
      opts = cmd.opts();
    }
    if (opts.pcap) refuseLiveOnlyWithPcap(cmd);
    await record({
      db: opts.db,
      iface: opts.iface,
      pcap: opts.pcap,
      workers: opts.workers,
      blockSize: opts.blockSize,
      blockCount: opts.blockCount,
      frameSize: opts.frameSize,
      fanoutGroup: opts.fanoutGroup,
      intervalSecs: opts.reportIntervalSecs ?? opts.intervalSecs,
      maxKeys: opts.maxKeys,
      maxNames: opts.maxNames,
      flows: opts.flows,
      countIn: opts.countIn,
      ignoreFile: opts.ignoreFile,
      acceptSourceFile: opts.acceptSourceFile,
      localNetworks: opts.localNetworks,
      ebpf: opts.ebpf,
      snaplen: opts.snaplen,
      quiet: opts.quiet,
      progress: opts.progress,
      replace: opts.replace,
      retention: {
        rawIpMs: opts.retainRawIp,
        rawFlowMs: opts.retainRawFlows,
        minutesMs: opts.retainMinutes,
        hoursMs: opts.retainHours,
        daysMs: opts.retainDays,
      },
      queueMax: opts.queueMax,
      queueMaxMib: opts.queueMaxMib,
      logFormat: opts.logFormat,
      metricsListen: opts.metricsListen,
      user: opts.user,
      nodeId: opts.nodeId,
      // Parsed here, not by commander, so that a wrong size is an ERR_TC_BAD_OPTION error like the recorder's others.
      maxDbSize: opts.maxDbSize === undefined ? undefined : (PARSED_IN_ACTION.maxDbSize(String(opts.maxDbSize)) as number),
    });
  });

program
  .command('rebuild')
  .description('recompute every rollup (minute, hour, day) from the event log')
  .option('--db <file>', 'database file (env TC_DB)', defaultDb())
  .action(async (opts) => {
    const r = await rebuild(opts.db);
    process.stderr.write(`traffic-counter: rebuilt ${r.buckets} rollup buckets in ${opts.db}\n`);
  });

/** `--log-format json` given on the command line: an error is then one JSON document too. */
const jsonLog = process.argv.some((a, i) => a === '--log-format=json' || (a === '--log-format' && process.argv[i + 1] === 'json'));

usageErrors(program, 'traffic-counter', jsonLog, true);
for (const c of program.commands) usageErrors(c, 'traffic-counter', jsonLog, true);

program.parseAsync(process.argv).catch((err: Error & { code?: string }) => {
  // A usage error found in the action (InvalidArgumentError) is one as those commander finds.
  const code = err.code && err.code.startsWith('ERR_TC') ? err.code : err.code?.startsWith('commander.') ? 'ERR_TC_USAGE' : undefined;
  if (jsonLog) process.stdout.write(`${JSON.stringify({ error: { message: err.message, code: code ?? 'ERR_TC_INTERNAL' } })}\n`);
  else process.stderr.write(`traffic-counter: error: ${err.message}${code ? ` [${code}]` : ''}\n`);
  process.exitCode = 1;
});
