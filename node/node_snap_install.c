/* node_snap_install.c — range snapshots, installing: the installer thread
 * (staged file completed, intent, ingestion, mark), the loop's WAL reset,
 * and at start the redo of an interrupted install and the reconciling of
 * the state store with the WAL (node_snap.c's header comment,
 * "INSTALLING").
 */
#include "node/node_int.h"
#include "node/node_snap_int.h"

#include "common/rk_assert.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int commit_synced(node *n, eng_state_batch *b) {
  int rc = eng_state_commit(n->state, b);
  return rc == RK_OK ? eng_state_sync(n->state) : rc;
}

/* The end of an install with a staged file, also its redo at start: the
 * file's tombstone and keys replace the range's data in one ingestion,
 * then the applied index and the mark go with the intent's removal.
 * Ingesting again is right only because nothing writes into the range's
 * span between the intent and its removal: the range's Ready is in this
 * unfinished persist batch, so the host hands it nothing to apply
 * (multiraft/host.c, HG_IN_FLIGHT), and a redo runs before its core exists. */
static int finish_install(node *n, const range_desc *d, uint64_t index, uint64_t term,
                          uint64_t file) {
  const uint64_t range = d->id;
  char path[4096];
  node_snap_staged_path(n, file, path, sizeof path);
  int rc = eng_state_ingest(n->state, path, d->start, d->start_len, d->end_len ? d->end : NULL,
                            d->end_len);
  if (rc != RK_OK) return rc;
  if (n->crash_after_snapshot_ingest) {
    RK_ERROR("node", "range %llu: test crash point snapshot-ingest reached: exiting",
             (unsigned long long)range);
    _exit(NODE_TEST_CRASH_EXIT);
  }
  eng_state_batch *b = eng_state_batch_new(n->state);
  if (b == NULL) return RK_ENOMEM;
  eng_state_batch_set_applied(b, range, index);
  eng_state_batch_set_snap_mark(b, range, index, term);
  eng_state_batch_clear_snap_intent(b, range);
  rc = commit_synced(n, b);
  eng_state_batch_free(b);
  if (rc == RK_OK) node_snap_staged_unlink(n, file);
  return rc;
}

/* Installing, step 1 (the worker thread): the range's data becomes the
 * image, and its applied index and snapshot mark the snapshot's, durably.
 * With a staged file: an intent record first (so a crash part way is
 * finished at start), then finish_install. An empty range: one batch.
 * Touches only the state store (thread-safe), the staging directory and
 * the job. */
static int install_state(node *n, node_snap_install_one *one) {
  const range_desc *d = &one->r->desc;
  const mr_snapshot *s = one->snap;
  uint64_t t0 = rk_clock_mono_ns();
  eng_state_batch *b = eng_state_batch_new(n->state);
  RK_ASSERTF(b != NULL, "out of memory");
  int rc = RK_OK;
  if (one->staged.file == 0) {
    eng_state_batch_delete_range(b, d->start, d->start_len, d->end_len ? d->end : NULL, d->end_len);
    eng_state_batch_set_applied(b, d->id, s->index);
    eng_state_batch_set_snap_mark(b, d->id, s->index, s->term);
    rc = commit_synced(n, b);
  } else {
    /* The file's index, filter and footer, then its sync and its name's:
     * it must be whole and durable before the intent names it. */
    rc = eng_state_sst_finish(one->staged.sst);
    eng_state_sst_free(one->staged.sst);
    one->staged.sst = NULL;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/snap", n->cfg.data_dir);
    if (rc == RK_OK) rc = node_snap_sync_dir(dir);
    eng_state_batch_set_snap_intent(b, d->id, s->index, s->term, one->staged.file);
    if (rc == RK_OK) rc = commit_synced(n, b);
    if (rc == RK_OK) rc = finish_install(n, d, s->index, s->term, one->staged.file);
  }
  eng_state_batch_free(b);
  one->ns = rk_clock_mono_ns() - t0;
  return rc;
}

/* Installing, step 2 (the loop): only now, with the image durable, may the
 * log forget what it replaces. */
static int install_log(node *n, const node_snap_install_one *one) {
  const uint64_t id = one->r->desc.id;
  const mr_snapshot *s = one->snap;
  if (n->crash_after_snapshot_state) {
    RK_ERROR("node", "range %llu: test crash point snapshot-state reached: exiting",
             (unsigned long long)id);
    _exit(NODE_TEST_CRASH_EXIT);
  }
  int rc = eng_wal_reset(n->wal, id, s->index + 1, s->term);
  if (rc != RK_OK) return rc;
  n->snapshots_installed++;
  RK_INFO("node",
          "range %llu: installed the snapshot at %llu (term %llu): %llu keys, %llu bytes, in "
          "%.1f ms",
          (unsigned long long)id, (unsigned long long)s->index, (unsigned long long)s->term,
          (unsigned long long)one->staged.keys, (unsigned long long)one->staged.bytes,
          (double)one->ns / 1e6);
  return RK_OK;
}

