/* tests/unit/node/node_test.c — helpers shared by the node tests. */
#include "node_test.h"

#include "common/rk_err.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>

const char *node_test_user_keys(eng_state *s, int with_values, char *out, size_t cap) {
  size_t at = 0;
  out[0] = '\0';
  eng_state_iter *it = eng_state_iter_new(s, NULL, 0, NULL, 0);
  cr_assert_not_null(it);
  for (; eng_state_iter_valid(it); eng_state_iter_next(it)) {
    size_t kl = 0, vl = 0;
    const char *k = eng_state_iter_key(it, &kl);
    const char *v = with_values ? eng_state_iter_value(it, &vl) : "";
    at += (size_t)snprintf(out + at, cap - at, "%s%.*s%s%.*s", at ? " " : "", (int)kl, k,
                           with_values ? "=" : "", (int)vl, v);
    cr_assert_lt(at, cap, "user keys do not fit %zu bytes", cap);
  }
  cr_assert_eq(eng_state_iter_status(it), RK_OK);
  eng_state_iter_free(it);
  return out;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

void node_test_rmtree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }
