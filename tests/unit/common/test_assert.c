#include "common/rk_assert.h"

#include <criterion/criterion.h>
#include <signal.h>

Test(assert, holds_quietly) {
  int x = 1;
  RK_ASSERT(x == 1);
  RK_ASSERTF(x > 0, "x=%d", x);
}

Test(assert, broken_invariant_aborts, .signal = SIGABRT) {
  volatile int x = 2;
  RK_ASSERTF(x == 1, "x=%d", x);
}
