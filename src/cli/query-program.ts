/**
 * The commands of `tc-query` (questions to a traffic-counter database, read-only, answered
 * through DuckDB): one commander program, built by buildProgram(). The CLI (tc-query.ts) runs
 * it on process.argv and prints its answers; `tc-query serve` (src/query/serve/) runs a fresh one
 * per API request on the request's parameters and sends the same answer: one parser, one set of
 * defaults and checks, one query path behind both.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { TopBy } from '../query/commands/top';
import type * as TopMod from '../query/commands/top';
import type * as SeriesMod from '../query/commands/series';
import type * as StatusMod from '../query/commands/status';
import type * as AdhocMod from '../query/commands/adhoc';
import type * as PrefetchMod from '../query/prefetch';
import type * as CopyMod from '../query/commands/copy';
import type * as NamesMod from '../query/commands/names';
import type * as ChartMod from '../query/commands/chart';

// Command modules load on use: DuckDB's native module alone is slow to load.
/* eslint-disable @typescript-eslint/no-require-imports */
const lazy = {
  top: () => require('../query/commands/top') as typeof TopMod,
  series: () => require('../query/commands/series') as typeof SeriesMod,
  status: () => require('../query/commands/status') as typeof StatusMod,
  adhoc: () => require('../query/commands/adhoc') as typeof AdhocMod,
  prefetch: () => require('../query/prefetch') as typeof PrefetchMod,
  copy: () => require('../query/commands/copy') as typeof CopyMod,
  names: () => require('../query/commands/names') as typeof NamesMod,
  chart: () => require('../query/commands/chart') as typeof ChartMod,
};
import { makeWindow, MAX_CHART_PX, parseStep, SERIES_STEPS } from '../query/window';
import { counted, type Answer, type Format } from '../query/output';
import { parseCidrOption, parseIpOption, parseProto, type Filters } from '../query/filters';
import { checkTz, formatTime } from '../query/time';
import { bytes } from '../units';
import { defaultDb, intIn } from './options';
import { KEY_BYS, type KeySources } from '../query/keys';
import { LABELS_ENV, readLabels } from '../query/labels';
import { ASN_ENV, readAsn } from '../query/asn';
import { SIDES, type Side } from '../query/local';
import { parseNamePattern } from '../query/names';
import * as path from 'node:path';

const { version } = require('../../../package.json') as { version: string };

const formatOption = () => new Option('--format <fmt>', 'output format').choices(['table', 'json', 'csv']).default('table');

