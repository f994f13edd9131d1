/* history.c — JSON Lines reader and writer for client histories.
 *
 * The reader is a small hand-written JSON parser for one flat object per
 * line: known fields are typed (string / integer / bool / null), unknown
 * fields are skipped whatever they hold, with a nesting bound so hostile
 * input cannot exhaust the stack. Every byte is bounds-checked against the
 * line's end; the line may contain NULs (they are rejected, never read past).
 */
#include "sim/history.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define HIST_MAX_DEPTH 32 /* nesting allowed inside unknown fields */

static void free_str(const char *s) { free((void *)(uintptr_t)s); }

static void rec_free(sim_hist_rec *r) {
  free_str(r->key);
  free_str(r->value);
  free_str(r->expected);
  free_str(r->new_value);
}

void sim_hist_init(sim_hist *h) { memset(h, 0, sizeof(*h)); }

void sim_hist_free(sim_hist *h) {
  for (size_t i = 0; i < h->len; i++) rec_free(&h->v[i]);
  free(h->v);
  memset(h, 0, sizeof(*h));
}

const char *sim_hist_op_name(sim_hist_op op) {
  switch (op) {
  case SIM_HIST_PUT: return "put";
  case SIM_HIST_GET: return "get";
  case SIM_HIST_DELETE: return "delete";
  case SIM_HIST_CAS: return "cas";
  }
  return "?";
}

int sim_hist_validate(const sim_hist_rec *r, const char **why) {
  const char *w = NULL;
  if (r->key == NULL)
    w = "missing key";
  else if (r->client >= SIM_HIST_INT_LIMIT)
    w = "client >= 2^53";
  else if (r->call >= SIM_HIST_INT_LIMIT)
    w = "call >= 2^53";
  else if ((unsigned)r->op > SIM_HIST_CAS)
    w = "bad op";
  else if ((unsigned)r->ok > SIM_HIST_NULL)
    w = "bad ok";
  else if (r->ok != SIM_HIST_NULL && r->ret >= SIM_HIST_INT_LIMIT)
    w = "return >= 2^53";
  else if (r->ok != SIM_HIST_NULL && r->ret < r->call)
    w = "return before call";
  else if (r->op == SIM_HIST_PUT && r->value == NULL)
    w = "put without value";
  else if (r->op == SIM_HIST_CAS && r->new_value == NULL)
    w = "cas without new";
  if (why) *why = w;
  return w ? RK_EINVAL : RK_OK;
}

/* Push a record whose strings the history now owns. */
static int hist_push_owned(sim_hist *h, const sim_hist_rec *r) {
  if (h->len == h->cap) {
    size_t ncap = h->cap ? h->cap * 2 : 64;
    sim_hist_rec *nv = realloc(h->v, ncap * sizeof(*nv));
    if (!nv) return RK_ENOMEM;
    h->v = nv;
    h->cap = ncap;
  }
  h->v[h->len++] = *r;
  return RK_OK;
}

static int dup_opt(const char *s, const char **out) {
  *out = NULL;
  if (!s) return RK_OK;
  char *d = strdup(s);
  if (!d) return RK_ENOMEM;
  *out = d;
  return RK_OK;
}

int sim_hist_add(sim_hist *h, const sim_hist_rec *r) {
  if (sim_hist_validate(r, NULL) != RK_OK) return RK_EINVAL;
  sim_hist_rec c = *r;
  c.key = c.value = c.expected = c.new_value = NULL;
  if (r->ok == SIM_HIST_NULL) c.ret = 0;
  /* Only the strings that mean something for this op are kept. */
  bool keep_value = r->op == SIM_HIST_PUT || (r->op == SIM_HIST_GET && r->ok == SIM_HIST_TRUE);
  bool is_cas = r->op == SIM_HIST_CAS;
  if (!(is_cas && r->ok == SIM_HIST_TRUE)) c.swapped = false;
  if (dup_opt(r->key, &c.key) || (keep_value && dup_opt(r->value, &c.value)) ||
      (is_cas && dup_opt(r->expected, &c.expected)) ||
      (is_cas && dup_opt(r->new_value, &c.new_value)))
    goto fail_free;
  if (hist_push_owned(h, &c) != RK_OK) goto fail_free;
  return RK_OK;
fail_free:
  rec_free(&c);
  return RK_ENOMEM;
}

