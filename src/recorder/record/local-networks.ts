/**
 * This host's own networks during a recording: the capture interface's addresses with their
 * prefixes (live; read at the start and again each interval, changes recorded with the time
 * they were seen), or the networks of `--local-networks FILE` instead (live and replay; SIGHUP
 * reads the file again). Stored per session in local_networks (write/local-networks.ts).
 *
 * The interface's addresses come from `ip -j addr show dev IF` (iproute2, netlink) rather than
 * os.networkInterfaces(): libuv's getifaddrs leaves out every interface that is not up with a
 * carrier, so a link that starts down or flaps would be recorded as its networks going away and
 * coming back, which is link state, not the addresses configured. `ip -j` lists the configured
 * addresses whatever the link state, for about 2 ms a call, run as a child process off this
 * thread. Reading netlink in this process would need the native addon or a native dependency.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import * as path from 'node:path';
import { formatAddr, parseAddr } from '../../addr';
import { readCidrFile } from '../../cidr-file';
import { networkKey, type LocalNetwork, type LocalNetworkChange } from '../write/local-networks';

export const LOCAL_NETWORKS_CODE = 'ERR_TC_LOCAL_NETWORKS';

/** The network of `addr` (4 or 16 bytes) at `prefix`, as bytes and CIDR text. */
function networkOf(addr: Uint8Array, prefix: number): { net: Uint8Array; network: string } {
  const net = Uint8Array.from(addr, (b, i) => b & (0xff << Math.max(0, Math.min(8, (i + 1) * 8 - prefix)) & 0xff));
  return { net, network: `${formatAddr(net)}/${prefix}` };
}

/** Reads a --local-networks file (one CIDR a line, src/cidr-file.ts); a network given twice counts once. */
export function readLocalNetworksFile(file: string): LocalNetwork[] {
  const lines = readCidrFile(file, {
    what: 'local networks file',
    remedy: 'give --local-networks FILE (one CIDR a line, e.g. "192.168.1.0/24" or "2001:db8:1::/48"; # starts a comment)',
    rest: 'none',
    form: 'each line is one CIDR (e.g. "192.168.1.0/24", "2001:db8:1::/48" or one address); # starts a comment',
    code: LOCAL_NETWORKS_CODE,
  });
  const seen = new Map<string, LocalNetwork>();
  for (const l of lines) {
    const { net, network } = networkOf(l.addr, l.prefix);
    if (!seen.has(network)) seen.set(network, { net, prefix: l.prefix, network, address: null, origin: 'file', source: path.resolve(file) });
  }
  return [...seen.values()];
}

interface IpAddrInfo {
  family?: string;
  local?: string;
  prefixlen?: number;
}

let ipPath: string | undefined;

/**
 * The `ip` program: on PATH, else where Debian installs it (/usr/sbin is on root's PATH, not
 * on every user's, and a recorder may run as a user granted capabilities).
 */
function ipProgram(): string {
  if (ipPath !== undefined) return ipPath;
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter((d) => d !== ''), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const d of dirs) {
    try {
      accessSync(path.join(d, 'ip'), constants.X_OK);
      return (ipPath = path.join(d, 'ip'));
    } catch {
      // not here
    }
  }
  return 'ip';
}

/** The addresses of `iface` with their prefixes, as `ip -j addr show dev IF` lists them. */
export function interfaceNetworks(iface: string): Promise<LocalNetwork[]> {
  return new Promise((resolve, reject) => {
    execFile(ipProgram(), ['-j', 'addr', 'show', 'dev', iface], { timeout: 10_000, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const e = err as NodeJS.ErrnoException;
        reject(new Error(e.code === 'ENOENT' ? '`ip` (iproute2) is not installed' : `ip -j addr show dev ${iface}: ${(stderr || e.message).trim()}`));
        return;
      }
      try {
        const links = JSON.parse(stdout) as { addr_info?: IpAddrInfo[] }[];
        const out: LocalNetwork[] = [];
        for (const a of links.flatMap((l) => l.addr_info ?? [])) {
          const addr = a.local !== undefined ? parseAddr(a.local) : undefined;
          if (!addr || typeof a.prefixlen !== 'number' || a.prefixlen > addr.length * 8) continue;
          const { net, network } = networkOf(addr, a.prefixlen);
          out.push({ net, prefix: a.prefixlen, network, address: formatAddr(addr), origin: 'interface', source: iface });
        }
        resolve(out);
      } catch (e) {
        reject(new Error(`ip -j addr show dev ${iface}: unreadable output (${(e as Error).message})`));
      }
    });
  });
}

