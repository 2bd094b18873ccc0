/**
 * The schema version this build writes and reads: the number of migrations in index.ts (which
 * checks it). Kept apart so that readers (tc-query) need not load kysely.
 */
export const SCHEMA_VERSION = 6;