/* ---- writer ---------------------------------------------------------------- */

static void put_json_str(FILE *f, const char *s) {
  if (!s) {
    fputs("null", f);
    return;
  }
  putc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"': fputs("\\\"", f); break;
    case '\\': fputs("\\\\", f); break;
    case '\n': fputs("\\n", f); break;
    case '\r': fputs("\\r", f); break;
    case '\t': fputs("\\t", f); break;
    case '\b': fputs("\\b", f); break;
    case '\f': fputs("\\f", f); break;
    default:
      if (*p < 0x20)
        fprintf(f, "\\u%04x", (unsigned)*p);
      else
        putc(*p, f);
    }
  }
  putc('"', f);
}

int sim_hist_write_rec(FILE *f, const sim_hist_rec *r) {
  if (sim_hist_validate(r, NULL) != RK_OK) return RK_EINVAL;
  fprintf(f, "{\"client\":%llu,\"op\":\"%s\",\"key\":", (unsigned long long)r->client,
          sim_hist_op_name(r->op));
  put_json_str(f, r->key);
  if (r->op == SIM_HIST_PUT || (r->op == SIM_HIST_GET && r->ok == SIM_HIST_TRUE)) {
    fputs(",\"value\":", f);
    put_json_str(f, r->value);
  }
  if (r->op == SIM_HIST_CAS) {
    fputs(",\"expected\":", f);
    put_json_str(f, r->expected);
    fputs(",\"new\":", f);
    put_json_str(f, r->new_value);
  }
  fprintf(f, ",\"call\":%llu", (unsigned long long)r->call);
  if (r->ok != SIM_HIST_NULL) fprintf(f, ",\"return\":%llu", (unsigned long long)r->ret);
  fputs(r->ok == SIM_HIST_TRUE    ? ",\"ok\":true"
        : r->ok == SIM_HIST_FALSE ? ",\"ok\":false"
                                  : ",\"ok\":null",
        f);
  if (r->op == SIM_HIST_CAS && r->ok == SIM_HIST_TRUE)
    fputs(r->swapped ? ",\"swapped\":true" : ",\"swapped\":false", f);
  fputs("}\n", f);
  return ferror(f) ? RK_EIO : RK_OK;
}

int sim_hist_write(FILE *f, const sim_hist *h) {
  for (size_t i = 0; i < h->len; i++) {
    int rc = sim_hist_write_rec(f, &h->v[i]);
    if (rc != RK_OK) return rc;
  }
  return fflush(f) == 0 && !ferror(f) ? RK_OK : RK_EIO;
}

/* ---- reader ---------------------------------------------------------------- */

typedef struct jp {
  const char *p;
  const char *end;
  sim_hist_err *err;
} jp;

typedef enum jkind { J_NULL, J_BOOL, J_INT, J_STR, J_OTHER } jkind;

typedef struct jval {
  jkind kind;
  bool b;
  bool num_not_int; /* J_OTHER: a number that is not an integer in [0, 2^53) */
  uint64_t i;
  char *s; /* J_STR: owned, NUL-terminated */
} jval;

__attribute__((format(printf, 2, 3))) static int jp_fail(jp *p, const char *fmt, ...) {
  if (p->err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->msg, sizeof(p->err->msg), fmt, ap);
    va_end(ap);
  }
  return RK_EMALFORMED;
}

static void jp_ws(jp *p) {
  while (p->p < p->end && (*p->p == ' ' || *p->p == '\t' || *p->p == '\r' || *p->p == '\n')) p->p++;
}

static bool jp_lit(jp *p, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(p->end - p->p) < n || memcmp(p->p, lit, n) != 0) return false;
  p->p += n;
  return true;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int jp_hex4(jp *p, unsigned *out) {
  if (p->end - p->p < 4) return jp_fail(p, "truncated \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(p->p[i]);
    if (h < 0) return jp_fail(p, "bad hex digit in \\u escape");
    v = v << 4 | (unsigned)h;
  }
  p->p += 4;
  *out = v;
  return RK_OK;
}

static size_t utf8_put(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18);
  o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Parse a JSON string at p->p (which is at '"'). When out is NULL the string
 * is only validated and skipped. Decoded length never exceeds raw length. */
