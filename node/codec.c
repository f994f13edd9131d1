#include "node/codec.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include "rangekv.pb-c.h"

#include <stdlib.h>
#include <string.h>

static void hb_to_pb(const mr_host_hb *hb, Rangekv__Heartbeat *pb) {
  rangekv__heartbeat__init(pb);
  pb->group = hb->group;
  pb->from = hb->from;
  pb->to = hb->to;
  pb->term = hb->term;
  pb->commit = hb->commit;
  pb->ctx = hb->ctx;
  pb->compact = hb->compact;
  pb->quiesce = hb->quiesce != 0;
}

static void hb_from_pb(const Rangekv__Heartbeat *pb, mr_host_hb *hb) {
  hb->group = pb->group;
  hb->from = pb->from;
  hb->to = pb->to;
  hb->term = pb->term;
  hb->commit = pb->commit;
  hb->ctx = pb->ctx;
  hb->compact = pb->compact;
  hb->quiesce = pb->quiesce ? 1 : 0;
}

/* A message's snapshot, borrowed by the packed batch (data is not copied). */
typedef struct snap_pb {
  Rangekv__Snapshot snap;
  Rangekv__Conf conf;
  Rangekv__ConfReplica reps[MR_MAX_REPLICAS];
  Rangekv__ConfReplica *rp[MR_MAX_REPLICAS];
} snap_pb;

static void snap_to_pb(const mr_snapshot *s, snap_pb *pb) {
  rangekv__snapshot__init(&pb->snap);
  rangekv__conf__init(&pb->conf);
  pb->snap.index = s->index;
  pb->snap.term = s->term;
  pb->snap.data.len = s->len;
  pb->snap.data.data = s->data;
  pb->snap.conf = &pb->conf;
  pb->conf.auto_leave = s->conf.auto_leave != 0;
  pb->conf.n_replicas = s->conf.n;
  pb->conf.replicas = pb->rp;
  for (uint8_t k = 0; k < s->conf.n; k++) {
    rangekv__conf_replica__init(&pb->reps[k]);
    pb->reps[k].id = s->conf.r[k].id;
    pb->reps[k].flags = s->conf.r[k].flags;
    pb->rp[k] = &pb->reps[k];
  }
}

/* Copies a snapshot off the wire (the core validates the configuration's
 * meaning; here only what would not fit our structs is refused). */
static int snap_from_pb(const Rangekv__Snapshot *pb, mr_snapshot **out) {
  const Rangekv__Conf *c = pb->conf;
  if (c == NULL || c->n_replicas > MR_MAX_REPLICAS || pb->data.len > UINT32_MAX)
    return RK_EMALFORMED;
  for (size_t k = 0; k < c->n_replicas; k++)
    if (c->replicas[k]->flags > UINT8_MAX) return RK_EMALFORMED;
  mr_snapshot *s = calloc(1, sizeof *s);
  if (s == NULL) return RK_ENOMEM;
  s->index = pb->index;
  s->term = pb->term;
  s->conf.n = (uint8_t)c->n_replicas;
  s->conf.auto_leave = c->auto_leave ? 1 : 0;
  for (size_t k = 0; k < c->n_replicas; k++)
    s->conf.r[k] = (mr_conf_replica){c->replicas[k]->id, (uint8_t)c->replicas[k]->flags};
  s->len = (uint32_t)pb->data.len;
  if (s->len > 0) {
    s->data = malloc(s->len);
    if (s->data == NULL) {
      free(s);
      return RK_ENOMEM;
    }
    memcpy(s->data, pb->data.data, s->len);
  }
  *out = s;
  return RK_OK;
}

