/**
 * kysely from its one-file bundle (`npm run build:vendor`, made by `npm run build`), else from
 * the package: the package is some 280 small modules, and resolving and compiling them took
 * ~100 ms of every recorder start here (the bundle ~17 ms). The only module that loads it; the
 * recorder, the migrations and the tests import it from here, so one copy's classes meet.
 */
import type * as KyselyApi from 'kysely';
import * as path from 'node:path';

function loadKysely(): typeof KyselyApi {
  /* eslint-disable @typescript-eslint/no-require-imports */
  try {
    return require(path.join(__dirname, '..', '..', 'vendor', 'kysely.js')) as typeof KyselyApi;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
    return require('kysely') as typeof KyselyApi;
  }
}
const api = loadKysely();

export const { DummyDriver, Migrator, SqliteAdapter, SqliteDialect, SqliteIntrospector, SqliteQueryCompiler, sql } = api;
export const Kysely = api.Kysely;
export type Kysely<DB> = KyselyApi.Kysely<DB>;
export type { Compilable, Generated, Migration } from 'kysely';