/** What went and what came between two lists of networks. */
export function diffNetworks(before: readonly LocalNetwork[], after: readonly LocalNetwork[], atMs: number): LocalNetworkChange[] {
  const was = new Set(before.map(networkKey));
  const now = new Set(after.map(networkKey));
  return [
    ...before.filter((n) => !now.has(networkKey(n))).map((net) => ({ kind: 'remove' as const, net, atMs })),
    ...after.filter((n) => !was.has(networkKey(n))).map((net) => ({ kind: 'add' as const, net, atMs })),
  ];
}

/** A network for the log: `10.0.0.0/24 (10.0.0.5)` for an interface's address, the CIDR for a file's. */
export const networkText = (n: LocalNetwork): string => (n.address === null ? n.network : `${n.network} (${n.address})`);

/** The networks for a start line: "local networks 10.0.0.0/24 (10.0.0.5), ... of eth0". */
export function describeNetworks(nets: readonly LocalNetwork[], origin: { iface: string } | { file: string }): string {
  const where = 'iface' in origin ? `of ${origin.iface}` : `from ${origin.file}`;
  if (nets.length === 0) return `no local networks ${where}${'iface' in origin ? ' (it has no address)' : ''}`;
  const SHOWN = 8;
  const list = nets.slice(0, SHOWN).map(networkText).join(', ');
  return `local networks ${list}${nets.length > SHOWN ? ` and ${nets.length - SHOWN} more` : ''} ${where}`;
}

/**
 * The networks of a live recording as they change: the interface's, read again on each
 * `poll()` (one read at a time, off this thread), or a file's, read again on `reload()`.
 * `onChange` receives the changes with the time they were seen.
 */
export class LocalNetworkWatch {
  private current: LocalNetwork[] = [];
  /** start() has read the networks: polls compare with them from then on. */
  private started = false;
  private reading = false;
  private stopped = false;
  private failedOnce = false;

  private constructor(
    private readonly origin: { iface: string } | { file: string },
    private readonly onChange: (changes: LocalNetworkChange[]) => void,
    private readonly warn: (message: string) => void,
  ) {}

  static ofInterface(iface: string, onChange: (changes: LocalNetworkChange[]) => void, warn: (m: string) => void): LocalNetworkWatch {
    return new LocalNetworkWatch({ iface }, onChange, warn);
  }

  static ofFile(file: string, nets: LocalNetwork[], onChange: (changes: LocalNetworkChange[]) => void, warn: (m: string) => void): LocalNetworkWatch {
    const w = new LocalNetworkWatch({ file }, onChange, warn);
    w.current = nets;
    return w;
  }

  /** The networks at the start: the interface's as read now (none, with a warning, when they cannot be read), or the file's. */
  async start(): Promise<LocalNetwork[]> {
    if ('iface' in this.origin) {
      try {
        this.current = await interfaceNetworks(this.origin.iface);
      } catch (err) {
        this.failedOnce = true;
        this.warn(`cannot read the addresses of ${this.origin.iface} (${(err as Error).message}): no local networks are recorded until they can be read; --local-networks FILE names them instead`);
      }
    }
    this.started = true;
    return this.current;
  }

  describe(): string {
    return describeNetworks(this.current, this.origin);
  }

  /** Reads the interface's addresses again (a no-op before start(), while a read runs, and for a file). */
  poll(): void {
    if (!('iface' in this.origin) || !this.started || this.reading || this.stopped) return;
    const iface = this.origin.iface;
    this.reading = true;
    interfaceNetworks(iface).then(
      (nets) => {
        this.reading = false;
        if (this.stopped) return;
        if (this.failedOnce) {
          this.failedOnce = false;
          this.warn(`the addresses of ${iface} can be read again`);
        }
        this.update(nets);
      },
      (err: Error) => {
        this.reading = false;
        if (this.stopped || this.failedOnce) return;
        this.failedOnce = true;
        this.warn(`cannot read the addresses of ${iface} (${err.message}): its local networks are kept as they were until they can be read`);
      },
    );
  }

  /** Reads the file again (SIGHUP); a bad file keeps the networks as they were and throws. Returns the changes. */
  reload(): LocalNetworkChange[] {
    if (!('file' in this.origin)) return [];
    return this.update(readLocalNetworksFile(this.origin.file));
  }

  get fromFile(): boolean {
    return 'file' in this.origin;
  }

  private update(nets: LocalNetwork[]): LocalNetworkChange[] {
    const changes = diffNetworks(this.current, nets, Date.now());
    this.current = nets;
    if (changes.length > 0) this.onChange(changes);
    return changes;
  }

  /** No more changes are reported (the recording stops). */
  stop(): void {
    this.stopped = true;
  }
}
