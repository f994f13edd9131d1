#include "common/rk_log.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fixed_clock(void *ctx) { return *(uint64_t *)ctx; }

/* Captures log output in memory; returns the buffer (caller frees). */
typedef struct capture {
  char *buf;
  size_t len;
  FILE *f;
} capture;

static void capture_start(capture *c) {
  c->buf = NULL;
  c->len = 0;
  c->f = open_memstream(&c->buf, &c->len);
  cr_assert_not_null(c->f);
  rk_log_set_sink(c->f);
}

static void capture_end(capture *c) {
  rk_log_set_sink(NULL);
  fclose(c->f);
}

Test(log, level_filtering) {
  capture c;
  capture_start(&c);
  rk_log_set_level(RK_LOG_WARN);
  RK_ERROR("test", "e%d", 1);
  RK_WARN("test", "w%d", 2);
  RK_INFO("test", "i%d", 3);
  RK_DEBUG("test", "d%d", 4);
  capture_end(&c);
  cr_assert_not_null(strstr(c.buf, "e1"));
  cr_assert_not_null(strstr(c.buf, "w2"));
  cr_assert_null(strstr(c.buf, "i3"));
  cr_assert_null(strstr(c.buf, "d4"));
  free(c.buf);
  cr_assert(rk_log_enabled(RK_LOG_WARN));
  cr_assert(!rk_log_enabled(RK_LOG_INFO));
  rk_log_set_level(RK_LOG_TRACE);
  cr_assert(rk_log_enabled(RK_LOG_TRACE));
}

Test(log, line_has_time_node_level_module) {
  uint64_t now = 12345678901ull; /* 12.345678901 s */
  capture c;
  capture_start(&c);
  rk_log_set_clock(fixed_clock, &now);
  rk_log_set_node(3);
  rk_log_set_level(RK_LOG_INFO);
  RK_INFO("wal", "synced %d entries", 17);
  capture_end(&c);
  rk_log_set_clock(NULL, NULL);
  cr_assert_str_eq(c.buf, "12.345678 n3 info  wal: synced 17 entries\n");
  free(c.buf);
}

Test(log, parse_levels_and_env) {
  cr_assert_eq(rk_log_level_parse("error"), RK_LOG_ERROR);
  cr_assert_eq(rk_log_level_parse("DEBUG"), RK_LOG_DEBUG);
  cr_assert_eq(rk_log_level_parse("trace"), RK_LOG_TRACE);
  cr_assert_eq(rk_log_level_parse("loud"), -1);
  cr_assert_eq(rk_log_level_parse(NULL), -1);
  cr_assert_str_eq(rk_log_level_name(RK_LOG_INFO), "info");
  setenv("RANGEKV_LOG", "debug", 1);
  cr_assert_eq(rk_log_init_from_env(), 0);
  cr_assert_eq(rk_log_get_level(), RK_LOG_DEBUG);
  setenv("RANGEKV_LOG", "nonsense", 1);
  cr_assert_eq(rk_log_init_from_env(), -1);
  cr_assert_eq(rk_log_get_level(), RK_LOG_DEBUG, "invalid env leaves level alone");
  unsetenv("RANGEKV_LOG");
}
