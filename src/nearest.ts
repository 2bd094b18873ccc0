/** The known words nearest to a mistyped one: for suggestions in messages of both programs. */
/**
 * Optimal string alignment distance (Levenshtein plus the swap of two neighbours: `max-db-sise`
 * is 1 from `max-db-size`, `itnerval` 1 from `interval`). Written here because commander's own
 * (lib/suggestSimilar.js, behind its "Did you mean" for flags) is not exported.
 */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/**
 * The known words nearest to `word`, as commander suggests a flag: at most 3 edits away and
 * more than 40% the same (so `colour` suggests nothing); the nearest ones only, in order given.
 */
export function nearest(word: string, known: string[]): string[] {
  let best = 4;
  let out: string[] = [];
  for (const k of known) {
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if ((Math.max(word.length, k.length) - d) / Math.max(word.length, k.length) <= 0.4 || d > best) continue;
    if (d < best) [best, out] = [d, []];
    out.push(k);
  }
  return out;
}
