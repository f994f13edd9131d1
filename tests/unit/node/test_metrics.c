/* node/node_metrics.c: which HTTP requests get the metrics. */
#include "node/node_int.h"

#include <criterion/criterion.h>
#include <string.h>

static int route(const char *req) { return node_metrics_route(req, strlen(req)); }

Test(metrics, only_get_metrics_is_served) {
  cr_assert_eq(route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
  cr_assert_eq(route("GET /metrics?name[]=x HTTP/1.0\r\n\r\n"), 200, "query strings are ignored");
  cr_assert_eq(route("GET /metrics HTTP/1.1\n\n"), 200, "bare newlines too");
  cr_assert_eq(route("GET / HTTP/1.1\r\n\r\n"), 404);
  cr_assert_eq(route("GET /metricsx HTTP/1.1\r\n\r\n"), 404);
  cr_assert_eq(route("GET /metric HTTP/1.1\r\n\r\n"), 404);
  cr_assert_eq(route("POST /metrics HTTP/1.1\r\n\r\n"), 405);
  cr_assert_eq(route("HEAD /metrics HTTP/1.1\r\n\r\n"), 405);
}

Test(metrics, garbage_is_a_bad_request_never_a_crash) {
  cr_assert_eq(route("garbage\r\n\r\n"), 400);
  cr_assert_eq(route("GET\r\n\r\n"), 400);
  cr_assert_eq(route("GET /metrics\r\n\r\n"), 400, "no protocol version");
  cr_assert_eq(route("no newline at all"), 400);
  cr_assert_eq(route(""), 400);
  char junk[300];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)(i * 131 + 7);
  for (size_t len = 0; len <= sizeof junk; len++) {
    int c = node_metrics_route(junk, len);
    cr_assert(c == 200 || c == 400 || c == 404 || c == 405, "len %zu: %d", len, c);
  }
}
