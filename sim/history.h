/* history.h — client-operation histories in the format of shared/HISTORY.md.
 *
 * A history is what the clients saw: one record per operation, with the
 * interval [call, return] on one clock and an outcome (true / false / null).
 * The simulator, integration tests and fault-injection runs record histories;
 * sim/lincheck.h judges them. The on-disk form is JSON Lines, one object per
 * line, any order:
 *
 *   {"client":1,"op":"put","key":"k7","value":"c1-42","call":1000,"return":1800,"ok":true}
 *   {"client":3,"op":"delete","key":"k7","call":2200,"ok":null}
 *   {"client":1,"op":"cas","key":"k7","expected":"c1-42","new":"c1-43",
 *    "call":3000,"return":3600,"ok":true,"swapped":true}       (one line)
 *
 * Field rules enforced by the reader (anything else is RK_EMALFORMED with the
 * line number; the reader never asserts on input):
 *   client        integer in [0, 2^53)
 *   op            "put" | "get" | "delete" | "cas"
 *   key           string
 *   call          integer in [0, 2^53)
 *   return        integer in [call, 2^53); required when ok is true or false,
 *                 ignored when ok is null (the operation may take effect at any
 *                 time after call: its return is +infinity)
 *   ok            true | false | null
 *   value         put: string (required). get with ok=true: string or null
 *                 (null = not found; required). Ignored otherwise.
 *   expected      cas: string or null (null = must be absent; required)
 *   new           cas: string (required)
 *   swapped       cas with ok=true: bool (required). Ignored otherwise.
 * Unknown fields are ignored whatever their value (nested objects and arrays
 * are skipped up to a nesting depth of 32). A field given twice is malformed.
 * Blank lines and lines whose first non-blank byte is '#' are ignored; a UTF-8
 * byte-order mark at the start of the file is skipped. Strings are JSON
 * strings: escapes including \uXXXX surrogate pairs are decoded to UTF-8;
 * "\u0000" is rejected (records hold C strings); raw control bytes are
 * rejected; other bytes are taken as they are (UTF-8 is not validated).
 *
 * The writer emits exactly one line per record in the field order of the
 * example above, "return" omitted when ok is null, strings escaped per JSON
 * (quote, backslash and control bytes; everything else verbatim).
 *
 * Ownership: a sim_hist owns every string of its records. sim_hist_add()
 * copies the caller's strings; pointers into a history stay valid until the
 * next sim_hist_add() (which may move the record array) or sim_hist_free().
 */
#ifndef SIM_HISTORY_H
#define SIM_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Largest integer the format allows (exclusive): JSON readers with doubles. */
#define SIM_HIST_INT_LIMIT (UINT64_C(1) << 53)

typedef enum sim_hist_op {
  SIM_HIST_PUT = 0,
  SIM_HIST_GET,
  SIM_HIST_DELETE,
  SIM_HIST_CAS,
} sim_hist_op;

typedef enum sim_hist_ok {
  SIM_HIST_FALSE = 0, /* definitely no effect */
  SIM_HIST_TRUE = 1,  /* completed, result known */
  SIM_HIST_NULL = 2,  /* unknown: may take effect at any time after call, or never */
} sim_hist_ok;

typedef struct sim_hist_rec {
  uint64_t client;
  sim_hist_op op;
  sim_hist_ok ok;
  const char *key;       /* never NULL */
  const char *value;     /* put: written value; get ok=true: value read, NULL = not found */
  const char *expected;  /* cas: compare value, NULL = must be absent */
  const char *new_value; /* cas: value installed when it swaps ("new" in JSON) */
  bool swapped;          /* cas with ok=true */
  uint64_t call;
  uint64_t ret; /* "return"; meaningless (0) when ok is null */
} sim_hist_rec;

typedef struct sim_hist {
  sim_hist_rec *v;
  size_t len;
  size_t cap;
} sim_hist;

/* Where and why a history could not be read. */
typedef struct sim_hist_err {
  size_t line;   /* 1-based line number; 0 when not about a line (I/O) */
  char msg[160]; /* e.g. "field \"call\": not an integer" */
} sim_hist_err;

void sim_hist_init(sim_hist *h);
void sim_hist_free(sim_hist *h);

/* Check a record against the field rules above (same rules as the reader).
 * Returns RK_OK or RK_EINVAL; when why is non-NULL it gets a short reason. */
int sim_hist_validate(const sim_hist_rec *r, const char **why);

/* Append a copy of *r (strings copied). RK_EINVAL if it does not validate,
 * RK_ENOMEM. On error the history is unchanged. */
int sim_hist_add(sim_hist *h, const sim_hist_rec *r);

/* Write one record as one JSON line (with '\n'). RK_EINVAL if it does not
 * validate, RK_EIO on a write error. */
int sim_hist_write_rec(FILE *f, const sim_hist_rec *r);
/* Write every record, in order. */
int sim_hist_write(FILE *f, const sim_hist *h);

/* Parse one line (without its newline; len bytes, NULs allowed and rejected).
 * Returns RK_OK and fills *h with one more record, or RK_EMALFORMED with a
 * message in err->msg (err->line is left to the caller), or RK_ENOMEM.
 * A blank or '#' line adds nothing and returns RK_OK. */
int sim_hist_parse_line(sim_hist *h, const char *line, size_t len, sim_hist_err *err);

/* Read a whole JSON Lines stream / file / buffer, appending to *h. On
 * RK_EMALFORMED err->line names the first bad line; records from earlier
 * lines stay in *h. RK_EIO / RK_ENOTFOUND for I/O. err may be NULL. */
int sim_hist_read(FILE *f, sim_hist *h, sim_hist_err *err);
int sim_hist_read_file(const char *path, sim_hist *h, sim_hist_err *err);
int sim_hist_read_buf(const char *buf, size_t len, sim_hist *h, sim_hist_err *err);

const char *sim_hist_op_name(sim_hist_op op);

#endif
