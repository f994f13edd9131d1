#include "common/rk_err.h"
#include "common/rk_rand.h"
#include "sim/history.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The example of shared/HISTORY.md, byte for byte. */
static const char *const example[] = {
    "{\"client\":1,\"op\":\"put\",\"key\":\"k7\",\"value\":\"c1-42\",\"call\":1000,\"return\":1800,"
    "\"ok\":true}",
    "{\"client\":2,\"op\":\"get\",\"key\":\"k7\",\"value\":\"c1-42\",\"call\":1500,\"return\":2100,"
    "\"ok\":true}",
    "{\"client\":3,\"op\":\"delete\",\"key\":\"k7\",\"call\":2200,\"ok\":null}",
    "{\"client\":1,\"op\":\"cas\",\"key\":\"k7\",\"expected\":\"c1-42\",\"new\":\"c1-43\","
    "\"call\":3000,\"return\":3600,\"ok\":true,\"swapped\":true}",
};

static char *write_all(const sim_hist *h) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_assert_not_null(f);
  cr_assert_eq(sim_hist_write(f, h), RK_OK);
  fclose(f);
  return buf;
}

static bool str_eq_opt(const char *a, const char *b) {
  if (!a || !b) return a == b;
  return strcmp(a, b) == 0;
}

static void assert_rec_eq(const sim_hist_rec *a, const sim_hist_rec *b) {
  cr_assert_eq(a->client, b->client);
  cr_assert_eq(a->op, b->op);
  cr_assert_eq(a->ok, b->ok);
  cr_assert_str_eq(a->key, b->key);
  cr_assert(str_eq_opt(a->value, b->value), "value %s vs %s", a->value ? a->value : "(null)",
            b->value ? b->value : "(null)");
  cr_assert(str_eq_opt(a->expected, b->expected));
  cr_assert(str_eq_opt(a->new_value, b->new_value));
  cr_assert_eq(a->swapped, b->swapped);
  cr_assert_eq(a->call, b->call);
  cr_assert_eq(a->ret, b->ret);
}

Test(history, writes_the_documented_example_exactly) {
  sim_hist h;
  sim_hist_init(&h);
  sim_hist_rec r[] = {
      {.client = 1,
       .op = SIM_HIST_PUT,
       .key = "k7",
       .value = "c1-42",
       .call = 1000,
       .ret = 1800,
       .ok = SIM_HIST_TRUE},
      {.client = 2,
       .op = SIM_HIST_GET,
       .key = "k7",
       .value = "c1-42",
       .call = 1500,
       .ret = 2100,
       .ok = SIM_HIST_TRUE},
      /* ret is dropped for a null outcome */
      {.client = 3,
       .op = SIM_HIST_DELETE,
       .key = "k7",
       .call = 2200,
       .ret = 9999,
       .ok = SIM_HIST_NULL},
      {.client = 1,
       .op = SIM_HIST_CAS,
       .key = "k7",
       .expected = "c1-42",
       .new_value = "c1-43",
       .call = 3000,
       .ret = 3600,
       .ok = SIM_HIST_TRUE,
       .swapped = true},
  };
  for (size_t i = 0; i < 4; i++) cr_assert_eq(sim_hist_add(&h, &r[i]), RK_OK);
  char *out = write_all(&h);
  char want[1024] = "";
  for (size_t i = 0; i < 4; i++) {
    strcat(want, example[i]);
    strcat(want, "\n");
  }
  cr_assert_str_eq(out, want);
  free(out);
  sim_hist_free(&h);
}

Test(history, reads_the_example_with_comments_blanks_and_unknown_fields) {
  char buf[2048];
  snprintf(buf, sizeof(buf),
           "\xEF\xBB\xBF# a comment\n"
           "\n"
           "   \t\r\n"
           "%s\r\n"
           "  # indented comment\n"
           "%s\n"
           "%s\n"
           "%s",
           example[0], example[1], example[2], example[3]);
  /* Add unknown fields of every kind to the second record. */
  char *p = strstr(buf, "\"client\":2,");
  cr_assert_not_null(p);
  const char *extra = "\"node\":{\"a\":[1,2.5e3,-7,{\"b\":null}],\"c\":\"x\\\"y\"},\"err\":false,";
  memmove(p + strlen(extra), p, strlen(p) + 1);
  memcpy(p, extra, strlen(extra));

  sim_hist h;
  sim_hist_init(&h);
  sim_hist_err err = {0};
  cr_assert_eq(sim_hist_read_buf(buf, strlen(buf), &h, &err), RK_OK, "line %zu: %s", err.line,
               err.msg);
  cr_assert_eq(h.len, 4);
  cr_assert_eq(h.v[0].op, SIM_HIST_PUT);
  cr_assert_str_eq(h.v[0].value, "c1-42");
  cr_assert_eq(h.v[0].call, 1000);
  cr_assert_eq(h.v[0].ret, 1800);
  cr_assert_eq(h.v[1].op, SIM_HIST_GET);
  cr_assert_eq(h.v[1].client, 2);
  cr_assert_eq(h.v[2].op, SIM_HIST_DELETE);
  cr_assert_eq(h.v[2].ok, SIM_HIST_NULL);
  cr_assert_eq(h.v[3].op, SIM_HIST_CAS);
  cr_assert_str_eq(h.v[3].expected, "c1-42");
  cr_assert_str_eq(h.v[3].new_value, "c1-43");
  cr_assert(h.v[3].swapped);
  /* Written back, it is the example itself. */
  char *out = write_all(&h);
  char want[1024] = "";
  for (size_t i = 0; i < 4; i++) {
    strcat(want, example[i]);
    strcat(want, "\n");
  }
  cr_assert_str_eq(out, want);
  free(out);
  sim_hist_free(&h);
}