static int jp_string(jp *p, char **out) {
  RK_ASSERT(p->p < p->end && *p->p == '"');
  p->p++;
  const char *start = p->p;
  char *buf = NULL;
  if (out) {
    /* The raw span up to the closing quote bounds the decoded size. */
    const char *q = start;
    while (q < p->end && *q != '"') q += (*q == '\\' && q + 1 < p->end) ? 2 : 1;
    buf = malloc((size_t)(q - start) + 1);
    if (!buf) return RK_ENOMEM;
  }
  size_t n = 0;
  int rc;
  for (;;) {
    if (p->p >= p->end) {
      rc = jp_fail(p, "unterminated string");
      goto fail;
    }
    unsigned char c = (unsigned char)*p->p++;
    if (c == '"') break;
    if (c < 0x20) {
      rc = jp_fail(p, "control byte 0x%02x in string", c);
      goto fail;
    }
    if (c != '\\') {
      if (buf) buf[n++] = (char)c;
      continue;
    }
    if (p->p >= p->end) {
      rc = jp_fail(p, "unterminated escape");
      goto fail;
    }
    char e = *p->p++;
    char lit = 0;
    switch (e) {
    case '"': lit = '"'; break;
    case '\\': lit = '\\'; break;
    case '/': lit = '/'; break;
    case 'b': lit = '\b'; break;
    case 'f': lit = '\f'; break;
    case 'n': lit = '\n'; break;
    case 'r': lit = '\r'; break;
    case 't': lit = '\t'; break;
    case 'u': {
      unsigned cp;
      if ((rc = jp_hex4(p, &cp)) != RK_OK) goto fail;
      if (cp >= 0xDC00 && cp <= 0xDFFF) {
        rc = jp_fail(p, "lone low surrogate in \\u escape");
        goto fail;
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        unsigned lo;
        if (!jp_lit(p, "\\u")) {
          rc = jp_fail(p, "high surrogate without low surrogate");
          goto fail;
        }
        if ((rc = jp_hex4(p, &lo)) != RK_OK) goto fail;
        if (lo < 0xDC00 || lo > 0xDFFF) {
          rc = jp_fail(p, "high surrogate without low surrogate");
          goto fail;
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      if (cp == 0) {
        rc = jp_fail(p, "\\u0000 in string is not supported");
        goto fail;
      }
      /* 6 raw bytes (\uXXXX) always cover up to 3 encoded bytes, 12 cover 4. */
      if (buf) n += utf8_put(buf + n, cp);
      continue;
    }
    default: rc = jp_fail(p, "bad escape \\%c", e >= 0x20 && e < 0x7f ? e : '?'); goto fail;
    }
    if (buf) buf[n++] = lit;
  }
  if (buf) {
    buf[n] = '\0';
    *out = buf;
  }
  return RK_OK;
fail:
  free(buf);
  return rc;
}

/* JSON number grammar; sets kind J_INT when it is a plain non-negative
 * integer below 2^53, else J_OTHER with num_not_int. */
static int jp_number(jp *p, jval *v) {
  const char *s = p->p;
  bool neg = false, frac = false;
  if (p->p < p->end && *p->p == '-') {
    neg = true;
    p->p++;
  }
  if (p->p >= p->end || !(*p->p >= '0' && *p->p <= '9')) return jp_fail(p, "bad number");
  if (*p->p == '0') {
    p->p++;
  } else {
    while (p->p < p->end && *p->p >= '0' && *p->p <= '9') p->p++;
  }
  const char *int_end = p->p;
  if (p->p < p->end && *p->p == '.') {
    frac = true;
    p->p++;
    if (p->p >= p->end || !(*p->p >= '0' && *p->p <= '9')) return jp_fail(p, "bad number");
    while (p->p < p->end && *p->p >= '0' && *p->p <= '9') p->p++;
  }
  if (p->p < p->end && (*p->p == 'e' || *p->p == 'E')) {
    frac = true;
    p->p++;
    if (p->p < p->end && (*p->p == '+' || *p->p == '-')) p->p++;
    if (p->p >= p->end || !(*p->p >= '0' && *p->p <= '9')) return jp_fail(p, "bad number");
    while (p->p < p->end && *p->p >= '0' && *p->p <= '9') p->p++;
  }
  v->kind = J_OTHER;
  v->num_not_int = true;
  if (neg || frac || int_end - s > 16) return RK_OK; /* 2^53 has 16 digits */
  uint64_t x = 0;
  for (const char *q = s; q < int_end; q++) x = x * 10 + (uint64_t)(*q - '0');
  if (x >= SIM_HIST_INT_LIMIT) return RK_OK;
  v->kind = J_INT;
  v->num_not_int = false;
  v->i = x;
  return RK_OK;
}

static int jp_value(jp *p, jval *v, bool keep_str, int depth);

/* Skip an object or array (p->p at '{' or '['). */
static int jp_container(jp *p, int depth) {
  if (depth >= HIST_MAX_DEPTH) return jp_fail(p, "nesting deeper than %d", HIST_MAX_DEPTH);
  char close = *p->p == '{' ? '}' : ']';
  bool obj = close == '}';
  p->p++;
  jp_ws(p);
  if (p->p < p->end && *p->p == close) {
    p->p++;
    return RK_OK;
  }
  for (;;) {
    int rc;
    jval v = {0};
    if (obj) {
      jp_ws(p);
      if (p->p >= p->end || *p->p != '"') return jp_fail(p, "expected a field name");
      if ((rc = jp_string(p, NULL)) != RK_OK) return rc;
      jp_ws(p);
      if (p->p >= p->end || *p->p != ':') return jp_fail(p, "expected ':'");
      p->p++;
    }
    if ((rc = jp_value(p, &v, false, depth + 1)) != RK_OK) return rc;
    jp_ws(p);
    if (p->p >= p->end) return jp_fail(p, "unterminated %s", obj ? "object" : "array");
    if (*p->p == ',') {
      p->p++;
      continue;
    }
    if (*p->p == close) {
      p->p++;
      return RK_OK;
    }
    return jp_fail(p, "expected ',' or '%c'", close);
  }
}

static int jp_value(jp *p, jval *v, bool keep_str, int depth) {
  jp_ws(p);
  if (p->p >= p->end) return jp_fail(p, "expected a value");
  char c = *p->p;
  v->kind = J_OTHER;
  if (c == '"') {
    v->kind = J_STR;
    return jp_string(p, keep_str ? &v->s : NULL);
  }
  if (c == '{' || c == '[') return jp_container(p, depth);
  if (c == '-' || (c >= '0' && c <= '9')) return jp_number(p, v);
  if (jp_lit(p, "true")) {
    v->kind = J_BOOL;
    v->b = true;
    return RK_OK;
  }
  if (jp_lit(p, "false")) {
    v->kind = J_BOOL;
    v->b = false;
    return RK_OK;
  }
  if (jp_lit(p, "null")) {
    v->kind = J_NULL;
    return RK_OK;
  }
  return jp_fail(p, "unexpected byte 0x%02x", (unsigned char)c);
}

/* The fields we know, in the order of a bitmask of those seen. */
enum { F_CLIENT, F_OP, F_KEY, F_CALL, F_RETURN, F_OK, F_VALUE, F_EXPECTED, F_NEW, F_SWAPPED, F_N };
static const char *const field_names[F_N] = {"client", "op",    "key",      "call", "return",
                                             "ok",     "value", "expected", "new",  "swapped"};

static const char *kind_name(const jval *v) {
  switch (v->kind) {
  case J_NULL: return "null";
  case J_BOOL: return "a bool";
  case J_INT: return "an integer";
  case J_STR: return "a string";
  case J_OTHER:
    return v->num_not_int ? "a number outside [0, 2^53) or not an integer" : "an object or array";
  }
  return "?";
}

int sim_hist_parse_line(sim_hist *h, const char *line, size_t len, sim_hist_err *err) {
  jp p = {.p = line, .end = line + len, .err = err};
  jp_ws(&p);
  if (p.p == p.end || *p.p == '#') return RK_OK;
  jval f[F_N];
  memset(f, 0, sizeof(f));
  unsigned seen = 0;
  int rc;
  if (*p.p != '{') {
    rc = jp_fail(&p, "a line must be a JSON object");
    goto out;
  }
  p.p++;
  jp_ws(&p);
  if (p.p < p.end && *p.p == '}') {
    p.p++;
  } else {
    for (;;) {
      char *name = NULL;
      jp_ws(&p);
      if (p.p >= p.end || *p.p != '"') {
        rc = jp_fail(&p, "expected a field name");
        goto out;
      }
      if ((rc = jp_string(&p, &name)) != RK_OK) goto out;
      int fi = -1;
      for (int i = 0; i < F_N; i++)
        if (strcmp(name, field_names[i]) == 0) fi = i;
      free(name);
      jp_ws(&p);
      if (p.p >= p.end || *p.p != ':') {
        rc = jp_fail(&p, "expected ':'");
        goto out;
      }
      p.p++;
      if (fi >= 0) {
        if (seen & 1u << fi) {
          rc = jp_fail(&p, "field \"%s\" given twice", field_names[fi]);
          goto out;
        }
        seen |= 1u << fi;
        rc = jp_value(&p, &f[fi], true, 1);
      } else {
        jval skip = {0};
        rc = jp_value(&p, &skip, false, 1);
      }
      if (rc != RK_OK) goto out;
      jp_ws(&p);
      if (p.p < p.end && *p.p == ',') {
        p.p++;
        continue;
      }
      if (p.p < p.end && *p.p == '}') {
        p.p++;
        break;
      }
      rc = jp_fail(&p, "expected ',' or '}'");
      goto out;
    }
  }
  jp_ws(&p);
  if (p.p != p.end) {
    rc = jp_fail(&p, "trailing bytes after the object");
    goto out;
  }

  /* Typed checks. want(F, kind...) style, spelled out for clear messages. */
#define NEED(fi)                                                                                   \
  do {                                                                                             \
    if (!(seen & 1u << (fi))) {                                                                    \
      rc = jp_fail(&p, "missing field \"%s\"", field_names[fi]);                                   \
      goto out;                                                                                    \
    }                                                                                              \
  } while (0)
#define TYPE(fi, cond, what)                                                                       \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      rc = jp_fail(&p, "field \"%s\": expected %s, got %s", field_names[fi], what,                 \
                   kind_name(&f[fi]));                                                             \
      goto out;                                                                                    \
    }                                                                                              \
  } while (0)

  sim_hist_rec r = {0};
  NEED(F_CLIENT);
  TYPE(F_CLIENT, f[F_CLIENT].kind == J_INT, "an integer in [0, 2^53)");
  r.client = f[F_CLIENT].i;
  NEED(F_OP);
  TYPE(F_OP, f[F_OP].kind == J_STR, "a string");
  if (strcmp(f[F_OP].s, "put") == 0)
    r.op = SIM_HIST_PUT;
  else if (strcmp(f[F_OP].s, "get") == 0)
    r.op = SIM_HIST_GET;
  else if (strcmp(f[F_OP].s, "delete") == 0)
    r.op = SIM_HIST_DELETE;
  else if (strcmp(f[F_OP].s, "cas") == 0)
    r.op = SIM_HIST_CAS;
  else {
    rc = jp_fail(&p, "field \"op\": unknown operation (want put, get, delete or cas)");
    goto out;
  }
  NEED(F_KEY);
  TYPE(F_KEY, f[F_KEY].kind == J_STR, "a string");
  NEED(F_CALL);
  TYPE(F_CALL, f[F_CALL].kind == J_INT, "an integer in [0, 2^53)");
  r.call = f[F_CALL].i;
  NEED(F_OK);
  TYPE(F_OK, f[F_OK].kind == J_BOOL || f[F_OK].kind == J_NULL, "true, false or null");
  r.ok = f[F_OK].kind == J_NULL ? SIM_HIST_NULL : f[F_OK].b ? SIM_HIST_TRUE : SIM_HIST_FALSE;
  if (r.ok != SIM_HIST_NULL) {
    NEED(F_RETURN);
    TYPE(F_RETURN, f[F_RETURN].kind == J_INT, "an integer in [0, 2^53)");
    r.ret = f[F_RETURN].i;
    if (r.ret < r.call) {
      rc = jp_fail(&p, "return (%llu) before call (%llu)", (unsigned long long)r.ret,
                   (unsigned long long)r.call);
      goto out;
    }
  }
  bool want_value = r.op == SIM_HIST_PUT || (r.op == SIM_HIST_GET && r.ok == SIM_HIST_TRUE);
  if (want_value) {
    NEED(F_VALUE);
    if (r.op == SIM_HIST_PUT)
      TYPE(F_VALUE, f[F_VALUE].kind == J_STR, "a string");
    else
      TYPE(F_VALUE, f[F_VALUE].kind == J_STR || f[F_VALUE].kind == J_NULL, "a string or null");
  }
  if (r.op == SIM_HIST_CAS) {
    NEED(F_EXPECTED);
    TYPE(F_EXPECTED, f[F_EXPECTED].kind == J_STR || f[F_EXPECTED].kind == J_NULL,
         "a string or null");
    NEED(F_NEW);
    TYPE(F_NEW, f[F_NEW].kind == J_STR, "a string");
    if (r.ok == SIM_HIST_TRUE) {
      NEED(F_SWAPPED);
      TYPE(F_SWAPPED, f[F_SWAPPED].kind == J_BOOL, "a bool");
      r.swapped = f[F_SWAPPED].b;
    }
  }
