/* node/node_snap_install.c node_snap_reconcile: at start, a range whose state store
 * holds a snapshot the WAL does not (a crash between the two steps of an
 * install) gets its log reset to the snapshot; any other range is left as
 * it is. Real WAL and state store in a temporary directory. */
#include "common/rk_err.h"
#include "node/node_int.h"
#include "node_test.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct boot_env {
  char dir[64], wal_dir[96], state_dir[96];
  node n;
  node_range r;
} boot_env;

static boot_env E;

static void open_stores(void) {
  eng_wal_options wo;
  eng_wal_options_default(&wo);
  wo.dir = E.wal_dir;
  wo.cluster_id = 5;
  wo.node_id = 1;
  wo.segment_bytes = 1u << 20;
  wo.max_batch_bytes = 256u << 10;
  wo.max_entry_bytes = 64u << 10;
  wo.rewrite_max_group_bytes = 64u << 10;
  eng_wal_recovery rec;
  int rc = eng_wal_open(&wo, &E.n.wal, &rec);
  if (rc == RK_EUNSUPPORTED) cr_skip_test("io_uring unavailable here: %s", rec.message);
  cr_assert_eq(rc, RK_OK, "eng_wal_open: %s", rec.message);
  eng_state_options so;
  eng_state_options_default(&so);
  so.dir = E.state_dir;
  so.cluster_id = 5;
  so.node_id = 1;
  char msg[256] = "";
  cr_assert_eq(eng_state_open(&so, &E.n.state, msg, sizeof msg), RK_OK, "%s", msg);
}

static void close_stores(void) {
  if (E.n.wal) eng_wal_close(E.n.wal);
  if (E.n.state) eng_state_close(E.n.state);
  E.n.wal = NULL;
  E.n.state = NULL;
}

static void setup(void) {
  memset(&E, 0, sizeof E);
  const char *t = getenv("TMPDIR");
  snprintf(E.dir, sizeof E.dir, "%s/rk-snapboot-XXXXXX", t && t[0] ? t : "/tmp");
  cr_assert_not_null(mkdtemp(E.dir));
  snprintf(E.wal_dir, sizeof E.wal_dir, "%s/wal", E.dir);
  snprintf(E.state_dir, sizeof E.state_dir, "%s/state", E.dir);
  E.n.cfg.data_dir = E.dir;
  E.r.desc.id = 2;
  E.r.desc.start[0] = 'b';
  E.r.desc.start_len = 1;
  E.r.desc.end[0] = 'd';
  E.r.desc.end_len = 1;
  E.r.local = 1;
  E.r.n = &E.n;
  open_stores();
}

static void teardown(void) {
  close_stores();
  node_test_rmtree(E.dir);
}

TestSuite(snap_boot, .init = setup, .fini = teardown);

static void done_cb(eng_wal_append_req *req, int status) { *(int *)req->data = status; }

/* Entries [lo, hi) of range 2 with term, and a hard state; durable. */
static void append(uint64_t lo, uint64_t hi, uint64_t term) {
  rk_entry e[16];
  cr_assert_leq(hi - lo, 16);
  for (uint64_t i = lo; i < hi; i++)
    e[i - lo] = (rk_entry){.index = i, .term = term, .len = 1, .data = (uint8_t *)(uintptr_t) "x"};
  rk_hard_state hs = {.term = term, .vote = 0, .commit = hi - 1};
  eng_wal_write w = {.group = 2, .entries = e, .n_entries = hi - lo, .hard_state = &hs};
  int status = -1;
  eng_wal_append_req req = {.data = &status};
  cr_assert_eq(eng_wal_append(E.n.wal, &req, &w, 1, done_cb), RK_OK);
  cr_assert_eq(eng_wal_sync(E.n.wal), RK_OK);
  cr_assert_eq(status, RK_OK);
}

/* The state store's snapshot mark of range 2 (len bytes of it). */
static void put_mark(uint64_t index, uint64_t term, size_t len) {
  uint8_t v[16];
  for (int i = 0; i < 8; i++) {
    v[i] = (uint8_t)(index >> (8 * i));
    v[8 + i] = (uint8_t)(term >> (8 * i));
  }
  eng_state_batch *b = eng_state_batch_new(E.n.state);
  eng_state_batch_range_put(b, 2, ENG_RANGE_SNAP, v, len);
  cr_assert_eq(eng_state_commit(E.n.state, b), RK_OK);
  eng_state_batch_free(b);
}

