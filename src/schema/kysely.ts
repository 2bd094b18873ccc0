/**
 * kysely from its one-file bundle (`src/vendor.ts`): the package is some 280 small modules, and
 * resolving and compiling them took ~100 ms of every recorder start here (the bundle ~17 ms). The
 * only module that loads it; the recorder, the migrations and the tests import it from here, so
 * one copy's classes meet.
 */
import type * as KyselyApi from 'kysely';
import { loadBundled } from '../vendor';

const api = loadBundled<typeof KyselyApi>('kysely.js', 'kysely');

export const { DummyDriver, Migrator, SqliteAdapter, SqliteDialect, SqliteIntrospector, SqliteQueryCompiler, sql } = api;
export const Kysely = api.Kysely;
export type Kysely<DB> = KyselyApi.Kysely<DB>;
export type { Compilable, Generated, Migration } from 'kysely';