const tzParser = (v: string) => {
  try {
    return checkTz(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};

/** The window of a command whose default is the whole file: `--until` alone reads from its start. */
const wholeFileWindow = (opts: { since?: string; until?: string; all?: boolean }) => (opts.since || opts.until ? makeWindow(opts, Date.now(), '0') : makeWindow({ all: true }));

function common(cmd: Command, defaultSince: string): Command {
  return cmd
    .option('--since <time>', `start: a duration before now (30s, 15m, 1h, 7d), an ISO-8601 time or epoch seconds (default ${defaultSince})`)
    .option('--until <time>', 'end: same forms as --since (default now)')
    .option('--all', 'the whole file', false)
    .option('--utc', 'show times in UTC (the default)')
    .option('--tz <zone>', 'show times in this time zone (storage stays UTC)', tzParser)
    .addOption(formatOption());
}

function filterOptions(cmd: Command): Command {
  return cmd
    .option('--ip <addr>', 'only this address', parseIpOption)
    .option('--cidr <net>', 'only addresses in this network', parseCidrOption)
    .option('--label <name>', 'only addresses with this label (of --labels); a flow counts when either end has it')
    .option('--proto <p>', 'only this IP protocol (tcp, udp, icmp, ... or a number; uses flow rows)', parseProto)
    .option('--port <n>', 'only this source or destination port (uses flow rows)', intIn(0, 65535));
}

const sideOption = (help: string) => new Option('--side <side>', help).choices([...SIDES]);

function filtersOf(opts: Filters): Filters {
  if (opts.ip && opts.cidr) throw new InvalidArgumentError('give --ip or --cidr, not both');
  return { ip: opts.ip, cidr: opts.cidr, label: opts.label, proto: opts.proto, port: opts.port };
}

/**
 * The label file, ASN table and --by net prefixes of a command: the label file read now (small;
 * a filter needs it), the ASN table when first asked for (large; top parses it while DuckDB
 * starts). Only the commands that use them read them.
 */
function keySources(cmd: Command, opts: { v4Prefix?: number; v6Prefix?: number }): KeySources {
  const g = cmd.parent!.opts() as { labels?: string; asn?: string[] };
  const asnFiles = g.asn ?? (process.env[ASN_ENV] ? process.env[ASN_ENV].split(path.delimiter).filter((f) => f.length > 0) : []);
  let table: ReturnType<typeof readAsn> | undefined;
  return {
    labels: g.labels ? readLabels(g.labels) : undefined,
    asn: asnFiles.length > 0 ? () => (table ??= readAsn(asnFiles)) : undefined,
    v4Prefix: opts.v4Prefix ?? 24,
    v6Prefix: opts.v6Prefix ?? 64,
  };
}

const dbOf = (cmd: Command) => cmd.parent!.opts().db as string;

const tzOf = (opts: { tz?: string; utc?: boolean }) => (opts.utc ? undefined : opts.tz);

const TOP_BY_HELP = "top talkers: --by ip (tx + rx), src (as sender), dst (as receiver), flow, or the tx + rx of each label, AS, network or name (read from DNS answers and TLS server names); largest bytes first. Address rows show the name seen last up to the window's end, flow rows the names of both ends";
const TOP_SIDE_HELP = "only the addresses of this side: local (in this host's networks, as the recorder stored them) or remote (its peers); --by flow: flows sent from that side";
const topByOption = () => new Option('--by <what>', 'group by').choices(['ip', 'src', 'dst', 'flow', ...KEY_BYS]).default('ip');

/** A prefix is read by --by net only: given with another grouping it would be ignored silently. */
function checkPrefixes(opts: { by: string }, cmd: Command): void {
  for (const [key, flag] of [['v4Prefix', '--v4-prefix'], ['v6Prefix', '--v6-prefix']] as const) {
    if (opts.by !== 'net' && cmd.getOptionValueSource(key) === 'cli') throw new InvalidArgumentError(`${flag} groups addresses into networks for --by net only (this is --by ${opts.by}); add --by net, or leave ${flag} out`);
  }
}

/** Options of `chart` that only one --what reads: given with the other they would be ignored silently. */
const CHART_ONLY: Record<'series' | 'top', [string, string][]> = {
  series: [['step', '--step']],
  top: [['by', '--by'], ['limit', '--limit'], ['v4Prefix', '--v4-prefix'], ['v6Prefix', '--v6-prefix'], ['side', '--side'], ['proto', '--proto'], ['port', '--port']],
};

/** Where a program's answers go: printed by the CLI, sent by the server. */
export interface ProgramIO {
  /** The --format of the command being run (set once its options are parsed): errors are written in it. */
  format: Format;
  answer(a: Answer): void;
}

/**
 * The tc-query program: every command, writing its answer to `io`. Errors (commander's usage
 * errors included) are thrown, never printed: the caller writes them (errorOf).
 */
export function buildProgram(io: ProgramIO): Command {
  const program = new Command('tc-query')
    .description('Query a traffic-counter database (opened read-only, never changed)')
    .version(version)
    .option('--db <file>', 'database file (env TC_DB)', defaultDb())
    .option('--labels <file>', `label file: lines "CIDR label", the longest prefix wins (env ${LABELS_ENV}); for --by label, --label and a label column`, process.env[LABELS_ENV] || undefined)
    .option('--asn <file>', `ASN table in the ip2asn TSV layout (iptoasn.com), plain or .gz; twice for separate IPv4 and IPv6 files (env ${ASN_ENV}, files separated by "${path.delimiter}")`, (v: string, prev?: string[]) => [...(prev ?? []), v]);

  // Set before the commands are added, so every command inherits them: every error, parse errors
  // included, is printed once by fail() below (one line, or one JSON document in json mode).
  program.exitOverride();
  program.configureOutput({ outputError: () => undefined });

  filterOptions(
    common(
      program
        .command('top')
        .description(TOP_BY_HELP)
        .addOption(topByOption()),
      '1h',
    ),
  )
    .option('--limit <n>', 'rows to show (0 = every row)', intIn(0, 1e9), 20)
    .option('--v4-prefix <n>', '--by net: IPv4 prefix length', intIn(0, 32), 24)
    .option('--v6-prefix <n>', '--by net: IPv6 prefix length', intIn(0, 128), 64)
    .addOption(sideOption(TOP_SIDE_HELP))
    .action(async (opts, cmd: Command) => {
      io.format = opts.format;
      checkPrefixes(opts, cmd);
      const window = makeWindow(opts);
      const filters = filtersOf(opts);
      const keys = keySources(cmd, opts);
      // Plan the window and start reading half of it on a worker before DuckDB loads here.
      const prefetched = lazy.prefetch().readAheadTop(dbOf(cmd), { by: opts.by, window, filters, labels: keys.labels, side: opts.side as Side | undefined, tz: tzOf(opts) });
      const { top } = lazy.top();
      io.answer(await top({ db: dbOf(cmd), by: opts.by as TopBy, window, limit: opts.limit, format: opts.format, filters, tz: tzOf(opts), prefetched, keys, side: opts.side as Side | undefined }));
    });

  common(
    program
      .command('flows')
      .description('the top flows to and from an address (--ip), or of a label\'s addresses (--label), or both: the flows of the address with the label at either end; rows show the names of both ends (json and csv also name: the other end\'s)')
      .option('--ip <addr>', 'the address', parseIpOption)
      .option('--label <name>', 'flows with an address of this label (of --labels) at either end'),
    '1h',
  )
    .option('--limit <n>', 'rows to show (0 = every row)', intIn(0, 1e9), 20)
    .action(async (opts, cmd: Command) => {
      io.format = opts.format;
      if (opts.ip === undefined && opts.label === undefined) throw new InvalidArgumentError('flows needs --ip ADDR or --label NAME (or both)');
      const window = makeWindow(opts);
      const keys = keySources(cmd, opts);
      const { top } = lazy.top();
      io.answer(await top({ db: dbOf(cmd), by: 'flow', window, limit: opts.limit, format: opts.format, filters: { ip: opts.ip, label: opts.label }, tz: tzOf(opts), keys }));
    });

  common(program.command('series').description('traffic per step: the total (each packet once), or of --ip / --cidr; with --tz, steps follow that zone\'s calendar'), '1h')
    .option('--ip <addr>', 'traffic of this address (tx + rx)', parseIpOption)
    .option('--cidr <net>', 'traffic of the addresses in this network', parseCidrOption)
    .option('--label <name>', 'traffic of the addresses with this label (of --labels; tx + rx, as --cidr)')
    // The default shown as a step (1m), not as the milliseconds it is held in.
    .addOption(new Option('--step <d>', `step (${SERIES_STEPS.join(', ')} or any whole number of seconds)`).argParser(parseStep).default(60_000, '1m'))
    .addOption(sideOption('also in_bytes / out_bytes: the bytes received and sent by this side\'s addresses (local: in this host\'s networks; remote: its peers), by the networks of each step'))
    .action(async (opts, cmd: Command) => {
      io.format = opts.format;
      const window = makeWindow(opts);
      const { series } = lazy.series();
      const filters = filtersOf(opts);
      const labels = filters.label !== undefined ? keySources(cmd, opts).labels : undefined;
      io.answer(await series({ db: dbOf(cmd), window, stepMs: opts.step as number, format: opts.format, filters, tz: tzOf(opts), labels, side: opts.side as Side | undefined }));
    });

  common(program.command('status').description('what the file covers and how complete it is: intervals, gaps, drops, overflow'), 'the whole file').action(async (opts, cmd: Command) => {
    io.format = opts.format;
    const window = wholeFileWindow(opts);
    const { status } = lazy.status();
    io.answer(await status({ db: dbOf(cmd), window, format: opts.format, tz: tzOf(opts) }));
  });

  const nameOption = (v: string) => {
    try {
      return parseNamePattern(v);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };

  common(
    program
      .command('names')
      .description('the names seen for an address (--ip), or the addresses seen for a name (--name; *.example.com: the names below it), read from DNS answers and TLS server names, with the first and last interval each was seen in')
      .option('--ip <addr>', 'every name seen for this address', parseIpOption)
      .option('--name <name>', 'every address seen for this name (*.example.com: for each name below example.com)', nameOption),
    'the whole file',
  ).action((opts, cmd: Command) => {
    io.format = opts.format;
    if ((opts.ip === undefined) === (opts.name === undefined)) {
      throw new InvalidArgumentError(opts.ip === undefined ? 'names needs --ip ADDR or --name NAME' : 'give --ip or --name, not both');
    }
    const window = wholeFileWindow(opts);
    io.answer(lazy.names().names({ db: dbOf(cmd), ip: opts.ip, name: opts.name, window, format: opts.format, tz: tzOf(opts) }));
  });

  common(
    program
      .command('sql')
      .description('ad hoc DuckDB SQL over the tables intervals, ip_deltas, flow_deltas, ip_1m, ip_1h, ip_1d, flow_1m, flow_1h, events, local_networks, names, and labels (ip, label) with --labels')
      .argument('<query>', 'a DuckDB SELECT statement'),
    'the whole file',
  ).action(async (query: string, opts, cmd: Command) => {
    io.format = opts.format;
    const window = wholeFileWindow(opts);
    const { adhocSql } = lazy.adhoc();
    // The label file is read only for a statement that may read the labels table.
    const labels = /\blabels\b/i.test(query) ? keySources(cmd, opts).labels : undefined;
    process.stdout.write(await adhocSql({ db: dbOf(cmd), window, sql: query, format: opts.format, labels }));
  });

  filterOptions(
    program
      .command('chart')
      .description('draw the answer of series (bytes/s; tx and rx of --ip, --cidr or --label) or, with --what top, of top (a bar per row) into an SVG or PNG file, with axes, units and the completeness line as its caption; the numbers are those of `series`/`top --format json`')
      .addOption(new Option('--what <chart>', 'series: bytes/s per step; top: the top talkers as bars (top\'s options)').choices(['series', 'top']).default('series'))
      .requiredOption('--out <file>', 'the chart: FILE.svg or FILE.png (the extension says which)')
      .option('--force', 'replace an existing --out file', false)
      .option('--since <time>', 'start: a duration before now (30s, 15m, 1h, 7d), an ISO-8601 time or epoch seconds (default 1h)')
      .option('--until <time>', 'end: same forms as --since (default now)')
      .option('--all', 'the whole file', false)
      .option('--utc', 'show times in UTC (the default)')
      .option('--tz <zone>', 'show times in this time zone; with --what series, steps follow its calendar', tzParser)
      .addOption(new Option('--format <fmt>', 'what to print about the file written: a line on stderr (text), or one JSON document on stdout').choices(['text', 'json']).default('text'))
      .option('--width <px>', 'width in pixels', intIn(320, MAX_CHART_PX), 800)
      .option('--height <px>', 'height in pixels (default: 400 for series, for top what its bars need)', intIn(200, MAX_CHART_PX))
      .option('--title <text>', 'the title (default: what is drawn)')
      .option('--step <d>', `--what series: step (${SERIES_STEPS.join(', ')} or any whole number of seconds; default: the first of them whose steps are 2 px wide, over years whole days; refused when its steps would be narrower than a pixel)`, parseStep)
      .addOption(topByOption().default('ip', 'ip; --what top'))
      .option('--limit <n>', '--what top: bars to draw', intIn(1, 1000), 20)
      .option('--v4-prefix <n>', '--what top --by net: IPv4 prefix length', intIn(0, 32), 24)
      .option('--v6-prefix <n>', '--what top --by net: IPv6 prefix length', intIn(0, 128), 64)
      .addOption(sideOption(`--what top: ${TOP_SIDE_HELP}`)),
  ).action(async (opts, cmd: Command) => {
    io.format = opts.format === 'json' ? 'json' : 'table';
    const what = opts.what as 'series' | 'top';
    const other = what === 'series' ? 'top' : 'series';
    for (const [key, flag] of CHART_ONLY[other]) {
      if (cmd.getOptionValueSource(key) === 'cli') throw new InvalidArgumentError(`${flag} is an option of --what ${other} (this is --what ${what}); add --what ${other}, or leave ${flag} out`);
    }
    checkPrefixes(opts, cmd);
    const window = makeWindow(opts);
    const filters = filtersOf(opts);
    const keys = keySources(cmd, opts);
    const { chart, chartJson, chartText } = lazy.chart();
    const { result: r, caption } = await chart({ db: dbOf(cmd), what, out: opts.out, force: opts.force, width: opts.width, height: opts.height, title: opts.title, window, filters, tz: tzOf(opts), stepMs: opts.step, labels: keys.labels, by: opts.by as TopBy, limit: opts.limit, keys, side: opts.side as Side | undefined });
    for (const n of r.notes) process.stderr.write(`tc-query: ${n}\n`);
    if (opts.format === 'json') process.stdout.write(chartJson(r));
    else process.stderr.write(`tc-query: ${chartText(r, caption, tzOf(opts))}\n`);
  });

  program
    .command('export')
    .description('write rows to parquet, csv or jsonl: one file, stdout, or a Hive-partitioned folder (node=.../date=...)')
    .option('--since <time>', 'start (default: the whole file)')
    .option('--until <time>', 'end (default now)')
    .option('--all', 'the whole file', false)
    .addOption(new Option('--what <rows>', 'per-IP or per-flow rows, or the names seen for addresses').choices(['ip', 'flow', 'names']).default('ip'))
    .addOption(new Option('--resolution <r>', 'interval rows or rollups (flows: raw, 1m, 1h)').choices(['raw', '1m', '1h', '1d']).default('raw'))
    .addOption(new Option('--format <fmt>', 'file format (default: from the --out extension .parquet, .csv, .jsonl or .ndjson; parquet for --partition)').choices(['parquet', 'csv', 'jsonl']))
    .requiredOption('--out <path>', 'output file, - for stdout (csv, jsonl), or a folder with --partition')
    .option('--partition', 'write a Hive-partitioned folder by node and date', false)
    .option('--force', "replace an existing --out file (with --partition: this database's node= folder in it)", false)
    .option('--label <name>', 'only rows of addresses with this label (of --labels); a flow row when either end has it')
    .action(async (opts, cmd: Command) => {
      const window = wholeFileWindow(opts);
      const { exportRows } = lazy.adhoc();
      const keys = keySources(cmd, opts);
      const r = await exportRows({ db: dbOf(cmd), window, what: opts.what, resolution: opts.resolution, format: opts.format, out: opts.out, partition: opts.partition, force: opts.force, label: opts.label, keys });
      const where = r.out === '-' ? 'stdout' : r.out;
      if (r.note) process.stderr.write(`tc-query: ${r.note}\n`);
      process.stderr.write(`tc-query: exported ${r.rows} row${r.rows === 1 ? '' : 's'} to ${where}${opts.partition ? ` (${counted(r.files, 'file')})` : ''}\n`);
    });

  program
    .command('copy')
    .description('write a consistent one-file snapshot of the database (no -wal; opens anywhere, read-only media too), also while the recorder writes')
    .requiredOption('--out <file>', 'the copy')
    .option('--force', 'replace an existing --out file', false)
    .action((opts, cmd: Command) => {
      const { copyDatabase } = lazy.copy();
      const r = copyDatabase({ db: dbOf(cmd), out: opts.out, force: opts.force });
      const span = r.firstMs === null ? 'no intervals' : `${counted(r.intervals, 'interval')}, ${formatTime(r.firstMs)} to ${formatTime(r.lastMs!)}`;
      process.stderr.write(`tc-query: copied ${dbOf(cmd)} to ${r.out} (${span}, ${bytes(r.bytes)}; a single file, no -wal needed)\n`);
    });

  return program;
}

/** A thrown error as the CLI's error document says it: usage errors are ERR_TC_USAGE. */
export function errorOf(err: unknown): { message: string; code: string; usage: boolean } {
  const e = err as Error & { code?: string };
  const usage = e instanceof InvalidArgumentError || (e?.code ?? '').startsWith('commander.') || e?.code === 'ERR_TC_USAGE';
  // One line: commander's own messages may add a second one ("(Did you mean --by?)").
  const message = (e?.message ?? String(err)).replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim().replace(/\.$/, '');
  return { message, code: usage ? 'ERR_TC_USAGE' : (e?.code ?? 'ERR_TC'), usage };
}
