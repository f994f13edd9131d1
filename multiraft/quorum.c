/* quorum.c — majority math (Raft §5.2/§5.3; joint consensus thesis §4.3).
 *
 * A configuration has one voter set (MR_VOTER_IN) or, while joint, two
 * (MR_VOTER_IN = C_new, MR_VOTER_OUT = C_old). A decision needs a majority of
 * every non-empty voter set. Learners never count.
 */
#include "multiraft/raft_int.h"

int mr_quorum_is_voter(uint8_t flags) { return (flags & (MR_VOTER_IN | MR_VOTER_OUT)) != 0; }

/* Largest v with a majority of the set `mask` holding vals >= v. */
static uint64_t majority_index(const mr_progress *prs, size_t n, const uint64_t *vals,
                               uint8_t mask) {
  uint64_t s[MR_MAX_REPLICAS];
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (prs[i].flags & mask) s[k++] = vals[i];
  if (k == 0) return UINT64_MAX; /* an empty set agrees to everything */
  /* insertion sort, descending: k <= 8 */
  for (size_t i = 1; i < k; i++) {
    uint64_t v = s[i];
    size_t j = i;
    while (j > 0 && s[j - 1] < v) {
      s[j] = s[j - 1];
      j--;
    }
    s[j] = v;
  }
  size_t q = k / 2 + 1; /* majority size */
  RK_ASSERT(q >= 1 && q <= k);
  RK_ASSERT(k == 1 || s[0] >= s[k - 1]); /* sorted descending */
  return s[q - 1];
}

uint64_t mr_quorum_index(const mr_progress *prs, size_t n, const uint64_t *vals) {
  RK_ASSERT(n <= MR_MAX_REPLICAS);
  uint64_t a = majority_index(prs, n, vals, MR_VOTER_IN);
  uint64_t b = majority_index(prs, n, vals, MR_VOTER_OUT);
  uint64_t q = a < b ? a : b;
  /* the result is one of the inputs (or "no voters") */
  int found = q == UINT64_MAX;
  for (size_t i = 0; i < n && !found; i++) found = vals[i] == q;
  RK_ASSERT(found);
  return q;
}

static int set_result(const mr_progress *prs, size_t n, uint8_t mask) {
  size_t voters = 0, yes = 0, no = 0;
  for (size_t i = 0; i < n; i++) {
    if (!(prs[i].flags & mask)) continue;
    voters++;
    if (prs[i].vote == MR_VOTE_GRANTED) yes++;
    if (prs[i].vote == MR_VOTE_REJECTED) no++;
  }
  if (voters == 0) return MR_VOTE_WON;
  RK_ASSERT(yes + no <= voters);
  size_t q = voters / 2 + 1;
  if (yes >= q) return MR_VOTE_WON;
  if (voters - no < q) return MR_VOTE_LOST;
  return MR_VOTE_PENDING;
}

int mr_quorum_vote_result(const mr_progress *prs, size_t n) {
  RK_ASSERT(n <= MR_MAX_REPLICAS);
  int a = set_result(prs, n, MR_VOTER_IN);
  int b = set_result(prs, n, MR_VOTER_OUT);
  if (a == MR_VOTE_LOST || b == MR_VOTE_LOST) return MR_VOTE_LOST;
  if (a == MR_VOTE_WON && b == MR_VOTE_WON) return MR_VOTE_WON;
  return MR_VOTE_PENDING;
}
