/* tests/integration/netns.c — see netns.h. Every change is one `ip`
 * command, checked; the first failure is reported with the command's own
 * output. */
#include "netns.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NETNS_DIR "/var/run/netns"

/* Runs one shell command; 0 if it exited 0. Its output (stdout and stderr)
 * goes to out (may be NULL). */
__attribute__((format(printf, 3, 4))) static int run(char *out, size_t cap, const char *fmt, ...) {
  char cmd[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  char full[600];
  snprintf(full, sizeof full, "%s 2>&1", cmd);
  FILE *p = popen(full, "r");
  if (p == NULL) {
    if (out) snprintf(out, cap, "%s: popen: %s", cmd, strerror(errno));
    return -1;
  }
  char buf[256] = "";
  size_t got = fread(buf, 1, sizeof buf - 1, p);
  buf[got] = '\0';
  int st = pclose(p);
  if (st == 0) return 0;
  if (out) snprintf(out, cap, "`%s` failed: %s", cmd, buf[0] ? buf : "(no output)");
  return -1;
}

/* Namespaces an earlier test process left when it was killed: names
 * "rkt<pid>..." whose pid is gone. */
static void sweep_stale(void) {
  DIR *d = opendir(NETNS_DIR);
  if (d == NULL) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "rkt", 3) != 0) continue;
    long pid = strtol(e->d_name + 3, NULL, 10);
    if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH))
      (void)run(NULL, 0, "ip netns del %s", e->d_name);
  }
  closedir(d);
}

int itn_setup(itn *t, int n, char *err, size_t errcap) {
  memset(t, 0, sizeof *t);
  if (n < 1 || n > ITN_MAX_NODES) {
    snprintf(err, errcap, "bad node count %d", n);
    return -1;
  }
  sweep_stale();
  t->n = n;
  long pid = (long)getpid();
  snprintf(t->subnet, sizeof t->subnet, "10.%ld.%ld", 100 + (pid >> 8) % 100, pid & 0xff);
  snprintf(t->hub, sizeof t->hub, "rkt%ldh", pid);
  t->made = 1;
  if (run(err, errcap, "ip netns add %s", t->hub) != 0 ||
      run(err, errcap, "ip -n %s link add br0 type bridge", t->hub) != 0 ||
      run(err, errcap, "ip -n %s addr add %s.254/24 dev br0", t->hub, t->subnet) != 0 ||
      run(err, errcap, "ip -n %s link set br0 up", t->hub) != 0 ||
      run(err, errcap, "ip -n %s link set lo up", t->hub) != 0)
    goto fail;
  for (int i = 0; i < n; i++) {
    snprintf(t->ns[i], sizeof t->ns[i], "rkt%ldn%d", pid, i + 1);
    snprintf(t->addr[i], sizeof t->addr[i], "%s.%d", t->subnet, i + 1);
    if (run(err, errcap, "ip netns add %s", t->ns[i]) != 0 ||
        run(err, errcap, "ip link add veth0 netns %s type veth peer name p%d netns %s", t->ns[i],
            i + 1, t->hub) != 0 ||
        run(err, errcap, "ip -n %s link set p%d master br0 up", t->hub, i + 1) != 0 ||
        run(err, errcap, "ip -n %s addr add %s/24 dev veth0", t->ns[i], t->addr[i]) != 0 ||
        run(err, errcap, "ip -n %s link set veth0 up", t->ns[i]) != 0 ||
        run(err, errcap, "ip -n %s link set lo up", t->ns[i]) != 0)
      goto fail;
  }
  char path[128];
  snprintf(path, sizeof path, NETNS_DIR "/%s", t->hub);
  int hub = open(path, O_RDONLY | O_CLOEXEC);
  int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (hub < 0 || home < 0 || setns(hub, CLONE_NEWNET) != 0) {
    snprintf(err, errcap, "entering %s: %s", t->hub, strerror(errno));
    if (hub >= 0) close(hub);
    if (home >= 0) close(home);
    goto fail;
  }
  close(hub);
  t->home_fd = home;
  t->entered = 1;
  return 0;
fail:
  itn_teardown(t);
  return -1;
}

int itn_cut(itn *t, int i, int on) {
  const char *verb = on ? "add" : "del";
  int rc = 0;
  for (int j = 0; j < t->n; j++) {
    if (j == i) continue;
    rc |= run(NULL, 0, "ip -n %s route %s blackhole %s/32", t->ns[i], verb, t->addr[j]);
    rc |= run(NULL, 0, "ip -n %s route %s blackhole %s/32", t->ns[j], verb, t->addr[i]);
  }
  return rc ? -1 : 0;
}

void itn_teardown(itn *t) {
  if (t->entered) {
    (void)setns(t->home_fd, CLONE_NEWNET);
    close(t->home_fd);
    t->entered = 0;
  }
  if (!t->made) return;
  for (int i = 0; i < t->n; i++)
    if (t->ns[i][0]) (void)run(NULL, 0, "ip netns del %s", t->ns[i]);
  (void)run(NULL, 0, "ip netns del %s", t->hub);
  t->made = 0;
}
