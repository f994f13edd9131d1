/* rk_assert.h — invariant assertions that are never compiled out.
 *
 * RK_ASSERT is for OUR invariants (a bug if it fires). Input from disk or the
 * network is never checked with it: corrupt or hostile bytes are an error value
 * (RK_ECORRUPT, RK_EMALFORMED), not a crash. A firing assertion prints
 * file:line, the expression and an optional message to stderr, then aborts so
 * tests and the simulator stop loudly at the first broken invariant.
 */
#ifndef RK_ASSERT_H
#define RK_ASSERT_H

#include <stdnoreturn.h>

noreturn void rk_assert_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define RK_ASSERT(cond)                                                                            \
  do {                                                                                             \
    if (__builtin_expect(!(cond), 0)) rk_assert_fail(__FILE__, __LINE__, #cond, "%s", "");         \
  } while (0)

/* RK_ASSERTF(cond, "fmt", ...): with a message explaining the state. */
#define RK_ASSERTF(cond, ...)                                                                      \
  do {                                                                                             \
    if (__builtin_expect(!(cond), 0)) rk_assert_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);      \
  } while (0)

#define RK_UNREACHABLE() rk_assert_fail(__FILE__, __LINE__, "unreachable", "%s", "")

#endif
