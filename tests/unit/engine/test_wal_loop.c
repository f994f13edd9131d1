/* Event-loop integration: the ring fd wakes a poll() loop; a kernel that
 * refuses io_uring yields RK_EUNSUPPORTED with an actionable message. */
#include "eng_test.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

Test(wal_loop, ring_fd_wakes_a_poll_loop) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  eng_wal_append_req r;
  eng_cb_state s;
  cr_assert_eq(eng_append_async(w, &r, &s, 1, 1, 4, 1, 30, NULL), RK_OK);
  /* the loop a node runs: poll the fd, bounded by the WAL's timeout */
  int turns = 0;
  while (s.calls == 0) {
    cr_assert_lt(turns++, 1000, "no completion after 1000 loop turns");
    int64_t t = eng_wal_timeout_ns(w);
    int ms = t < 0 ? 10000 : (int)(t / 1000000);
    struct pollfd pfd = {.fd = eng_wal_fd(w), .events = POLLIN};
    int n = poll(&pfd, 1, ms);
    cr_assert(n >= 0, "poll: %s", strerror(errno));
    cr_assert_eq(eng_wal_process(w), RK_OK);
  }
  cr_assert_eq(s.status, RK_OK);
  eng_check_range(w, 1, 1, 4, 1, 30);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* A seccomp filter makes io_uring_setup fail with ENOSYS, as a locked-down
 * container would (Criterion runs each test in its own process). */
Test(wal_loop, kernel_refusing_io_uring_gives_unsupported) {
#ifdef __NR_io_uring_setup
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {.len = (unsigned short)(sizeof f / sizeof f[0]), .filter = f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
    cr_skip_test("cannot install a seccomp filter here: %s", strerror(errno));
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = NULL;
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_EUNSUPPORTED);
  cr_assert_null(w);
  cr_assert(strstr(rec.message, "io_uring") != NULL, "%s", rec.message);
  cr_assert(strstr(rec.message, "io_uring_disabled") != NULL, "not actionable: %s", rec.message);
  eng_rmtree(dir);
  free(dir);
#else
  cr_skip_test("no io_uring syscall number on this platform");
#endif
}
