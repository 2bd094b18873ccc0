/**
 * Every migration, in order. Forward-only: names carry their date, and a database whose
 * applied migrations are not all listed here was written by a newer traffic-counter.
 */
import type { Migration } from '../src/schema/kysely';
import * as m0001 from './2026-11-27_0001_event_log';
import * as m0002 from './2026-11-27_0002_rollups';
import * as m0003 from './2026-12-01_0003_budget';
import * as m0004 from './2026-12-02_0004_name_counters';
import * as m0005 from './2026-12-02_0005_local_networks';
import * as m0006 from './2026-12-02_0006_names';

export const migrations: Record<string, Migration> = {
  '2026-11-27_0001_event_log': m0001,
  '2026-11-27_0002_rollups': m0002,
  '2026-12-01_0003_budget': m0003,
  '2026-12-02_0004_name_counters': m0004,
  '2026-12-02_0005_local_networks': m0005,
  '2026-12-02_0006_names': m0006,
};

export { SCHEMA_VERSION } from './version';
import { SCHEMA_VERSION } from './version';
import { TcError } from '../src/errors';

if (Object.keys(migrations).length !== SCHEMA_VERSION) {
  throw new TcError(`migrations/version.ts says ${SCHEMA_VERSION} but migrations/index.ts lists ${Object.keys(migrations).length}`, 'ERR_TC_MIGRATION');
}
