/* `rangekv demo` end to end: with --duration it exits by itself, on SIGINT it
 * stops; either way every node it started is gone and it exits 0. */
#include "cluster.h"

#include "tests/lib/proc.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>

/* 1 if any live process has `needle` in its command line. */
static int process_mentions(const char *needle) {
  DIR *d = opendir("/proc");
  if (d == NULL) return 0;
  struct dirent *e;
  int found = 0;
  while (!found && (e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char path[300], buf[4096];
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
      if (buf[i] == 0) buf[i] = ' ';
    buf[n] = 0;
    found = strstr(buf, needle) != NULL;
  }
  closedir(d);
  return found;
}

static char demo_dir[256];

static void make_dir(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(demo_dir, sizeof demo_dir, "%s/rangekv-idemo-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  cr_assert_not_null(mkdtemp(demo_dir));
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void fini(void) {
  if (demo_dir[0]) nftw(demo_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(demo, .fini = fini);

Test(demo, runs_a_workload_for_its_duration_and_stops_every_node) {
  make_dir();
  char sub[300];
  snprintf(sub, sizeof sub, "%s/d", demo_dir);
  static proc_result r;
  char *argv[] = {RK_BINARY,   "demo", "--duration", "3", "--ranges", "8",
                  "--clients", "4",    "--dir",      sub, NULL};
  cr_assert_eq(proc_run(argv, 60000, &r), 0);
  cr_assert_not(r.timed_out, "demo did not finish within 60 s: %s", r.out);
  cr_assert(r.exited && r.status == 0, "demo exit %d; stderr: %s\nstdout: %s", r.status, r.err,
            r.out);
  cr_assert_not_null(strstr(r.out, "ops/s"), "no progress line: %s", r.out);
  cr_assert_not_null(strstr(r.out, "range  leader"), "no per-range table: %s", r.out);
  /* 8 range rows. */
  const char *t = strstr(r.out, "range  leader");
  int rows = 0;
  for (const char *p = strchr(t, '\n'); p && p[1] >= '1' && p[1] <= '9'; p = strchr(p + 1, '\n'))
    rows++;
  cr_assert_eq(rows, 8, "%s", t);
  cr_assert_not(process_mentions(sub), "a node of the demo is still running");
}

Test(demo, ctrl_c_stops_it_and_every_node) {
  make_dir();
  char sub[300], out_path[320];
  snprintf(sub, sizeof sub, "%s/d", demo_dir);
  snprintf(out_path, sizeof out_path, "%s/demo.out", demo_dir);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    char *argv[] = {RK_BINARY, "demo", "--ranges", "8", "--clients", "2", "--dir", sub, NULL};
    execv(RK_BINARY, argv);
    _exit(127);
  }
  /* Wait (bounded) for the workload's first progress line. */
  uint64_t until = itc_now_ns() + 40ull * 1000000000ull;
  int running = 0;
  while (!running && itc_now_ns() < until) {
    FILE *f = fopen(out_path, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
      if (strstr(line, "ops/s")) running = 1;
    if (f) fclose(f);
    if (!running) itc_sleep_ms(20);
  }
  kill(pid, SIGINT);
  int st = 0;
  if (!itc_wait_exit(pid, 30000, &st)) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    cr_assert_fail("demo did not stop within 30 s of SIGINT");
  }
  cr_assert(running, "the workload never started");
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "demo after SIGINT: %s %d",
            WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
  cr_assert_not(process_mentions(sub), "a node of the demo is still running");
}