Test(history, round_trip_every_shape_and_awkward_strings) {
  sim_hist h, back;
  sim_hist_init(&h);
  sim_hist_init(&back);
  const char *vals[] = {"plain",           "q\"uote",
                        "back\\slash",     "nl\ncr\rtab\t",
                        "ctl\x01\x1f\x7f", "caf\xc3\xa9 \xf0\x9f\x98\x80",
                        "/slash",          ""};
  uint64_t t = 0;
  for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
    for (int ok = 0; ok < 3; ok++) {
      const char *v = vals[i];
      sim_hist_rec rs[] = {
          {.client = i, .op = SIM_HIST_PUT, .key = v, .value = v},
          {.client = i, .op = SIM_HIST_GET, .key = "k", .value = v},
          {.client = i, .op = SIM_HIST_GET, .key = "k", .value = NULL},
          {.client = i, .op = SIM_HIST_DELETE, .key = v},
          {.client = i,
           .op = SIM_HIST_CAS,
           .key = "k",
           .expected = v,
           .new_value = "n",
           .swapped = true},
          {.client = i, .op = SIM_HIST_CAS, .key = "k", .expected = NULL, .new_value = v},
      };
      for (size_t j = 0; j < sizeof(rs) / sizeof(rs[0]); j++) {
        rs[j].ok = (sim_hist_ok)ok;
        rs[j].call = t;
        rs[j].ret = ok == SIM_HIST_NULL ? 0 : t + 7;
        t += 3;
        cr_assert_eq(sim_hist_add(&h, &rs[j]), RK_OK);
      }
    }
  }
  /* The largest integers allowed. */
  sim_hist_rec big = {.client = SIM_HIST_INT_LIMIT - 1,
                      .op = SIM_HIST_PUT,
                      .key = "big",
                      .value = "v",
                      .call = SIM_HIST_INT_LIMIT - 2,
                      .ret = SIM_HIST_INT_LIMIT - 1,
                      .ok = SIM_HIST_TRUE};
  cr_assert_eq(sim_hist_add(&h, &big), RK_OK);
  char *out = write_all(&h);
  sim_hist_err err = {0};
  cr_assert_eq(sim_hist_read_buf(out, strlen(out), &back, &err), RK_OK, "line %zu: %s", err.line,
               err.msg);
  cr_assert_eq(back.len, h.len);
  for (size_t i = 0; i < h.len; i++) assert_rec_eq(&back.v[i], &h.v[i]);
  char *again = write_all(&back);
  cr_assert_str_eq(again, out);
  /* Control bytes never appear raw in the output. */
  for (const char *p = out; *p; p++) cr_assert(*p == '\n' || (unsigned char)*p >= 0x20);
  free(out);
  free(again);
  sim_hist_free(&h);
  sim_hist_free(&back);
}