static uint64_t first_index(void) {
  uint64_t f = 0;
  cr_assert_eq(eng_wal_first_index(E.n.wal, 2, &f), RK_OK);
  return f;
}

Test(snap_boot, no_snapshot_leaves_the_log_alone) {
  append(1, 6, 1);
  uint64_t t = 99;
  cr_assert_eq(node_snap_reconcile(&E.n, &E.r, &t), RK_OK);
  cr_assert_eq(t, 0);
  cr_assert_eq(first_index(), 1);
}

Test(snap_boot, a_log_short_of_the_snapshot_is_reset_to_it_durably) {
  append(1, 6, 1);
  put_mark(10, 2, 16); /* the install's state-store step, then the crash */
  uint64_t t = 0;
  cr_assert_eq(node_snap_reconcile(&E.n, &E.r, &t), RK_OK);
  cr_assert_eq(t, 2);
  cr_assert_eq(first_index(), 11);
  uint64_t term = 0;
  cr_assert_eq(eng_wal_term(E.n.wal, 2, 10, &term), RK_OK);
  cr_assert_eq(term, 2);
  /* The reset is durable: a second crash right after start keeps it. */
  close_stores();
  open_stores();
  cr_assert_eq(first_index(), 11);
  cr_assert_eq(eng_wal_term(E.n.wal, 2, 10, &term), RK_OK);
  cr_assert_eq(term, 2);
  cr_assert_eq(node_snap_reconcile(&E.n, &E.r, &t), RK_OK, "and is not redone");
  cr_assert_eq(first_index(), 11);
}

Test(snap_boot, a_log_that_holds_the_snapshot_entry_is_kept) {
  append(1, 6, 1);
  put_mark(3, 1, 16);
  uint64_t t = 0;
  cr_assert_eq(node_snap_reconcile(&E.n, &E.r, &t), RK_OK);
  cr_assert_eq(t, 1);
  cr_assert_eq(first_index(), 1, "Log Matching: entries up to 3 are the snapshot's prefix");
}

Test(snap_boot, a_log_with_another_term_there_is_reset) {
  append(1, 6, 1);
  put_mark(3, 4, 16); /* entry 3 was overwritten in term 4 elsewhere */
  uint64_t t = 0;
  cr_assert_eq(node_snap_reconcile(&E.n, &E.r, &t), RK_OK);
  cr_assert_eq(t, 4);
  cr_assert_eq(first_index(), 4);
  uint64_t last = 0;
  cr_assert_eq(eng_wal_last_index(E.n.wal, 2, &last), RK_OK);
  cr_assert_eq(last, 3, "the stale entries 4 and 5 are gone");
}

Test(snap_boot, a_log_compacted_past_the_snapshot_is_kept) {
  append(1, 10, 1);
  put_mark(3, 1, 16);
  cr_assert_eq(eng_wal_compact(E.n.wal, 2, 7, 0), RK_OK);
  cr_assert_eq(eng_wal_sync(E.n.wal), RK_OK);
  uint64_t t = 0;
  cr_assert_eq(node_snap_reconcile(&E.n, &E.r, &t), RK_OK);
  cr_assert_eq(first_index(), 7);
}

Test(snap_boot, a_corrupt_mark_stops_the_start) {
  append(1, 6, 1);
  put_mark(10, 2, 5);
  uint64_t t = 0;
  cr_assert_eq(node_snap_reconcile(&E.n, &E.r, &t), RK_ECORRUPT);
  cr_assert_eq(first_index(), 1, "nothing changed");
}

Test(snap_boot, the_boot_hard_state_takes_what_the_state_store_proves) {
  /* A crash after the commit moved lazily: applied is past the WAL's commit. */
  rk_hard_state hs = {.term = 3, .vote = 7, .commit = 10};
  node_boot_hard_state(&hs, 1, 15, 0);
  cr_assert(hs.term == 3 && hs.vote == 7 && hs.commit == 15);
  /* A snapshot from a term the WAL's hard state never saw: that term, no vote. */
  hs = (rk_hard_state){.term = 3, .vote = 7, .commit = 10};
  node_boot_hard_state(&hs, 1, 40, 5);
  cr_assert(hs.term == 5 && hs.vote == 0 && hs.commit == 40);
  /* The WAL has no hard state yet (a new replica's first install). */
  hs = (rk_hard_state){0};
  node_boot_hard_state(&hs, 0, 40, 5);
  cr_assert(hs.term == 5 && hs.vote == 0 && hs.commit == 40);
  /* An older snapshot term changes nothing. */
  hs = (rk_hard_state){.term = 6, .vote = 2, .commit = 50};
  node_boot_hard_state(&hs, 1, 40, 5);
  cr_assert(hs.term == 6 && hs.vote == 2 && hs.commit == 50);
  /* Neither a hard state nor a snapshot: left for the core to refuse. */
  hs = (rk_hard_state){0};
  node_boot_hard_state(&hs, 0, 40, 0);
  cr_assert(hs.term == 0 && hs.commit == 0);
}

