/* confchange.c — membership: configuration values, changes, their entry
 * encoding, and switching the core's progress array to a new configuration.
 *
 * Two ways to change membership (thesis ch. 4):
 *  - single-server: at most one voter added or removed (learners freely);
 *    C_old and C_new majorities overlap, so the change applies directly.
 *  - joint consensus: enter C_old,new (every replica's old MR_VOTER_IN copied
 *    to MR_VOTER_OUT, changes applied to MR_VOTER_IN), then leave (drop
 *    MR_VOTER_OUT, MR_LEARNER_NEXT becomes MR_LEARNER).
 *
 *   simple ---enter (n>1 or JOINT_*)---> joint ---leave (n==0)---> simple
 *
 * A change takes effect when its entry is applied (raft.c advance); the
 * leader allows one in flight (pending_conf_index > applied refuses).
 */
#include "multiraft/raft_int.h"

#include <stdlib.h>
#include <string.h>

int mr_conf_is_joint(const mr_conf *c) {
  for (uint8_t i = 0; i < c->n; i++)
    if (c->r[i].flags & MR_VOTER_OUT) return 1;
  return 0;
}

uint8_t mr_conf_flags(const mr_conf *c, uint64_t id) {
  for (uint8_t i = 0; i < c->n; i++)
    if (c->r[i].id == id) return c->r[i].flags;
  return 0;
}

int mr_conf_validate(const mr_conf *c) {
  if (c->n > MR_MAX_REPLICAS) return RK_EMALFORMED;
  int joint = mr_conf_is_joint(c), voters = 0;
  for (uint8_t i = 0; i < c->n; i++) {
    uint8_t f = c->r[i].flags;
    if (c->r[i].id == 0 || f == 0 || (f & ~0x0fu)) return RK_EMALFORMED;
    for (uint8_t j = 0; j < i; j++)
      if (c->r[j].id == c->r[i].id) return RK_EMALFORMED;
    if ((f & MR_LEARNER) && (f & (MR_VOTER_IN | MR_VOTER_OUT))) return RK_EMALFORMED;
    if ((f & MR_LEARNER_NEXT) && (!(f & MR_VOTER_OUT) || (f & (MR_VOTER_IN | MR_LEARNER))))
      return RK_EMALFORMED;
    if (f & MR_VOTER_IN) voters++;
  }
  if (c->n > 0 && voters == 0) return RK_EMALFORMED;
  if (!joint && c->auto_leave) return RK_EMALFORMED;
  return RK_OK;
}

static int find(const mr_conf *c, uint64_t id) {
  for (uint8_t i = 0; i < c->n; i++)
    if (c->r[i].id == id) return i;
  return -1;
}

static void compact(mr_conf *c) {
  RK_ASSERT(c->n <= MR_MAX_REPLICAS);
  uint8_t k = 0;
  for (uint8_t i = 0; i < c->n; i++)
    if (c->r[i].flags != 0) c->r[k++] = c->r[i];
  for (uint8_t i = k; i < c->n; i++) memset(&c->r[i], 0, sizeof c->r[i]);
  c->n = k;
}

static int leave_joint(const mr_conf *cur, mr_conf *next) {
  if (!mr_conf_is_joint(cur)) return RK_EINVAL;
  *next = *cur;
  for (uint8_t i = 0; i < next->n; i++) {
    uint8_t f = next->r[i].flags & (uint8_t)~MR_VOTER_OUT;
    if (f & MR_LEARNER_NEXT) f = (uint8_t)((f & ~MR_LEARNER_NEXT) | MR_LEARNER);
    next->r[i].flags = f;
  }
  next->auto_leave = 0;
  compact(next);
  RK_ASSERT(!mr_conf_is_joint(next));
  RK_ASSERT(mr_conf_validate(next) == RK_OK);
  return RK_OK;
}

