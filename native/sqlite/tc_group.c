/*
 * tc_group(nkeys, mask, k0, .., v0, ..): an aggregate SQLite function that groups its rows by
 * their first `nkeys` values (64-bit integers) and sums the others, and returns the groups as
 * one BLOB, column by column: for each column (the keys, then the sums) one little-endian
 * 64-bit integer per group, groups in the order first seen. Groups whose value columns named by
 * the bit mask `mask` (bit 0: the first value) all sum to 0 are left out (rows that cancel out).
 *
 * tc-query's window sums (src/query/plan.ts): SQLite's GROUP BY sorts every row of the window
 * first (a 24 h window of 5,000 addresses is 115,000 rollup rows, ~60 ms of sorting here), and
 * handing each grouped row to JS costs a JS value per column; this hash table groups them as
 * the scan reads them, and JS reads the answer as typed-array views of one buffer. A sum that
 * would leave 64 bits is an error, as SQLite's sum() makes it.
 */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT3
#include <stdint.h>
#include <string.h>

#define TG_MAX_KEYS 6
#define TG_MAX_VALUES 8

typedef struct {
  int nkeys;
  int width; /* keys + values */
  sqlite3_int64 mask;
  sqlite3_int64 *rows; /* groups, row-major: width values each */
  sqlite3_int64 groups;
  sqlite3_int64 cap_rows;
  uint32_t *slots; /* open addressing: group index + 1, 0 empty */
  sqlite3_int64 cap_slots; /* a power of two, at most half full */
  int failed;
} tg_state;

static uint64_t tg_hash(const sqlite3_int64 *k, int n) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < n; i++) {
    h ^= (uint64_t)k[i];
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
  }
  return h;
}

static int tg_grow_slots(tg_state *s) {
  sqlite3_int64 cap = s->cap_slots ? s->cap_slots * 2 : 1024;
  uint32_t *slots = sqlite3_malloc64((sqlite3_uint64)cap * sizeof(uint32_t));
  if (!slots) return SQLITE_NOMEM;
  memset(slots, 0, (size_t)cap * sizeof(uint32_t));
  for (sqlite3_int64 g = 0; g < s->groups; g++) {
    uint64_t i = tg_hash(s->rows + g * s->width, s->nkeys) & (uint64_t)(cap - 1);
    while (slots[i]) i = (i + 1) & (uint64_t)(cap - 1);
    slots[i] = (uint32_t)(g + 1);
  }
  sqlite3_free(s->slots);
  s->slots = slots;
  s->cap_slots = cap;
  return SQLITE_OK;
}

static void tg_fail(sqlite3_context *ctx, tg_state *s, const char *msg, int code) {
  s->failed = 1;
  if (code == SQLITE_NOMEM) sqlite3_result_error_nomem(ctx);
  else sqlite3_result_error(ctx, msg, -1);
}