/* The installer thread: takes jobs in order, runs step 1 of each snapshot,
 * and hands the job back to the loop (eventfd) for step 2 and the WAL. */
static void *installer_main(void *arg) {
  node *n = arg;
  node_snap_installer *in = &n->installer;
  pthread_mutex_lock(&in->mu);
  for (;;) {
    while (in->todo == NULL && !in->stop) pthread_cond_wait(&in->cv, &in->mu);
    if (in->stop) break;
    node_snap_job *j = in->todo;
    pthread_mutex_unlock(&in->mu);
    for (size_t i = 0; i < j->n && j->rc == RK_OK; i++) j->rc = install_state(n, &j->one[i]);
    pthread_mutex_lock(&in->mu);
    in->todo = j->next;
    j->next = NULL;
    node_snap_job **tail = &in->done;
    while (*tail) tail = &(*tail)->next;
    *tail = j;
    uint64_t one = 1;
    ssize_t wr = write(in->efd, &one, sizeof one);
    (void)wr; /* the counter cannot overflow; a failed write only delays */
  }
  pthread_mutex_unlock(&in->mu);
  return NULL;
}

/* Frees a job, and the staging its snapshots held (files an install did
 * not reach stay for the next start to remove). Loop thread. */
static void job_free(node *n, node_snap_job *j) {
  for (size_t i = 0; i < j->n; i++) {
    eng_state_sst_free(j->one[i].staged.sst);
    RK_ASSERT(n->rx_bytes >= j->one[i].staged.bytes);
    n->rx_bytes -= j->one[i].staged.bytes;
  }
  free(j->w);
  free(j);
}

static void on_installed(void *ctx) {
  node *n = ctx;
  node_snap_installer *in = &n->installer;
  uint64_t cnt = 0;
  ssize_t rd = read(in->efd, &cnt, sizeof cnt);
  (void)rd;
  pthread_mutex_lock(&in->mu);
  node_snap_job *done = in->done;
  in->done = NULL;
  pthread_mutex_unlock(&in->mu);
  while (done != NULL) {
    node_snap_job *j = done;
    done = j->next;
    int rc = j->rc;
    for (size_t i = 0; i < j->n && rc == RK_OK; i++) rc = install_log(n, &j->one[i]);
    if (rc != RK_OK) {
      RK_ERROR("node", "installing a snapshot failed: %s", rk_strerror(rc));
      /* At once, not at the next turn: a state-store sync that failed on
       * the installer thread must not be followed by another on the loop
       * (node_compact) in this same poll, as if the data were safe. */
      if (!n->fatal) n->fatal = rc;
    } else {
      node_persist_add(j->p, j->w, j->nw);
    }
    node_persist_release(j->p, rc); /* a failure is fatal for the host: the node stops */
    job_free(n, j);
  }
}

int node_snap_persist(node *n, node_persist *p, mr_host_write *w, size_t nw) {
  node_snap_installer *in = &n->installer;
  if (!in->started) {
    int rc = tp_net_watch_fd(n->net, in->efd, on_installed, n);
    if (rc == RK_OK && pthread_create(&in->thread, NULL, installer_main, n) != 0) {
      tp_net_unwatch_fd(n->net, in->efd);
      rc = RK_ENOMEM;
    }
    if (rc != RK_OK) {
      free(w);
      return rc;
    }
    in->started = 1;
  }
  node_snap_job *j = calloc(1, sizeof *j + nw * sizeof j->one[0]);
  if (j == NULL) {
    free(w);
    return RK_ENOMEM;
  }
  j->p = p;
  j->w = w;
  j->nw = nw;
  for (size_t i = 0; i < nw; i++) {
    RK_ASSERT(w[i].snap != NULL);
    node_snap_install_one *one = &j->one[j->n++];
    *one = (node_snap_install_one){.r = &n->ranges[w[i].group - 1], .snap = w[i].snap};
    one->staged.file = node_snap_staged_file_of(w[i].snap);
    if (one->staged.file == 0) continue;
    /* The job takes the staged file: no tick may remove it now. */
    uint32_t k = 0;
    while (k < n->nsealed && n->sealed[k].file != one->staged.file) k++;
    RK_ASSERTF(k < n->nsealed && n->sealed[k].range == w[i].group &&
                   n->sealed[k].index == w[i].snap->index,
               "range %llu: the snapshot at %llu to install has no staged file",
               (unsigned long long)w[i].group, (unsigned long long)w[i].snap->index);
    one->staged = n->sealed[k];
    node_snap_sealed_remove(n, k, 0);
  }
  pthread_mutex_lock(&in->mu);
  node_snap_job **tail = &in->todo;
  while (*tail) tail = &(*tail)->next;
  *tail = j;
  pthread_cond_signal(&in->cv);
  pthread_mutex_unlock(&in->mu);
  return RK_OK;
}