int node_codec_encode(const mr_host_frame *f, uint8_t **out, size_t *len) {
  int rc = RK_ENOMEM;
  Rangekv__RaftBatch b;
  rangekv__raft_batch__init(&b);
  b.from_node = f->from_node;
  b.to_node = f->to_node;
  size_t n_ents = 0;
  for (size_t i = 0; i < f->n_msgs; i++) n_ents += f->msgs[i].msg.entries.len;
  Rangekv__RaftMsg *msgs = calloc(f->n_msgs ? f->n_msgs : 1, sizeof *msgs);
  Rangekv__RaftMsg **mp = calloc(f->n_msgs ? f->n_msgs : 1, sizeof *mp);
  Rangekv__Entry *ents = calloc(n_ents ? n_ents : 1, sizeof *ents);
  Rangekv__Entry **ep = calloc(n_ents ? n_ents : 1, sizeof *ep);
  size_t nh = f->n_hbs + f->n_hb_resps;
  Rangekv__Heartbeat *hbs = calloc(nh ? nh : 1, sizeof *hbs);
  Rangekv__Heartbeat **hp = calloc(nh ? nh : 1, sizeof *hp);
  size_t n_snaps = 0;
  for (size_t i = 0; i < f->n_msgs; i++) n_snaps += f->msgs[i].msg.snap != NULL;
  snap_pb *snaps = n_snaps ? calloc(n_snaps, sizeof *snaps) : NULL;
  if (!msgs || !mp || !ents || !ep || !hbs || !hp || (n_snaps && !snaps)) goto free_all;
  size_t sn = 0;
  size_t e = 0;
  for (size_t i = 0; i < f->n_msgs; i++) {
    const mr_msg *m = &f->msgs[i].msg;
    Rangekv__RaftMsg *pm = &msgs[i];
    rangekv__raft_msg__init(pm);
    pm->group = f->msgs[i].group;
    pm->type = m->type;
    pm->reject = m->reject != 0;
    pm->transfer = m->transfer != 0;
    pm->from = m->from;
    pm->to = m->to;
    pm->term = m->term;
    pm->log_term = m->log_term;
    pm->index = m->index;
    pm->commit = m->commit;
    pm->reject_hint = m->reject_hint;
    pm->ctx = m->ctx;
    if (m->snap != NULL) {
      snap_to_pb(m->snap, &snaps[sn]);
      pm->snap = &snaps[sn++].snap;
    }
    pm->n_entries = m->entries.len;
    pm->entries = ep + e;
    for (size_t k = 0; k < m->entries.len; k++, e++) {
      const rk_entry *en = &m->entries.v[k];
      rangekv__entry__init(&ents[e]);
      ents[e].index = en->index;
      ents[e].term = en->term;
      ents[e].type = en->type;
      ents[e].data.len = en->len;
      ents[e].data.data = en->data;
      ep[e] = &ents[e];
    }
    mp[i] = pm;
  }
  for (size_t i = 0; i < f->n_hbs; i++) {
    hb_to_pb(&f->hbs[i], &hbs[i]);
    hp[i] = &hbs[i];
  }
  for (size_t i = 0; i < f->n_hb_resps; i++) {
    hb_to_pb(&f->hb_resps[i], &hbs[f->n_hbs + i]);
    hp[f->n_hbs + i] = &hbs[f->n_hbs + i];
  }
  b.n_msgs = f->n_msgs;
  b.msgs = mp;
  b.n_hbs = f->n_hbs;
  b.hbs = hp;
  b.n_hb_resps = f->n_hb_resps;
  b.hb_resps = hp + f->n_hbs;
  *len = rangekv__raft_batch__get_packed_size(&b);
  *out = malloc(*len ? *len : 1);
  if (*out == NULL) goto free_all;
  size_t packed = rangekv__raft_batch__pack(&b, *out);
  RK_ASSERT(packed == *len);
  rc = RK_OK;
free_all:
  free(msgs);
  free(mp);
  free(ents);
  free(ep);
  free(hbs);
  free(hp);
  free(snaps);
  return rc;
}

void node_codec_frame_free(node_codec_frame *fr) {
  if (fr->msgs)
    for (size_t i = 0; i < fr->f.n_msgs; i++) mr_msg_free(&fr->msgs[i].msg);
  free(fr->msgs);
  free(fr->hbs);
  free(fr->hb_resps);
  memset(fr, 0, sizeof *fr);
}

