/* tests/lib/proc.h — run a command to completion with a time bound and
 * capture its exit status, stdout and stderr. For tests that exec the
 * rangekv binary. Header-only so any test binary can use it. */
#ifndef RK_TEST_PROC_H
#define RK_TEST_PROC_H

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct proc_result {
  int exited;    /* 1 if it exited normally */
  int status;    /* exit code, or signal number if !exited */
  int timed_out; /* killed after the deadline */
  char out[16384];
  char err[16384];
} proc_result;

static inline void proc_drain_(int fd, char *buf, size_t *len, size_t cap, int *open_) {
  ssize_t n = read(fd, buf + *len, cap - 1 - *len);
  if (n <= 0) {
    *open_ = 0;
    return;
  }
  *len += (size_t)n;
  buf[*len] = '\0';
}

/* argv[0] is the program path; timeout in milliseconds. */
static inline int proc_run(char *const argv[], int timeout_ms, proc_result *r) {
  memset(r, 0, sizeof *r);
  int po[2], pe[2];
  if (pipe(po) != 0 || pipe(pe) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(po[1], 1);
    dup2(pe[1], 2);
    close(po[0]);
    close(pe[0]);
    execv(argv[0], argv);
    _exit(127);
  }
  close(po[1]);
  close(pe[1]);
  size_t ol = 0, el = 0;
  int oo = 1, eo = 1;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (oo || eo) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    if (spent >= timeout_ms) {
      kill(pid, SIGKILL);
      r->timed_out = 1;
      break;
    }
    struct pollfd pf[2] = {{oo ? po[0] : -1, POLLIN, 0}, {eo ? pe[0] : -1, POLLIN, 0}};
    if (poll(pf, 2, (int)(timeout_ms - spent)) < 0) continue;
    if (pf[0].revents) proc_drain_(po[0], r->out, &ol, sizeof r->out, &oo);
    if (pf[1].revents) proc_drain_(pe[0], r->err, &el, sizeof r->err, &eo);
  }
  close(po[0]);
  close(pe[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  r->exited = WIFEXITED(st);
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st);
  return 0;
}

#endif
