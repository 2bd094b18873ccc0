/*
 * tc_rows(data, width): an eponymous table-valued SQLite function that reads `data`, a BLOB of
 * little-endian signed 64-bit integers, as rows of `width` columns (c0 .. c7).
 *
 * The recorder's bulk insert: `INSERT INTO t SELECT c0, .., c5 FROM tc_rows(?, 6)` puts a whole
 * batch in with one bound value, where a multi-row VALUES statement binds six JS values per row
 * (better-sqlite3 binds each through V8, a large share of an insert's time). SQLite's own carray
 * extension does not fit:
 * it takes a pointer binding, which JS cannot make. Built after the pattern of carray.c and
 * series.c of SQLite's ext/misc; compiled into the native addon, which exports the entry point
 * `sqlite3_tcrows_init` for better-sqlite3's loadExtension(). Only the writer loads it: files
 * stay plain SQLite for every reader.
 */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1
#include <string.h>

#define TC_MAX_WIDTH 8
#define TC_COL_DATA TC_MAX_WIDTH
#define TC_COL_WIDTH (TC_MAX_WIDTH + 1)

typedef struct {
  sqlite3_vtab_cursor base;
  sqlite3_int64 *values; /* a copy of the blob: aligned, and owned for the scan */
  sqlite3_int64 rows;
  sqlite3_int64 row;
  int width;
} tc_cursor;

static int tc_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out, char **err) {
  (void)aux; (void)argc; (void)argv; (void)err;
  int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(c0, c1, c2, c3, c4, c5, c6, c7, data HIDDEN, width HIDDEN)");
  if (rc != SQLITE_OK) return rc;
  sqlite3_vtab *t = sqlite3_malloc(sizeof *t);
  if (!t) return SQLITE_NOMEM;
  memset(t, 0, sizeof *t);
  sqlite3_vtab_config(db, SQLITE_VTAB_INNOCUOUS);
  *out = t;
  return SQLITE_OK;
}

static int tc_disconnect(sqlite3_vtab *t) {
  sqlite3_free(t);
  return SQLITE_OK;
}

static int tc_open(sqlite3_vtab *t, sqlite3_vtab_cursor **out) {
  (void)t;
  tc_cursor *c = sqlite3_malloc(sizeof *c);
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof *c);
  *out = &c->base;
  return SQLITE_OK;
}

static int tc_close(sqlite3_vtab_cursor *cur) {
  tc_cursor *c = (tc_cursor *)cur;
  sqlite3_free(c->values);
  sqlite3_free(c);
  return SQLITE_OK;
}

/* Both hidden arguments must be given as equality constraints; a plan without them is refused. */
static int tc_best_index(sqlite3_vtab *t, sqlite3_index_info *info) {
  int data = -1, width = -1;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *k = &info->aConstraint[i];
    if (k->op != SQLITE_INDEX_CONSTRAINT_EQ || (k->iColumn != TC_COL_DATA && k->iColumn != TC_COL_WIDTH)) continue;
    if (!k->usable) return SQLITE_CONSTRAINT;
    if (k->iColumn == TC_COL_DATA) data = i;
    else width = i;
  }
  if (data < 0 || width < 0) {
    sqlite3_free(t->zErrMsg);
    t->zErrMsg = sqlite3_mprintf("tc_rows(data, width) takes both arguments");
    return SQLITE_ERROR;
  }
  info->aConstraintUsage[data].argvIndex = 1;
  info->aConstraintUsage[data].omit = 1;
  info->aConstraintUsage[width].argvIndex = 2;
  info->aConstraintUsage[width].omit = 1;
  info->estimatedCost = 1000;
  info->estimatedRows = 1000;
  return SQLITE_OK;
}

static int tc_filter(sqlite3_vtab_cursor *cur, int idx, const char *idx_str, int argc, sqlite3_value **argv) {
  (void)idx; (void)idx_str; (void)argc;
  tc_cursor *c = (tc_cursor *)cur;
  sqlite3_free(c->values);
  c->values = 0;
  c->rows = c->row = 0;
  if (sqlite3_value_type(argv[0]) != SQLITE_BLOB && sqlite3_value_type(argv[0]) != SQLITE_NULL) {
    cur->pVtab->zErrMsg = sqlite3_mprintf("tc_rows: data must be a BLOB");
    return SQLITE_ERROR;
  }
  int width = sqlite3_value_int(argv[1]);
  int bytes = sqlite3_value_bytes(argv[0]);
  if (width < 1 || width > TC_MAX_WIDTH || bytes % (8 * width) != 0) {
    cur->pVtab->zErrMsg = sqlite3_mprintf("tc_rows: %d bytes are not rows of %d 64-bit integers (1 to %d)", bytes, width, TC_MAX_WIDTH);
    return SQLITE_ERROR;
  }
  if (bytes > 0) {
    c->values = sqlite3_malloc(bytes);
    if (!c->values) return SQLITE_NOMEM;
    memcpy(c->values, sqlite3_value_blob(argv[0]), bytes);
  }
  c->width = width;
  c->rows = bytes / (8 * width);
  return SQLITE_OK;
}

static int tc_next(sqlite3_vtab_cursor *cur) {
  ((tc_cursor *)cur)->row++;
  return SQLITE_OK;
}

static int tc_eof(sqlite3_vtab_cursor *cur) {
  tc_cursor *c = (tc_cursor *)cur;
  return c->row >= c->rows;
}

static int tc_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
  tc_cursor *c = (tc_cursor *)cur;
  if (col < c->width) sqlite3_result_int64(ctx, c->values[c->row * c->width + col]);
  else sqlite3_result_null(ctx);
  return SQLITE_OK;
}

static int tc_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid) {
  *rowid = ((tc_cursor *)cur)->row;
  return SQLITE_OK;
}

static sqlite3_module tc_rows_module = {
  .iVersion = 0,
  .xCreate = 0, /* eponymous only: used as a table-valued function, never CREATE VIRTUAL TABLE */
  .xConnect = tc_connect,
  .xBestIndex = tc_best_index,
  .xDisconnect = tc_disconnect,
  .xDestroy = 0,
  .xOpen = tc_open,
  .xClose = tc_close,
  .xFilter = tc_filter,
  .xNext = tc_next,
  .xEof = tc_eof,
  .xColumn = tc_column,
  .xRowid = tc_rowid,
};

int tc_group_init(sqlite3 *db); /* tc_group.c */

/* Both functions of the extension: tc_rows for the writer, tc_group for the readers. */
int tc_rows_init(sqlite3 *db, char **err, const sqlite3_api_routines *api) {
  (void)err;
  SQLITE_EXTENSION_INIT2(api);
  int rc = sqlite3_create_module(db, "tc_rows", &tc_rows_module, 0);
  return rc == SQLITE_OK ? tc_group_init(db) : rc;
}
