#include "fake.h"

#include "common/rk_err.h"
#include "transport/frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

fake_cluster fk;

static const char *starts[FAKE_RANGES] = {"", "4000", "8000", "c000"};

typedef struct fconn {
  fake_node *n;
  uint64_t epoch;
  int closed;
  uint8_t *pending; /* one packed response waiting for recv */
  size_t pending_len;
  uint8_t *held; /* the buffer handed out by the last recv */
} fconn;

int fake_range_of(const char *key) {
  int r = 0;
  for (int i = 1; i < FAKE_RANGES; i++)
    if (strcmp(key, starts[i]) >= 0) r = i;
  return r;
}

static fake_node *node_at(const char *addr) {
  for (int i = 0; i < FAKE_NODES; i++)
    if (strcmp(fk.nodes[i].addr, addr) == 0) return &fk.nodes[i];
  return NULL;
}

static int f_open(tp_conn **out, const char *addr, uint64_t cluster_id, int timeout_ms,
                  tp_handshake *server) {
  *out = NULL;
  fake_node *n = node_at(addr);
  if (n == NULL || n->mode == FAKE_DOWN) {
    fk.now_ns += 1000000; /* a refused connect costs a little time */
    return RK_ECLOSED;
  }
  if (cluster_id != 0 && cluster_id != 77) return RK_EWRONGCLUSTER;
  (void)timeout_ms;
  fconn *c = calloc(1, sizeof *c);
  c->n = n;
  c->epoch = n->epoch;
  n->opens++;
  memset(server, 0, sizeof *server);
  server->cluster_id = 77;
  server->node_id = n->id;
  snprintf(server->client_addr, sizeof server->client_addr, "%s", n->addr);
  *out = (tp_conn *)c;
  return RK_OK;
}

static void f_close(tp_conn *tc) {
  fconn *c = (fconn *)tc;
  free(c->pending);
  free(c->held);
  free(c);
}

static int dead(fconn *c) {
  return c->closed || c->epoch != c->n->epoch || c->n->mode == FAKE_DOWN;
}

static void respond(fconn *c, Rangekv__ClientResponse *r) {
  size_t sz = rangekv__client_response__get_packed_size(r);
  free(c->pending);
  c->pending = malloc(sz ? sz : 1);
  rangekv__client_response__pack(r, c->pending);
  c->pending_len = sz;
}