static int apply_one(mr_conf *c, const mr_cc_single *ch, int joint) {
  if (ch->id == 0) return RK_EINVAL;
  int i = find(c, ch->id);
  if (i < 0) {
    if (ch->op == MR_CC_REMOVE) return RK_OK; /* removing a stranger: no-op */
    if (c->n >= MR_MAX_REPLICAS) return RK_EINVAL;
    i = c->n++;
    c->r[i].id = ch->id;
    c->r[i].flags = 0;
  }
  RK_ASSERT(i >= 0 && i < c->n);
  uint8_t *f = &c->r[i].flags;
  switch (ch->op) {
  case MR_CC_ADD_VOTER: /* add or promote */
    *f = (uint8_t)((*f & ~(MR_LEARNER | MR_LEARNER_NEXT)) | MR_VOTER_IN);
    break;
  case MR_CC_ADD_LEARNER: /* add or demote */
    *f &= (uint8_t)~MR_VOTER_IN;
    if (joint && (*f & MR_VOTER_OUT))
      *f = (uint8_t)((*f & ~MR_LEARNER) | MR_LEARNER_NEXT);
    else
      *f |= MR_LEARNER;
    break;
  case MR_CC_REMOVE: *f &= (uint8_t)(joint ? MR_VOTER_OUT : 0); break;
  default: return RK_EINVAL;
  }
  RK_ASSERT(!(*f & MR_VOTER_OUT) || joint); /* only joint configs have C_old */
  return RK_OK;
}

int mr_conf_apply_change(const mr_conf *cur, const mr_conf_change *cc, mr_conf *next) {
  if (cc->transition > MR_CC_JOINT_EXPLICIT || cc->n > MR_MAX_REPLICAS) return RK_EINVAL;
  /* A replica that does not know its group yet (empty configuration) must
   * learn it from a snapshot, never by replaying changes onto nothing: "add
   * X" applied to {} would make X believe it is a one-voter group and elect
   * itself alone (found by the simulator's membership scenario). Groups
   * therefore start from a snapshot (or boot) that carries the configuration. */
  if (cur->n == 0) return RK_EINVAL;
  if (cc->n == 0) return leave_joint(cur, next);
  if (mr_conf_is_joint(cur)) return RK_EINVAL; /* leave first */
  mr_conf c = *cur;
  int joint = cc->transition != MR_CC_AUTO;
  /* AUTO with several voter changes must go through joint consensus */
  if (!joint) {
    mr_conf t = *cur;
    for (uint8_t k = 0; k < cc->n; k++)
      if (apply_one(&t, &cc->changes[k], 0) != RK_OK) return RK_EINVAL;
    int diff = 0;
    for (uint8_t i = 0; i < t.n; i++)
      if ((t.r[i].flags & MR_VOTER_IN) != (mr_conf_flags(cur, t.r[i].id) & MR_VOTER_IN)) diff++;
    for (uint8_t i = 0; i < cur->n; i++)
      if ((cur->r[i].flags & MR_VOTER_IN) && find(&t, cur->r[i].id) < 0) diff++;
    if (diff > 1) joint = 1;
  }
  if (joint)
    for (uint8_t i = 0; i < c.n; i++)
      if (c.r[i].flags & MR_VOTER_IN) c.r[i].flags |= MR_VOTER_OUT;
  for (uint8_t k = 0; k < cc->n; k++)
    if (apply_one(&c, &cc->changes[k], joint) != RK_OK) return RK_EINVAL;
  compact(&c);
  c.auto_leave = (uint8_t)(joint && cc->transition != MR_CC_JOINT_EXPLICIT);
  int voters = 0;
  for (uint8_t i = 0; i < c.n; i++) voters += (c.r[i].flags & MR_VOTER_IN) != 0;
  if (voters == 0) return RK_EINVAL; /* never remove the last voter */
  if (joint && !mr_conf_is_joint(&c)) c.auto_leave = 0;
  RK_ASSERT(c.n <= MR_MAX_REPLICAS);
  RK_ASSERT(mr_conf_validate(&c) == RK_OK);
  *next = c;
  return RK_OK;
}

