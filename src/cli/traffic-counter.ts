#!/usr/bin/env node
/** `traffic-counter`: the recorder. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { rebuild, record } from '../recorder/record';
import { DEFAULT_RETENTION, parseRetention } from '../recorder/retention';
import { DEFAULT_QUEUE_MAX, DEFAULT_QUEUE_MAX_BYTES } from '../recorder/sink';
import { defaultDb, intIn } from './options';
import { REORDER_WINDOW_MS } from '../native';

const program = new Command('traffic-counter')
  .description('Count bytes and packets per IP address and per flow into one SQLite file')
  .showHelpAfterError();

const retention = (v: string) => {
  try {
    return parseRetention(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};

/**
 * Applies a JSON config file: keys are the long option names (`"iface": "eth0"`,
 * `"retain-raw-ip": "48h"`); options given on the command line win.
 */
function applyConfig(cmd: Command, file: string): void {
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`--config ${file}: ${(err as Error).message}`);
  }
  for (const [k, v] of Object.entries(cfg)) {
    const opt = cmd.options.find((o) => o.long === `--${k}` || o.attributeName() === k);
    if (!opt) throw new InvalidArgumentError(`--config ${file}: unknown option ${JSON.stringify(k)}`);
    const name = opt.attributeName();
    if (cmd.getOptionValueSource(name) === 'cli' || cmd.getOptionValueSource(name) === 'env') continue;
    let value: unknown = v;
    if (typeof v === 'string' && opt.parseArg) value = opt.parseArg(v, undefined);
    else if (typeof v === 'number' && opt.parseArg) value = opt.parseArg(String(v), undefined);
    cmd.setOptionValueWithSource(name, value, 'config');
  }
}

program
  .command('record')
  .description('record live traffic (AF_PACKET + eBPF) or replay pcap/pcapng files into the database')
  .option('--config <file>', 'JSON file of options (long names as keys); the command line wins')
  .option('--db <file>', 'database file (env TC_DB)', defaultDb())
  .option('-i, --iface <name>', 'interface to capture on (default: the interface of the default route)')
  .option('--pcap <files...>', `replay these pcap/pcapng files instead of capturing, each as its own session (frames up to ${REORDER_WINDOW_MS / 1000} s out of order are counted in their own interval; a capture already in the file is skipped)`)
  .option('--replace', 'with --pcap: record a capture already in the file again with the options given now, in place of its earlier session (in one transaction)', false)
  .option('--workers <n>', 'capture workers, one ring each (default: number of CPUs)', intIn(1, 64))
  .option('--block-size <bytes>', 'TPACKET_V3 block size (power of two, multiple of the page size)', intIn(1, 2 ** 30), 1 << 20)
  .option('--block-count <n>', 'blocks per ring', intIn(0, 1 << 20), 64)
  .option('--frame-size <bytes>', 'TPACKET_V3 frame size', intIn(1, 2 ** 30), 2048)
  .option('--fanout-group <id>', 'PACKET_FANOUT group id (default: derived from the process id)', intIn(0, 65535))
  .option('--interval-secs <n>', 'interval length in seconds (aligned to UTC epoch multiples)', intIn(1, 86400), 5)
  .addOption(new Option('--report-interval-secs <n>', 'alias of --interval-secs').argParser(intIn(1, 86400)).hideHelp())
  .option('--max-keys <n>', 'most addresses / flows per interval and table before folding into an overflow row', intIn(1, 100_000_000), 1_000_000)
  .option('--flows', 'also count per unidirectional 5-tuple flow', false)
  .option('--ignore-file <file>', 'CIDRs whose traffic (as source or destination) is not counted')
  .option('--accept-source-file <file>', 'count only frames whose source is in these CIDRs')
  .option('--no-ebpf', 'do not load the eBPF socket filter (rules are applied in userspace)')
  .option('--snaplen <bytes>', 'bytes of each frame the eBPF filter keeps', intIn(64, 65535), 128)
  .option('--retain-raw-ip <period>', 'keep per-interval per-IP rows this long', retention, DEFAULT_RETENTION.rawIpMs)
  .option('--retain-raw-flows <period>', 'keep per-interval per-flow rows this long', retention, DEFAULT_RETENTION.rawFlowMs)
  .option('--retain-minutes <period>', 'keep minute rollups this long', retention, DEFAULT_RETENTION.minutesMs)
  .option('--retain-hours <period>', 'keep hour rollups this long', retention, DEFAULT_RETENTION.hoursMs)
  .option('--retain-days <period>', 'keep day rollups this long ("forever")', retention, DEFAULT_RETENTION.daysMs)
  .option('--queue-max <batches>', 'batches kept in memory while the database cannot be written (and, again, waiting for the writer\'s thread)', intIn(1, 100_000), DEFAULT_QUEUE_MAX)
  .option('--queue-max-mib <MiB>', 'MiB of batch data kept in memory while the database cannot be written (and, again, waiting for the writer\'s thread)', intIn(1, 1_048_576), DEFAULT_QUEUE_MAX_BYTES / 2 ** 20)
  .addOption(new Option('--log-format <fmt>', 'log lines as text or JSON objects').choices(['text', 'json']).default('text'))
  .option('--metrics-listen <addr:port>', 'serve Prometheus metrics on /metrics (e.g. 127.0.0.1:9464)')
  .option('--user <name>', 'after setting up capture, drop root and all capabilities and run as this user')
  .option('-q, --quiet', 'no per-interval lines', false)
  .option('--progress', 'draw the progress bar while replaying even when stderr is not a terminal')
  .option('--no-progress', 'no progress bar while replaying')
  .action(async (opts, cmd: Command) => {
    if (opts.config) {
      applyConfig(cmd, opts.config);
      opts = cmd.opts();
    }
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
      flows: opts.flows,
      ignoreFile: opts.ignoreFile,
      acceptSourceFile: opts.acceptSourceFile,
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

program.parseAsync(process.argv).catch((err: Error & { code?: string }) => {
  process.stderr.write(`traffic-counter: error: ${err.message}${err.code && err.code.startsWith('ERR_TC') ? ` [${err.code}]` : ''}\n`);
  process.exitCode = 1;
});
