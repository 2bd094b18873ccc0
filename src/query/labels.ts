/**
 * Label files (`tc-query --labels FILE`, or TC_LABELS): lines `CIDR label`, IPv4 and IPv6,
 * `#` comments and blank lines (read by src/cidr-file.ts); the longest prefix holding an
 * address gives its label. Read at query time, so a changed file relabels all of history. The
 * CIDRs are flattened into disjoint ranges (a nested network cut out of the one around it), so
 * a lookup is one binary search and the addresses of one label are a few address ranges (what
 * `--label NAME` reads).
 */
import { formatAddr } from '../addr';
import { readCidrFile } from '../cidr-file';
import { TcError } from '../errors';
import { OVERFLOW } from './keys';
import { bytesOf, flattenNets, netOf, rangesOf, wordsOf, type Net } from './ranges';

export const LABELS_ENV = 'TC_LABELS';
const CODE = 'ERR_TC_LABELS';
const FORM = 'each line is "CIDR label" (e.g. "10.1.0.0/16 office")';

export interface LabelTable {
  file: string;
  /** Every label the file gives, in the order first given. */
  labels: string[];
  /** The label of an address (4 or 16 bytes), or null where no line holds it. */
  labelOf(addr: Uint8Array): string | null;
  /** The address ranges labelled `label` (inclusive ends, 4- or 16-byte), longest prefix applied. */
  rangesOf(label: string): { lo: Uint8Array; hi: Uint8Array }[];
}

/** The network of a Net as text. */
const netText = (n: Net, words: 1 | 4) => {
  const w: number[] = [];
  for (let i = words - 1; i >= 0; i--) w.push(Number((n.start >> BigInt(32 * i)) & 0xffffffffn));
  return `${formatAddr(bytesOf(w))}/${n.prefix}`;
};

/** Reads a label file; every problem names the file and line and says what a line should be. */
export function readLabels(file: string): LabelTable {
  const lines = readCidrFile(file, {
    what: 'label file',
    remedy: `give --labels FILE (lines "CIDR label", e.g. "10.1.0.0/16 office"), or unset ${LABELS_ENV}`,
    rest: 'required',
    restName: 'label',
    form: FORM,
    code: CODE,
  });
  const labels: string[] = [];
  const index = new Map<string, number>();
  const nets: Record<4 | 16, Net[]> = { 4: [], 16: [] };
  for (const l of lines) {
    if (l.rest === OVERFLOW) throw new TcError(`${file}:${l.line}: the label "${OVERFLOW}" names the row of addresses folded past --max-keys or by the disk budget; give this network another label`, CODE);
    let li = index.get(l.rest);
    if (li === undefined) {
      li = labels.length;
      labels.push(l.rest);
      index.set(l.rest, li);
    }
    nets[l.addr.length as 4 | 16].push(netOf(l.addr, l.prefix, li, l.line));
  }
  const duplicate = (words: 1 | 4) => (n: Net, prev: Net) => new TcError(`${file}:${n.line}: ${netText(n, words)} is already labelled on line ${prev.line}; give each network one label`, CODE);
  const v4 = flattenNets(nets[4], 1, duplicate(1));
  const v6 = flattenNets(nets[16], 4, duplicate(4));
  return {
    file,
    labels,
    labelOf(addr) {
      const t = addr.length === 4 ? v4 : addr.length === 16 ? v6 : undefined;
      const v = t ? t.find(wordsOf(addr)) : -1;
      return v < 0 ? null : labels[v];
    },
    rangesOf(label) {
      const li = index.get(label);
      return li === undefined ? [] : [...rangesOf(v4, li), ...rangesOf(v6, li)];
    },
  };
}