static int find_key(const uint8_t *k, size_t len) {
  for (int i = 0; i < fk.n_keys; i++)
    if (strlen(fk.keys[i]) == len && memcmp(fk.keys[i], k, len) == 0) return i;
  return -1;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void serve_ranges(fconn *c, Rangekv__ClientResponse *r) {
  static Rangekv__RangeInfo ri[FAKE_RANGES];
  static Rangekv__RangeInfo *rp[FAKE_RANGES];
  static uint32_t reps[3] = {1, 2, 3};
  static Rangekv__NodeInfo ni[FAKE_NODES];
  static Rangekv__NodeInfo *np[FAKE_NODES];
  for (int i = 0; i < FAKE_RANGES; i++) {
    Rangekv__RangeInfo x = RANGEKV__RANGE_INFO__INIT;
    x.range_id = (uint64_t)i + 1;
    x.start_key.data = (uint8_t *)(uintptr_t)starts[i];
    x.start_key.len = strlen(starts[i]);
    const char *e = i + 1 < FAKE_RANGES ? starts[i + 1] : "";
    x.end_key.data = (uint8_t *)(uintptr_t)e;
    x.end_key.len = strlen(e);
    x.n_replica_nodes = FAKE_NODES;
    x.replica_nodes = reps;
    x.leader_node = fk.advertise_leader ? fk.leader[i] : 0;
    x.commit = 10;
    x.applied = 9;
    ri[i] = x;
    rp[i] = &ri[i];
  }
  for (int i = 0; i < FAKE_NODES; i++) {
    Rangekv__NodeInfo x;
    rangekv__node_info__init(&x);
    x.node_id = fk.nodes[i].id;
    x.client_addr = fk.nodes[i].addr;
    ni[i] = x;
    np[i] = &ni[i];
  }
  r->n_ranges = FAKE_RANGES;
  r->ranges = rp;
  r->n_nodes = FAKE_NODES;
  r->nodes = np;
  c->n->ranges_requests++;
}

static void serve_data(fconn *c, const Rangekv__ClientRequest *q, Rangekv__ClientResponse *r) {
  fake_node *n = c->n;
  char key[64] = "";
  if (q->key.len)
    memcpy(key, q->key.data, q->key.len < sizeof key - 1 ? q->key.len : sizeof key - 1);
  int ri = (int)q->range_id - 1;
  if (ri < 0 || ri >= FAKE_RANGES || fake_range_of(key) != ri) {
    r->code = RK_ERANGEMOVED;
    fk.violations++;
    return;
  }
  if (fk.leader[ri] != n->id) {
    r->code = RK_ENOTLEADER;
    uint32_t h = n->stale_hint ? n->stale_hint : fk.leader[ri];
    if (n->hint && h) {
      r->leader_node = h;
      r->leader_addr = fk.nodes[h - 1].addr;
    }
    return;
  }
  r->range_id = n->answer_range ? n->answer_range : q->range_id;
  int k = find_key(q->key.data, q->key.len);
  static char vbuf[64];
  switch (q->op) {
  case RANGEKV__CLIENT_OP__OP_PUT:
    if (k < 0) k = fk.n_keys++;
    snprintf(fk.keys[k], sizeof fk.keys[k], "%s", key);
    snprintf(fk.vals[k], sizeof fk.vals[k], "%.*s", (int)(q->value.len < 63 ? q->value.len : 63),
             (const char *)q->value.data);
    break;
  case RANGEKV__CLIENT_OP__OP_GET:
    r->found = k >= 0;
    if (k >= 0) {
      snprintf(vbuf, sizeof vbuf, "%s", fk.vals[k]);
      r->value.data = (uint8_t *)vbuf;
      r->value.len = strlen(vbuf);
    }
    break;
  case RANGEKV__CLIENT_OP__OP_DEL:
    if (k >= 0 && k == fk.n_keys - 1) {
      fk.n_keys--;
    } else if (k >= 0) {
      fk.n_keys--;
      memcpy(fk.keys[k], fk.keys[fk.n_keys], sizeof fk.keys[k]);
      memcpy(fk.vals[k], fk.vals[fk.n_keys], sizeof fk.vals[k]);
    }
    break;
  case RANGEKV__CLIENT_OP__OP_CAS: {
    int eq = q->expected_absent ? k < 0
                                : (k >= 0 && strlen(fk.vals[k]) == q->expected.len &&
                                   memcmp(fk.vals[k], q->expected.data, q->expected.len) == 0);
    r->swapped = eq;
    if (eq) {
      if (k < 0) k = fk.n_keys++;
      snprintf(fk.keys[k], sizeof fk.keys[k], "%s", key);
      snprintf(fk.vals[k], sizeof fk.vals[k], "%.*s", (int)q->value.len,
               (const char *)q->value.data);
    }
    break;
  }
  case RANGEKV__CLIENT_OP__OP_SCAN: {
    /* [key, end) must lie inside the range. */
    char end[64] = "";
    if (q->end_key.len && q->end_key.len < sizeof end) memcpy(end, q->end_key.data, q->end_key.len);
    const char *rend = ri + 1 < FAKE_RANGES ? starts[ri + 1] : "";
    if (rend[0] && (end[0] == 0 || strcmp(end, rend) > 0)) fk.violations++;
    static char *sorted[FAKE_KEYS];
    static Rangekv__KeyValue kvs[FAKE_KEYS];
    static Rangekv__KeyValue *kvp[FAKE_KEYS];
    int m = 0;
    for (int i = 0; i < fk.n_keys; i++) sorted[m++] = fk.keys[i];
    qsort(sorted, (size_t)m, sizeof *sorted, cmp_str);
    size_t out = 0;
    /* This fake answers at most 3 keys per request, so the client must resume. */
    uint32_t lim = q->limit < 3 ? q->limit : 3;
    for (int i = 0; i < m; i++) {
      if (rkc_key_cmp(sorted[i], strlen(sorted[i]), q->key.data, q->key.len) < 0) continue;
      if (end[0] && strcmp(sorted[i], end) >= 0) break;
      if (out == lim) {
        r->more = 1;
        break;
      }
      int kk = find_key((const uint8_t *)sorted[i], strlen(sorted[i]));
      Rangekv__KeyValue x = RANGEKV__KEY_VALUE__INIT;
      x.key.data = (uint8_t *)sorted[i];
      x.key.len = strlen(sorted[i]);
      x.value.data = (uint8_t *)fk.vals[kk];
      x.value.len = strlen(fk.vals[kk]);
      kvs[out] = x;
      kvp[out] = &kvs[out];
      out++;
    }
    r->n_kvs = out;
    r->kvs = kvp;
    break;
  }
  default: r->code = RK_EINVAL;
  }
}

static int f_send(tp_conn *tc, uint16_t type, const uint8_t *payload, uint32_t len,
                  int timeout_ms) {
  (void)timeout_ms;
  fconn *c = (fconn *)tc;
  if (dead(c)) return RK_ECLOSED;
  if (type != TP_FRAME_CLIENT_REQUEST) return RK_EINVAL;
  Rangekv__ClientRequest *q = rangekv__client_request__unpack(NULL, len, payload);
  if (q == NULL) return RK_EMALFORMED;
  fk.requests_total++;
  Rangekv__ClientResponse r;
  rangekv__client_response__init(&r);
  r.id = q->id;
  int data = q->op != RANGEKV__CLIENT_OP__OP_RANGES && q->op != RANGEKV__CLIENT_OP__OP_STATUS;
  if (data) {
    c->n->data_requests++;
    fk.last_data_ns = fk.now_ns;
  }
  Rangekv__NodeStatus st;
  rangekv__node_status__init(&st);
  if (!data) {
    if (q->op == RANGEKV__CLIENT_OP__OP_RANGES)
      serve_ranges(c, &r);
    else {
      st.node_id = c->n->id;
      st.replicas = FAKE_RANGES;
      st.leaders = 1;
      st.max_term = 5;
      r.status = &st;
    }
    respond(c, &r);
  } else if (c->n->mode == FAKE_TIMEOUT) {
    r.code = RK_ETIMEOUT;
    respond(c, &r);
  } else if (c->n->mode == FAKE_SILENT) {
    /* nothing */
  } else if (c->n->silent_requests > 0) {
    c->n->silent_requests--; /* slow this once: no answer within the attempt */
  } else if (c->n->mode == FAKE_CRASH) {
    c->closed = 1;
  } else {
    serve_data(c, q, &r);
    respond(c, &r);
  }
  rangekv__client_request__free_unpacked(q, NULL);
  return RK_OK;
}

static int f_recv(tp_conn *tc, uint16_t *type, const uint8_t **payload, uint32_t *len,
                  int timeout_ms) {
  fconn *c = (fconn *)tc;
  if (dead(c)) return RK_ECLOSED;
  if (c->pending == NULL || fk.answer_ms > (uint32_t)timeout_ms) {
    fk.now_ns += (uint64_t)timeout_ms * 1000000u;
    return RK_ETIMEOUT; /* an answer still pending arrives late: a stale id */
  }
  fk.now_ns += (uint64_t)fk.answer_ms * 1000000u;
  free(c->held);
  c->held = c->pending;
  c->pending = NULL;
  *type = TP_FRAME_CLIENT_RESPONSE;
  *payload = c->held;
  *len = (uint32_t)c->pending_len;
  return RK_OK;
}

static uint64_t f_now(void) { return fk.now_ns; }
static void f_sleep(uint32_t ms) {
  fk.now_ns += (uint64_t)ms * 1000000u;
  fk.slept_ms += ms;
}

static const rkc_conn_ops fake_ops = {f_open, f_close, f_send, f_recv, f_now, f_sleep};

void fake_setup(void) {
  memset(&fk, 0, sizeof fk);
  fk.now_ns = 1000000000ull;
  for (int i = 0; i < FAKE_NODES; i++) {
    fk.nodes[i].id = (uint32_t)i + 1;
    snprintf(fk.nodes[i].addr, sizeof fk.nodes[i].addr, "127.0.0.1:%d", 7001 + i);
    fk.nodes[i].hint = 1;
  }
  for (int i = 0; i < FAKE_RANGES; i++) fk.leader[i] = 1;
  rkc_set_conn_ops(&fake_ops);
}

void fake_teardown(void) { rkc_set_conn_ops(NULL); }

void fake_restart(uint32_t node) { fk.nodes[node - 1].epoch++; }