int node_snap_installer_init(node *n) {
  node_snap_installer *in = &n->installer;
  memset(in, 0, sizeof *in);
  in->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (in->efd < 0) return rk_err_from_errno(errno);
  pthread_mutex_init(&in->mu, NULL);
  pthread_cond_init(&in->cv, NULL);
  in->inited = 1;
  return RK_OK;
}

static void free_jobs(node *n, node_snap_job *j) {
  while (j != NULL) {
    node_snap_job *next = j->next;
    job_free(n, j);
    j = next;
  }
}

/* Stops the installer after the job it runs, if any, and frees every job:
 * their batches never complete, the node is going away. */
void node_snap_installer_stop(node *n) {
  node_snap_installer *in = &n->installer;
  if (!in->inited) return;
  if (in->started) {
    pthread_mutex_lock(&in->mu);
    in->stop = 1;
    pthread_cond_signal(&in->cv);
    pthread_mutex_unlock(&in->mu);
    pthread_join(in->thread, NULL);
    (void)tp_net_unwatch_fd(n->net, in->efd);
  }
  free_jobs(n, in->todo);
  free_jobs(n, in->done);
  close(in->efd);
  pthread_mutex_destroy(&in->mu);
  pthread_cond_destroy(&in->cv);
  in->inited = 0;
}

void node_boot_hard_state(rk_hard_state *hs, int found, uint64_t applied, uint64_t snap_term) {
  /* An installed snapshot's entry term can be newer than the hard state
   * the WAL holds when a crash came after the state store's part and
   * before the WAL batch with the new hard state (possible only if the
   * InstallSnapshot was the first message of its term this replica saw).
   * No vote in that term was ever sent (votes wait for durability), so the
   * term can be taken, with no vote. */
  if (snap_term > hs->term) {
    hs->term = snap_term;
    hs->vote = 0;
    found = 1;
  }
  /* The host applies a Ready whose only change is the commit index
   * without waiting for that hard state to be durable (raft.h, must_sync),
   * so a crash can leave the state store ahead of the WAL's commit. What
   * was applied was committed: raise the commit to it. (With no hard state
   * and no snapshot, the WAL lost the range: the core refuses to start.) */
  if (found && applied > hs->commit) hs->commit = applied;
}

/* Finishes an install a crash interrupted after its intent record. */
static int redo_install(node *n, const range_desc *d) {
  const uint64_t id = d->id;
  uint64_t index = 0, term = 0, file = 0;
  int rc = eng_state_snap_intent(n->state, id, &index, &term, &file);
  if (rc == RK_ENOTFOUND) return RK_OK;
  if (rc != RK_OK) {
    RK_ERROR("node", "range %llu: snapshot intent: %s", (unsigned long long)id, rk_strerror(rc));
    return rc;
  }
  char path[4096];
  node_snap_staged_path(n, file, path, sizeof path);
  if (access(path, F_OK) != 0) {
    RK_ERROR("node",
             "range %llu: a snapshot install (index %llu) was interrupted and its staged file %s "
             "is gone (%s): the range's data cannot be rebuilt here",
             (unsigned long long)id, (unsigned long long)index, path, strerror(errno));
    return RK_ECORRUPT;
  }
  RK_WARN("node",
          "range %llu: finishing the install of the snapshot at %llu (term %llu) a crash "
          "interrupted, from %s",
          (unsigned long long)id, (unsigned long long)index, (unsigned long long)term, path);
  rc = finish_install(n, d, index, term, file);
  if (rc != RK_OK)
    RK_ERROR("node", "range %llu: finishing the install: %s", (unsigned long long)id,
             rk_strerror(rc));
  return rc;
}

int node_snap_reconcile(node *n, node_range *r, uint64_t *snap_term) {
  const uint64_t id = r->desc.id;
  *snap_term = 0;
  uint64_t index = 0, term = 0, t = 0;
  int rc = redo_install(n, &r->desc);
  if (rc != RK_OK) return rc;
  rc = eng_state_snap_mark(n->state, id, &index, &term);
  if (rc == RK_ENOTFOUND) return RK_OK;
  if (rc != RK_OK) {
    RK_ERROR("node", "range %llu: snapshot mark: %s", (unsigned long long)id, rk_strerror(rc));
    return rc;
  }
  *snap_term = term;
  rc = eng_wal_term(n->wal, id, index, &t);
  /* The log holds the snapshot's boundary (the reset landed, or its entries
   * match), or it was compacted past it after the reset: nothing to do. */
  if ((rc == RK_OK && t == term) || rc == RK_ECOMPACTED) return RK_OK;
  RK_WARN("node",
          "range %llu: the state store holds a snapshot at %llu (term %llu) the WAL does not: "
          "resetting the range's log there (a crash came between the two)",
          (unsigned long long)id, (unsigned long long)index, (unsigned long long)term);
  rc = eng_wal_reset(n->wal, id, index + 1, term);
  if (rc == RK_OK) rc = eng_wal_sync(n->wal);
  return rc;
}