static int msg_from_pb(const Rangekv__RaftMsg *pm, mr_host_gmsg *gm) {
  if (pm->type < MR_MSG_APP || pm->type >= MR_MSG_TYPE_MAX_) return RK_EMALFORMED;
  /* A snapshot travels only in, and always in, an InstallSnapshot. */
  if ((pm->snap != NULL) != (pm->type == MR_MSG_SNAP)) return RK_EMALFORMED;
  mr_msg *m = &gm->msg;
  gm->group = pm->group;
  m->type = (uint8_t)pm->type;
  m->reject = pm->reject ? 1 : 0;
  m->transfer = pm->transfer ? 1 : 0;
  m->from = pm->from;
  m->to = pm->to;
  m->term = pm->term;
  m->log_term = pm->log_term;
  m->index = pm->index;
  m->commit = pm->commit;
  m->reject_hint = pm->reject_hint;
  m->ctx = pm->ctx;
  rk_entry_vec_init(&m->entries);
  for (size_t k = 0; k < pm->n_entries; k++) {
    const Rangekv__Entry *pe = pm->entries[k];
    /* Ranges have static membership (no node-level configuration change
     * yet), so no node proposes a conf-change entry: one from a peer is
     * buggy or hostile, and taken it would change the range's voters in
     * the core (a voter on node 0 would stop the node at its next
     * campaign). */
    if (pe->data.len > UINT32_MAX || pe->type != RK_ENTRY_NORMAL) return RK_EMALFORMED;
    /* Consecutive indexes: the core would count it malformed anyway. */
    if (k > 0 && pe->index != pm->entries[k - 1]->index + 1) return RK_EMALFORMED;
    rk_entry en = {.index = pe->index,
                   .term = pe->term,
                   .type = pe->type,
                   .len = (uint32_t)pe->data.len,
                   .data = pe->data.data};
    if (rk_entry_vec_push(&m->entries, &en) != RK_OK) return RK_ENOMEM;
  }
  if (pm->snap != NULL) return snap_from_pb(pm->snap, &m->snap);
  return RK_OK;
}

/* What protobuf-c may allocate unpacking one batch. A peer's frame of tiny
 * repeated elements (2 bytes on the wire, an empty message, each a struct
 * of up to 136 bytes) would otherwise unpack into ~70 times its size: a
 * 16 MiB frame into over 1 GiB. The least a real element takes on the wire
 * puts real batches under 12 times (an empty entry); past the budget the
 * frame is refused as malformed. */
#define CODEC_UNPACK_RATIO 16u
#define CODEC_UNPACK_SLACK (64u << 10)

typedef struct unpack_budget {
  size_t left;
} unpack_budget;

static void *budget_alloc(void *data, size_t size) {
  unpack_budget *b = data;
  if (size > b->left) return NULL;
  b->left -= size;
  return malloc(size);
}

static void budget_free(void *data, void *p) {
  (void)data;
  free(p);
}

int node_codec_decode(const uint8_t *buf, size_t len, node_codec_frame *out) {
  memset(out, 0, sizeof *out);
  unpack_budget budget = {.left = len * CODEC_UNPACK_RATIO + CODEC_UNPACK_SLACK};
  ProtobufCAllocator alloc = {
      .alloc = budget_alloc, .free = budget_free, .allocator_data = &budget};
  Rangekv__RaftBatch *b = rangekv__raft_batch__unpack(&alloc, len, buf);
  if (b == NULL) return RK_EMALFORMED;
  int rc = RK_ENOMEM;
  out->msgs = calloc(b->n_msgs ? b->n_msgs : 1, sizeof *out->msgs);
  out->hbs = calloc(b->n_hbs ? b->n_hbs : 1, sizeof *out->hbs);
  out->hb_resps = calloc(b->n_hb_resps ? b->n_hb_resps : 1, sizeof *out->hb_resps);
  if (!out->msgs || !out->hbs || !out->hb_resps) goto fail;
  out->f.from_node = b->from_node;
  out->f.to_node = b->to_node;
  for (size_t i = 0; i < b->n_msgs; i++) {
    out->f.n_msgs = i + 1; /* so a failure frees what was built */
    rc = msg_from_pb(b->msgs[i], &out->msgs[i]);
    if (rc != RK_OK) goto fail;
  }
  for (size_t i = 0; i < b->n_hbs; i++) hb_from_pb(b->hbs[i], &out->hbs[i]);
  for (size_t i = 0; i < b->n_hb_resps; i++) hb_from_pb(b->hb_resps[i], &out->hb_resps[i]);
  out->f.msgs = out->msgs;
  out->f.n_msgs = b->n_msgs;
  out->f.hbs = out->hbs;
  out->f.n_hbs = b->n_hbs;
  out->f.hb_resps = out->hb_resps;
  out->f.n_hb_resps = b->n_hb_resps;
  rangekv__raft_batch__free_unpacked(b, &alloc);
  return RK_OK;
fail:
  rangekv__raft_batch__free_unpacked(b, &alloc);
  node_codec_frame_free(out);
  return rc == RK_ENOMEM ? RK_ENOMEM : RK_EMALFORMED;
}
