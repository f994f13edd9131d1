/* transport/resolve.c — the host-name resolver thread (resolve.h).
 *
 * One request node carries a lookup from submission to take: the queue
 * (not started) and the done list (finished, not taken) are FIFO lists
 * under one mutex. The eventfd's counter is non-zero exactly while the done
 * list is not empty: the worker adds to it with each result, take clears it
 * when it empties the list, both under the mutex. The loop and the worker
 * each hold a reference; whichever lets go last frees the resolver, so
 * tp_resolver_free never waits for a lookup stuck on a dead DNS server. */
#include "transport/resolve.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"
#include "transport/net_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

int (*tp_resolver_lookup_)(const char *addr, int passive, struct sockaddr_storage *ss,
                           socklen_t *len) = tp_addr_resolve;

/* Workers: a lookup stuck on one name holds only its own worker, so the
 * other peers' names are still looked up (each peer has at most one lookup
 * out, so a cluster never needs more at once than it has named peers). */
#define RESOLVER_THREADS 4

typedef struct rq {
  struct rq *next;
  tp_resolved res;
  char addr[TP_ADDR_MAX];
} rq;

typedef struct rq_list {
  rq *head, *tail;
} rq_list;

struct tp_resolver {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int efd;
  int stopping;
  int refs; /* the loop's and one per worker */
  rq_list queue, done;
  int (*lookup)(const char *, int, struct sockaddr_storage *, socklen_t *);
};

static void list_push(rq_list *l, rq *q) {
  q->next = NULL;
  if (l->tail)
    l->tail->next = q;
  else
    l->head = q;
  l->tail = q;
}

static rq *list_pop(rq_list *l) {
  rq *q = l->head;
  if (q == NULL) return NULL;
  l->head = q->next;
  if (l->head == NULL) l->tail = NULL;
  return q;
}

static void list_free(rq_list *l) {
  for (rq *q; (q = list_pop(l)) != NULL;) free(q);
}

static void destroy(tp_resolver *r) {
  list_free(&r->queue);
  list_free(&r->done);
  close(r->efd);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

/* Drops one reference under r->mu (released here); frees on the last. */
static void release_locked(tp_resolver *r) {
  RK_ASSERT(r->refs > 0);
  int last = --r->refs == 0;
  pthread_mutex_unlock(&r->mu);
  if (last) destroy(r);
}

static void *worker(void *arg) {
  tp_resolver *r = arg;
  pthread_mutex_lock(&r->mu);
  while (!r->stopping) {
    rq *q = list_pop(&r->queue);
    if (q == NULL) {
      pthread_cond_wait(&r->cv, &r->mu);
      continue;
    }
    pthread_mutex_unlock(&r->mu);
    q->res.rc = r->lookup(q->addr, 0, &q->res.ss, &q->res.len);
    pthread_mutex_lock(&r->mu);
    if (r->stopping) {
      free(q);
      break;
    }
    list_push(&r->done, q);
    uint64_t one = 1;
    /* Only fails if the counter would overflow, which take prevents. */
    ssize_t w = write(r->efd, &one, sizeof one);
    RK_ASSERT(w == (ssize_t)sizeof one);
  }
  release_locked(r);
  return NULL;
}

int tp_resolver_new(tp_resolver **out) {
  *out = NULL;
  tp_resolver *r = calloc(1, sizeof *r);
  if (r == NULL) return RK_ENOMEM;
  r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (r->efd < 0) {
    int rc = rk_err_from_errno(errno);
    free(r);
    return rc;
  }
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  r->lookup = tp_resolver_lookup_;
  r->refs = 1 + RESOLVER_THREADS;
  int started = 0, e = 0;
  for (; started < RESOLVER_THREADS; started++) {
    pthread_t th;
    if ((e = pthread_create(&th, NULL, worker, r)) != 0) break;
    pthread_detach(th);
  }
  if (started == 0) {
    destroy(r);
    return rk_err_from_errno(e);
  }
  pthread_mutex_lock(&r->mu);
  r->refs -= RESOLVER_THREADS - started; /* fewer workers: still correct */
  pthread_mutex_unlock(&r->mu);
  *out = r;
  return RK_OK;
}

void tp_resolver_free(tp_resolver *r) {
  if (r == NULL) return;
  pthread_mutex_lock(&r->mu);
  r->stopping = 1;
  pthread_cond_broadcast(&r->cv);
  release_locked(r);
}

int tp_resolver_fd(const tp_resolver *r) { return r->efd; }

int tp_resolver_submit(tp_resolver *r, uint64_t tag, const char *addr) {
  size_t len = strlen(addr);
  RK_ASSERT(len < TP_ADDR_MAX); /* peers' addresses are checked when added */
  rq *q = calloc(1, sizeof *q);
  if (q == NULL) return RK_ENOMEM;
  q->res.tag = tag;
  memcpy(q->addr, addr, len + 1);
  pthread_mutex_lock(&r->mu);
  list_push(&r->queue, q);
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return RK_OK;
}

int tp_resolver_take(tp_resolver *r, tp_resolved *out) {
  pthread_mutex_lock(&r->mu);
  rq *q = list_pop(&r->done);
  if (r->done.head == NULL) {
    uint64_t v;
    (void)!read(r->efd, &v, sizeof v); /* EAGAIN when already clear: fine */
  }
  pthread_mutex_unlock(&r->mu);
  if (q == NULL) return 0;
  *out = q->res;
  free(q);
  return 1;
}