/* ---- an install interrupted after its intent record ------------------------ */

static void put_user(const char *k, const char *v) {
  eng_state_batch *b = eng_state_batch_new(E.n.state);
  eng_state_batch_put(b, k, strlen(k), v, strlen(v));
  cr_assert_eq(eng_state_commit(E.n.state, b), RK_OK);
  eng_state_batch_free(b);
}

/* The staged file `file` of range 2 (["b", "d")) holding keys, value "new". */
static void stage(uint64_t file, const char *const *keys, size_t n) {
  char path[256];
  snprintf(path, sizeof path, "%s/snap", E.dir);
  cr_assert(mkdir(path, 0755) == 0 || errno == EEXIST);
  snprintf(path, sizeof path, "%s/snap/%016llx.sst", E.dir, (unsigned long long)file);
  eng_state_sst *w = NULL;
  cr_assert_eq(eng_state_sst_open(E.n.state, path, &w), RK_OK);
  cr_assert_eq(eng_state_sst_delete_range(w, "b", 1, "d", 1), RK_OK);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(eng_state_sst_put(w, keys[i], strlen(keys[i]), "new", 3), RK_OK);
  cr_assert_eq(eng_state_sst_finish(w), RK_OK);
  eng_state_sst_free(w);
}

static void put_intent(uint64_t index, uint64_t term, uint64_t file) {
  eng_state_batch *b = eng_state_batch_new(E.n.state);
  eng_state_batch_set_snap_intent(b, 2, index, term, file);
  cr_assert_eq(eng_state_commit(E.n.state, b), RK_OK);
  eng_state_batch_free(b);
}

Test(snap_boot, an_install_cut_after_its_intent_is_finished_from_the_staged_file) {
  append(1, 6, 1);
  put_user("a", "old");
  put_user("b", "old");
  put_user("c", "old");
  put_user("d", "old");
  static const char *const keys[] = {"b1", "c"};
  stage(0x77, keys, 2);
  /* Step 1 got as far as its intent record (or the ingestion), then the crash. */
  put_intent(20, 3, 0x77);
  uint64_t t = 0;
  cr_assert_eq(node_snap_reconcile(&E.n, &E.r, &t), RK_OK);
  cr_assert_eq(t, 3, "the mark was written by the redo");
  char got[256];
  node_test_user_keys(E.n.state, 1, got, sizeof got);
  cr_assert_str_eq(got, "a=old b1=new c=new d=old", "the span holds exactly the image");
  uint64_t applied = 0, i = 0, term = 0, file = 0;
  cr_assert_eq(eng_state_applied(E.n.state, 2, &applied), RK_OK);
  cr_assert_eq(applied, 20);
  cr_assert_eq(eng_state_snap_intent(E.n.state, 2, &i, &term, &file), RK_ENOTFOUND);
  cr_assert_eq(first_index(), 21, "and the log was reset to it");
  char path[256];
  snprintf(path, sizeof path, "%s/snap/%016llx.sst", E.dir, 0x77ull);
  cr_assert_neq(access(path, F_OK), 0, "the staged file is gone once the install is done");
  /* Durable: a restart finds the same and redoes nothing. */
  close_stores();
  open_stores();
  cr_assert_eq(node_snap_reconcile(&E.n, &E.r, &t), RK_OK);
  node_test_user_keys(E.n.state, 1, got, sizeof got);
  cr_assert_str_eq(got, "a=old b1=new c=new d=old");
}

Test(snap_boot, an_intent_whose_staged_file_is_gone_stops_the_start) {
  append(1, 6, 1);
  put_user("b", "old");
  put_intent(20, 3, 0x78);
  uint64_t t = 0;
  cr_assert_eq(node_snap_reconcile(&E.n, &E.r, &t), RK_ECORRUPT);
  cr_assert_eq(first_index(), 1, "nothing changed");
  uint64_t applied = 0;
  cr_assert_eq(eng_state_applied(E.n.state, 2, &applied), RK_OK);
  cr_assert_eq(applied, 0);
}
