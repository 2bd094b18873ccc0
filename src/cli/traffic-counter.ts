#!/usr/bin/env node
/** `traffic-counter`: the recorder. */
import { Command, Option } from 'commander';
import { record } from '../recorder/record';
import { defaultDb, intIn } from './options';

const program = new Command('traffic-counter')
  .description('Count bytes and packets per IP address and per flow into one SQLite file')
  .showHelpAfterError();

program
  .command('record')
  .description('record live traffic (AF_PACKET + eBPF) or replay pcap/pcapng files into the database')
  .option('--db <file>', 'database file (env TC_DB)', defaultDb())
  .option('-i, --iface <name>', 'interface to capture on (default: the interface of the default route)')
  .option('--pcap <files...>', 'replay these pcap/pcapng files instead of capturing')
  .option('--workers <n>', 'capture workers, one ring each (default: number of CPUs)', intIn(1, 64))
  .option('--block-size <bytes>', 'TPACKET_V3 block size (power of two, multiple of the page size)', intIn(1, 2 ** 30), 1 << 20)
  .option('--block-count <n>', 'blocks per ring', intIn(1, 1 << 20), 64)
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
  .option('-q, --quiet', 'no per-interval lines', false)
  .option('--no-progress', 'no progress bar while replaying')
  .action(async (opts) => {
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
      progress: opts.progress === false ? false : undefined,
    });
  });

program.parseAsync(process.argv).catch((err: Error & { code?: string }) => {
  process.stderr.write(`traffic-counter: error: ${err.message}${err.code && err.code.startsWith('ERR_TC') ? ` [${err.code}]` : ''}\n`);
  process.exitCode = 1;
});