Test(history, decodes_unicode_escapes) {
  const char *line = "{\"client\":0,\"op\":\"put\",\"key\":\"\\u006b\\/\",\"value\":"
                     "\"\\u00e9\\u20ac\\ud83d\\ude00\\b\\f\",\"call\":1,\"return\":2,\"ok\":true}";
  sim_hist h;
  sim_hist_init(&h);
  sim_hist_err err = {0};
  cr_assert_eq(sim_hist_parse_line(&h, line, strlen(line), &err), RK_OK, "%s", err.msg);
  cr_assert_eq(h.len, 1);
  cr_assert_str_eq(h.v[0].key, "k/");
  cr_assert_str_eq(h.v[0].value, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\b\f");
  sim_hist_free(&h);
}

Test(history, ignored_fields_and_null_return) {
  /* return on a null outcome, value on a delete, swapped on a failed cas:
   * all ignored whatever their type. */
  const char *lines =
      "{\"client\":0,\"op\":\"delete\",\"key\":\"k\",\"value\":[1],\"call\":5,\"return\":\"x\","
      "\"ok\":null}\n"
      "{\"client\":0,\"op\":\"get\",\"key\":\"k\",\"value\":7,\"call\":5,\"return\":6,\"ok\":false}"
      "\n"
      "{\"client\":0,\"op\":\"cas\",\"key\":\"k\",\"expected\":null,\"new\":\"n\",\"call\":5,"
      "\"ok\":null,\"swapped\":3}\n";
  sim_hist h;
  sim_hist_init(&h);
  sim_hist_err err = {0};
  cr_assert_eq(sim_hist_read_buf(lines, strlen(lines), &h, &err), RK_OK, "line %zu: %s", err.line,
               err.msg);
  cr_assert_eq(h.len, 3);
  cr_assert_eq(h.v[0].ret, 0);
  cr_assert_null(h.v[0].value);
  cr_assert_null(h.v[1].value);
  cr_assert_eq(h.v[1].ok, SIM_HIST_FALSE);
  cr_assert_null(h.v[2].expected);
  cr_assert_not(h.v[2].swapped);
  sim_hist_free(&h);
}

/* Each bad line, placed as line 3 after a good line and a comment, must be
 * RK_EMALFORMED at line 3 with a message. */
Test(history, rejects_malformed_lines_with_their_line_number) {
  static const char *const bad[] = {
      "{",
      "[]",
      "\"just a string\"",
      "{\"client\":1}",
      "{\"client\":1,\"op\":\"inc\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":-1,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":1.5,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":9007199254740992,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,"
      "\"ok\":true}",
      "{\"client\":1e2,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":99999999999999999999999,\"op\":\"delete\",\"key\":\"k\",\"call\":1,"
      "\"return\":2,\"ok\":true}",
      "{\"client\":01,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":\"1\",\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":\"true\"}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":3,\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":3,\"ok\":true}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":3,\"ok\":false}",
      "{\"client\":1,\"op\":\"delete\",\"key\":7,\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":null,\"call\":1,\"return\":2,"
      "\"ok\":true}",
      "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"call\":1,\"ok\":null}",
      "{\"client\":1,\"op\":\"get\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"cas\",\"key\":\"k\",\"expected\":null,\"call\":1,\"ok\":null}",
      "{\"client\":1,\"op\":\"cas\",\"key\":\"k\",\"new\":\"n\",\"call\":1,\"ok\":null}",
      "{\"client\":1,\"op\":\"cas\",\"key\":\"k\",\"expected\":null,\"new\":\"n\",\"call\":1,"
      "\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"cas\",\"key\":\"k\",\"expected\":null,\"new\":\"n\",\"call\":1,"
      "\"return\":2,\"ok\":true,\"swapped\":1}",
      "{\"client\":1,\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,"
      "\"ok\":true}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true} x",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true,}",
      "{\"client\":1 \"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"\\q\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"a\\u0000b\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"\\udc00\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"\\ud800x\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"\\u12\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":tru}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"unterminated",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"tab\there\",\"call\":1,\"return\":2,\"ok\":true}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true,\"x\":"
      "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true,\"x\":-}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true,\"x\":1.}",
      "{\"client\":1,\"op\":\"delete\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true,\"x\":{1:"
      "2}}",
  };
  const char *good = example[0];
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s\n# comment\n%s\n%s\n", good, bad[i], good);
    sim_hist h;
    sim_hist_init(&h);
    sim_hist_err err = {0};
    int rc = sim_hist_read_buf(buf, strlen(buf), &h, &err);
    cr_assert_eq(rc, RK_EMALFORMED, "case %zu accepted: %s", i, bad[i]);
    cr_assert_eq(err.line, 3, "case %zu: line %zu", i, err.line);
    cr_assert(strlen(err.msg) > 0, "case %zu has no message", i);
    cr_assert_eq(h.len, 1, "case %zu: records before the bad line are kept", i);
    sim_hist_free(&h);
  }
  /* An embedded NUL byte is rejected, not read past. */
  char nul[] =
      "{\"client\":1,\"op\":\"delete\",\"key\":\"a\0b\",\"call\":1,\"return\":2,\"ok\":true}";
  sim_hist h;
  sim_hist_init(&h);
  sim_hist_err err = {0};
  cr_assert_eq(sim_hist_read_buf(nul, sizeof(nul) - 1, &h, &err), RK_EMALFORMED);
  cr_assert_eq(err.line, 1);
  sim_hist_free(&h);
}