static void tg_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  tg_state *s = sqlite3_aggregate_context(ctx, sizeof(tg_state));
  if (!s) return sqlite3_result_error_nomem(ctx);
  if (s->failed) return;
  if (s->width == 0) {
    int nkeys = sqlite3_value_int(argv[0]);
    int nvalues = argc - 2 - nkeys;
    if (nkeys < 1 || nkeys > TG_MAX_KEYS || nvalues < 1 || nvalues > TG_MAX_VALUES) {
      return tg_fail(ctx, s, "tc_group(nkeys, mask, keys..., values...): 1 to 6 keys and 1 to 8 values", SQLITE_ERROR);
    }
    s->nkeys = nkeys;
    s->width = nkeys + nvalues;
    s->mask = sqlite3_value_int64(argv[1]);
  }
  if (argc != 2 + s->width) return tg_fail(ctx, s, "tc_group: every row must have the same columns", SQLITE_ERROR);
  sqlite3_int64 key[TG_MAX_KEYS];
  for (int i = 0; i < s->nkeys; i++) key[i] = sqlite3_value_int64(argv[2 + i]);
  if (s->groups * 2 >= s->cap_slots && tg_grow_slots(s) != SQLITE_OK) return tg_fail(ctx, s, 0, SQLITE_NOMEM);
  uint64_t i = tg_hash(key, s->nkeys) & (uint64_t)(s->cap_slots - 1);
  sqlite3_int64 *row = 0;
  while (s->slots[i]) {
    sqlite3_int64 *r = s->rows + (sqlite3_int64)(s->slots[i] - 1) * s->width;
    if (memcmp(r, key, (size_t)s->nkeys * sizeof(sqlite3_int64)) == 0) {
      row = r;
      break;
    }
    i = (i + 1) & (uint64_t)(s->cap_slots - 1);
  }
  if (!row) {
    if (s->groups >= UINT32_MAX - 1) return tg_fail(ctx, s, "tc_group: more than 4 billion groups", SQLITE_ERROR);
    if (s->groups == s->cap_rows) {
      sqlite3_int64 cap = s->cap_rows ? s->cap_rows * 2 : 1024;
      sqlite3_int64 *rows = sqlite3_realloc64(s->rows, (sqlite3_uint64)cap * (sqlite3_uint64)s->width * sizeof(sqlite3_int64));
      if (!rows) return tg_fail(ctx, s, 0, SQLITE_NOMEM);
      s->rows = rows;
      s->cap_rows = cap;
    }
    row = s->rows + s->groups * s->width;
    memcpy(row, key, (size_t)s->nkeys * sizeof(sqlite3_int64));
    memset(row + s->nkeys, 0, (size_t)(s->width - s->nkeys) * sizeof(sqlite3_int64));
    s->slots[i] = (uint32_t)(++s->groups);
  }
  for (int v = s->nkeys; v < s->width; v++) {
    if (__builtin_add_overflow(row[v], sqlite3_value_int64(argv[2 + v]), &row[v])) return tg_fail(ctx, s, "integer overflow", SQLITE_ERROR);
  }
}

static void tg_final(sqlite3_context *ctx) {
  tg_state *s = sqlite3_aggregate_context(ctx, 0);
  if (!s || s->failed || s->groups == 0) {
    if (!s || !s->failed) sqlite3_result_zeroblob(ctx, 0);
    if (s) {
      sqlite3_free(s->rows);
      sqlite3_free(s->slots);
    }
    return;
  }
  sqlite3_int64 kept = 0;
  for (sqlite3_int64 g = 0; g < s->groups; g++) {
    const sqlite3_int64 *r = s->rows + g * s->width;
    int any = 0;
    for (int v = s->nkeys; v < s->width; v++) any |= ((s->mask >> (v - s->nkeys)) & 1) && r[v] != 0;
    if (any) kept++;
  }
  sqlite3_uint64 bytes = (sqlite3_uint64)kept * (sqlite3_uint64)s->width * sizeof(sqlite3_int64);
  sqlite3_int64 *out = bytes ? sqlite3_malloc64(bytes) : 0;
  if (bytes && !out) {
    sqlite3_result_error_nomem(ctx);
  } else {
    sqlite3_int64 n = 0;
    for (sqlite3_int64 g = 0; g < s->groups; g++) {
      const sqlite3_int64 *r = s->rows + g * s->width;
      int any = 0;
      for (int v = s->nkeys; v < s->width; v++) any |= ((s->mask >> (v - s->nkeys)) & 1) && r[v] != 0;
      if (!any) continue;
      for (int c = 0; c < s->width; c++) out[c * kept + n] = r[c];
      n++;
    }
    if (bytes) sqlite3_result_blob64(ctx, out, bytes, sqlite3_free);
    else sqlite3_result_zeroblob(ctx, 0);
  }
  sqlite3_free(s->rows);
  sqlite3_free(s->slots);
}

int tc_group_init(sqlite3 *db) {
  return sqlite3_create_function_v2(db, "tc_group", -1, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, 0, 0, tg_step, tg_final, 0);
}