#undef NEED
#undef TYPE
  /* Hand the strings over to the record. */
  r.key = f[F_KEY].s;
  f[F_KEY].s = NULL;
  if (want_value) {
    r.value = f[F_VALUE].s;
    f[F_VALUE].s = NULL;
  }
  if (r.op == SIM_HIST_CAS) {
    r.expected = f[F_EXPECTED].s;
    r.new_value = f[F_NEW].s;
    f[F_EXPECTED].s = f[F_NEW].s = NULL;
  }
  RK_ASSERT(sim_hist_validate(&r, NULL) == RK_OK);
  rc = hist_push_owned(h, &r);
  if (rc != RK_OK) rec_free(&r);
out:
  for (int i = 0; i < F_N; i++) free(f[i].s);
  return rc;
}

static void err_set(sim_hist_err *err, size_t line, int rc, const char *what) {
  if (!err) return;
  err->line = line;
  snprintf(err->msg, sizeof(err->msg), "%s: %s", what, rk_strerror(rc));
}

/* Parse one line with its number; strips a BOM on line 1. */
static int parse_numbered(sim_hist *h, const char *s, size_t n, size_t lineno, sim_hist_err *err) {
  sim_hist_err local;
  sim_hist_err *e = err ? err : &local;
  if (lineno == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
    s += 3;
    n -= 3;
  }
  e->msg[0] = '\0';
  int rc = sim_hist_parse_line(h, s, n, e);
  if (rc != RK_OK) {
    e->line = lineno;
    if (rc == RK_ENOMEM) snprintf(e->msg, sizeof(e->msg), "%s", rk_strerror(rc));
  }
  return rc;
}