/* Random corruption of valid lines: the reader returns OK or EMALFORMED and
 * never crashes (run under the Sanitize build); whatever it accepts writes
 * back to a line that reads to the same record. */
Test(history, survives_random_corruption) {
  rk_rand r;
  rk_rand_seed(&r, 4242);
  static const char alphabet[] = "{}[]\":,\\u0123456789.-eE truefalsnl\x01\xff";
  size_t accepted = 0;
  for (int iter = 0; iter < 20000; iter++) {
    char line[512];
    const char *src = example[rk_rand_below(&r, 4)];
    size_t n = strlen(src);
    memcpy(line, src, n);
    int edits = 1 + (int)rk_rand_below(&r, 4);
    for (int e = 0; e < edits; e++) {
      size_t at = rk_rand_below(&r, n + 1);
      switch (rk_rand_below(&r, 4)) {
      case 0: /* replace */
        if (at < n) line[at] = alphabet[rk_rand_below(&r, sizeof(alphabet) - 1)];
        break;
      case 1: /* delete */
        if (at < n) {
          memmove(line + at, line + at + 1, n - at - 1);
          n--;
        }
        break;
      case 2: /* insert */
        if (n + 1 < sizeof(line)) {
          memmove(line + at + 1, line + at, n - at);
          line[at] = alphabet[rk_rand_below(&r, sizeof(alphabet) - 1)];
          n++;
        }
        break;
      default: /* truncate */ n = at; break;
      }
    }
    sim_hist h;
    sim_hist_init(&h);
    sim_hist_err err = {0};
    int rc = sim_hist_parse_line(&h, line, n, &err);
    cr_assert(rc == RK_OK || rc == RK_EMALFORMED, "rc %d", rc);
    if (rc == RK_OK && h.len == 1) {
      accepted++;
      char *out = write_all(&h);
      sim_hist back;
      sim_hist_init(&back);
      cr_assert_eq(sim_hist_read_buf(out, strlen(out), &back, &err), RK_OK, "%s", out);
      cr_assert_eq(back.len, 1);
      assert_rec_eq(&back.v[0], &h.v[0]);
      sim_hist_free(&back);
      free(out);
    }
    sim_hist_free(&h);
  }
  /* Some mutations (e.g. a changed digit) stay valid; most do not. */
  cr_assert(accepted > 0 && accepted < 20000, "accepted %zu", accepted);
}

Test(history, add_rejects_invalid_records_and_keeps_history) {
  sim_hist h;
  sim_hist_init(&h);
  sim_hist_rec back_in_time = {
      .op = SIM_HIST_DELETE, .key = "k", .call = 5, .ret = 4, .ok = SIM_HIST_TRUE};
  sim_hist_rec no_value = {
      .op = SIM_HIST_PUT, .key = "k", .call = 1, .ret = 4, .ok = SIM_HIST_TRUE};
  sim_hist_rec no_key = {.op = SIM_HIST_DELETE, .call = 1, .ret = 4, .ok = SIM_HIST_TRUE};
  sim_hist_rec too_big = {
      .op = SIM_HIST_DELETE, .key = "k", .call = SIM_HIST_INT_LIMIT, .ok = SIM_HIST_NULL};
  cr_assert_eq(sim_hist_add(&h, &back_in_time), RK_EINVAL);
  cr_assert_eq(sim_hist_add(&h, &no_value), RK_EINVAL);
  cr_assert_eq(sim_hist_add(&h, &no_key), RK_EINVAL);
  cr_assert_eq(sim_hist_add(&h, &too_big), RK_EINVAL);
  cr_assert_eq(h.len, 0);
  FILE *f = fopen("/dev/null", "w");
  cr_assert_eq(sim_hist_write_rec(f, &back_in_time), RK_EINVAL);
  fclose(f);
  sim_hist_free(&h);
}

Test(history, read_file_and_missing_file) {
  char path[] = "/tmp/rk_hist_XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  FILE *f = fdopen(fd, "w");
  for (size_t i = 0; i < 4; i++) fprintf(f, "%s\n", example[i]);
  fprintf(f, "{\"client\":1,\"op\":\"get\"\n");
  fclose(f);
  sim_hist h;
  sim_hist_init(&h);
  sim_hist_err err = {0};
  cr_assert_eq(sim_hist_read_file(path, &h, &err), RK_EMALFORMED);
  cr_assert_eq(err.line, 5);
  cr_assert_eq(h.len, 4);
  sim_hist_free(&h);
  unlink(path);
  cr_assert_eq(sim_hist_read_file(path, &h, &err), RK_ENOTFOUND);
  cr_assert_eq(h.len, 0);
}
