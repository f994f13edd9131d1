/* tests/unit/node/node_test.h — helpers shared by the node tests. */
#ifndef NODE_TEST_H
#define NODE_TEST_H

#include "engine/state.h"

#include <stddef.h>

/* Every user key of s in order, space-separated, into out; each followed
 * by "=value" when with_values. Fails the test if out is too small. */
const char *node_test_user_keys(eng_state *s, int with_values, char *out, size_t cap);

/* Removes dir and everything under it. */
void node_test_rmtree(const char *dir);

#endif