size_t mr_cc_encode(const mr_conf_change *cc, uint8_t *buf, size_t cap) {
  size_t need = 2 + 9 * (size_t)cc->n;
  RK_ASSERT(cc->n <= MR_MAX_REPLICAS);
  RK_ASSERT(cap >= need);
  buf[0] = cc->transition;
  buf[1] = cc->n;
  for (uint8_t k = 0; k < cc->n; k++) {
    uint8_t *p = buf + 2 + 9 * k;
    p[0] = cc->changes[k].op;
    for (int b = 0; b < 8; b++) p[1 + b] = (uint8_t)(cc->changes[k].id >> (8 * b));
  }
  mr_conf_change back; /* pair check: what we write must read back */
  RK_ASSERT(mr_cc_decode(buf, need, &back) == RK_OK && back.n == cc->n);
  return need;
}

int mr_cc_decode(const uint8_t *buf, size_t len, mr_conf_change *cc) {
  memset(cc, 0, sizeof *cc);
  if (len < 2 || buf == NULL) return RK_EMALFORMED;
  if (buf[0] > MR_CC_JOINT_EXPLICIT || buf[1] > MR_MAX_REPLICAS) return RK_EMALFORMED;
  if (len != 2 + 9 * (size_t)buf[1]) return RK_EMALFORMED;
  cc->transition = buf[0];
  cc->n = buf[1];
  for (uint8_t k = 0; k < cc->n; k++) {
    const uint8_t *p = buf + 2 + 9 * k;
    if (p[0] < MR_CC_ADD_VOTER || p[0] > MR_CC_REMOVE) return RK_EMALFORMED;
    cc->changes[k].op = p[0];
    uint64_t id = 0;
    for (int b = 0; b < 8; b++) id |= (uint64_t)p[1 + b] << (8 * b);
    if (id == 0) return RK_EMALFORMED;
    cc->changes[k].id = id;
  }
  return RK_OK;
}

void mr_conf_from_prs(const mr_raft *r, mr_conf *out) {
  RK_ASSERT(r->n_prs <= MR_MAX_REPLICAS);
  memset(out, 0, sizeof *out);
  out->n = r->n_prs;
  out->auto_leave = r->auto_leave;
  for (uint8_t i = 0; i < r->n_prs; i++) {
    out->r[i].id = r->prs[i].id;
    out->r[i].flags = r->prs[i].flags;
  }
}

/* Rebuilds the progress array for c, keeping the progress of replicas that
 * stay (their in-flight rings move with them) and starting newcomers in
 * PROBE at the leader's last index + 1. */
int mr_conf_switch(mr_raft *r, const mr_conf *c) {
  RK_ASSERT(mr_conf_validate(c) == RK_OK);
  mr_progress *np = NULL;
  if (c->n > 0) {
    np = calloc(c->n, sizeof *np);
    if (!np) return RK_ENOMEM;
  }
  uint64_t next = mr_log_last(r) + 1;
  for (uint8_t i = 0; i < c->n; i++) {
    mr_progress *old = mr_pr_find(r, c->r[i].id);
    if (old) {
      np[i] = *old;
      old->ring = NULL; /* moved */
    } else {
      np[i].id = c->r[i].id;
      mr_pr_reset(&np[i], next);
    }
    np[i].flags = c->r[i].flags;
  }
  for (uint8_t i = 0; i < r->n_prs; i++) mr_pr_inflight_release(&r->prs[i]);
  free(r->prs);
  r->prs = np;
  r->n_prs = c->n;
  r->auto_leave = c->auto_leave;
  for (uint8_t i = 0; i < r->n_prs; i++) {
    RK_ASSERT(r->prs[i].id == c->r[i].id && r->prs[i].flags == c->r[i].flags);
    RK_ASSERT(r->prs[i].next >= 1);
  }
  return RK_OK;
}