int sim_hist_read_buf(const char *buf, size_t len, sim_hist *h, sim_hist_err *err) {
  size_t lineno = 0;
  const char *p = buf, *end = buf + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    int rc = parse_numbered(h, p, (size_t)(le - p), ++lineno, err);
    if (rc != RK_OK) return rc;
    p = nl ? nl + 1 : end;
  }
  return RK_OK;
}

int sim_hist_read(FILE *f, sim_hist *h, sim_hist_err *err) {
  char *line = NULL;
  size_t cap = 0, lineno = 0;
  ssize_t n;
  int rc = RK_OK;
  errno = 0;
  while ((n = getline(&line, &cap, f)) >= 0) {
    size_t len = (size_t)n;
    if (len > 0 && line[len - 1] == '\n') len--;
    if ((rc = parse_numbered(h, line, len, ++lineno, err)) != RK_OK) goto out;
  }
  if (ferror(f)) {
    rc = errno == ENOMEM ? RK_ENOMEM : RK_EIO;
    err_set(err, lineno + 1, rc, "reading history");
  }
out:
  free(line);
  return rc;
}

int sim_hist_read_file(const char *path, sim_hist *h, sim_hist_err *err) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (!f) {
    int rc = errno == ENOENT ? RK_ENOTFOUND : RK_EIO;
    err_set(err, 0, rc, "opening history");
    return rc;
  }
  int rc = sim_hist_read(f, h, err);
  if (f != stdin) fclose(f);
  return rc;
}
