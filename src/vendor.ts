/**
 * A dependency from its one-file bundle in dist/vendor (`npm run build:vendor`, made by
 * `npm run build`), else from its package: a package of many small modules costs every start the
 * time to resolve and compile them (figures where each is loaded).
 */
import * as path from 'node:path';

export function loadBundled<T>(bundle: string, pkg: string): T {
  /* eslint-disable @typescript-eslint/no-require-imports */
  try {
    return require(path.join(__dirname, '..', 'vendor', bundle)) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
    return require(pkg) as T;
  }
}
