/* cmd/cmd_client.c — `rangekv put|get|del|scan|status|ranges`: the CLI over
 * the client library (client/rk_client.h).
 *
 * Endpoints come from --endpoints LIST or $RANGEKV_ENDPOINTS ("host:port,...",
 * client addresses of any nodes). Exit codes: 0 done; 1 the command ran and
 * failed (one line on stderr: "rangekv CMD: <error>: <detail>", e.g.
 * "rangekv get: no quorum: no leader reachable within the deadline ..."; a
 * write whose outcome is unknown says so); 2 usage. `get` of an absent key
 * prints "rangekv get: not found: KEY" and exits 1.
 */
#include "cmd/cli.h"

#include "client/rk_client.h"
#include "common/rk_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct client_args {
  const char *endpoints;
  uint64_t timeout_ms;
  uint64_t limit;
  int want_limit;
} client_args;

enum { OPT_ENDPOINTS = 1000, OPT_TIMEOUT, OPT_LIMIT };

static const struct option client_long[] = {{"endpoints", required_argument, 0, OPT_ENDPOINTS},
                                            {"timeout", required_argument, 0, OPT_TIMEOUT},
                                            {"limit", required_argument, 0, OPT_LIMIT},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};

static int client_opt(const cli_cmd *cmd, int opt, const char *arg, void *ctx) {
  client_args *a = ctx;
  switch (opt) {
  case OPT_ENDPOINTS: a->endpoints = arg; return CLI_CONTINUE;
  case OPT_TIMEOUT: return cli_parse_u64(cmd, "--timeout", arg, 1, 3600000, &a->timeout_ms);
  case OPT_LIMIT:
    if (!a->want_limit) return cli_usage_error(cmd, "--limit applies to scan only");
    return cli_parse_u64(cmd, "--limit", arg, 1, 1000000, &a->limit);
  default: return cli_usage_error(cmd, "unknown flag");
  }
}

/* Parses flags, checks the positional count, opens the client. Returns
 * CLI_CONTINUE with *out open and *first at the first positional. */
static int client_start(const cli_cmd *cmd, int argc, char **argv, int npos, client_args *a,
                        rkc_client **out, int *first) {
  *out = NULL;
  a->timeout_ms = 5000;
  int rc = cli_parse(cmd, argc, argv, "h", client_long, client_opt, a, first);
  if (rc != CLI_CONTINUE) return rc;
  int got = argc - *first;
  if (got < npos)
    return cli_usage_error(cmd, "expected %d argument%s, got %d", npos, npos == 1 ? "" : "s", got);
  if (got > npos) return cli_usage_error(cmd, "unexpected argument '%s'", argv[*first + npos]);
  const char *list = a->endpoints;
  if (list == NULL) list = getenv("RANGEKV_ENDPOINTS");
  if (list == NULL || *list == '\0')
    return cli_usage_error(cmd, "no endpoints: pass --endpoints HOST:PORT,... or set "
                                "RANGEKV_ENDPOINTS");
  static char addrs[RKC_MAX_ENDPOINTS][RKC_ADDR_MAX];
  static const char *eps[RKC_MAX_ENDPOINTS];
  size_t n = 0;
  if (rkc_parse_endpoints(list, addrs, RKC_MAX_ENDPOINTS, &n) != RK_OK)
    return cli_usage_error(cmd, "bad endpoint list '%s' (want HOST:PORT,...)", list);
  for (size_t i = 0; i < n; i++) eps[i] = addrs[i];
  rkc_options o;
  rkc_options_default(&o);
  o.endpoints = eps;
  o.n_endpoints = n;
  o.timeout_ms = (uint32_t)a->timeout_ms;
  if (o.read_attempt_ms > o.timeout_ms) o.read_attempt_ms = o.timeout_ms;
  if (o.connect_timeout_ms > o.timeout_ms) o.connect_timeout_ms = o.timeout_ms;
  if (rkc_open(out, &o) != RK_OK) {
    fprintf(stderr, "rangekv %s: cannot create the client\n", cmd->name);
    return CLI_EXIT_FAIL;
  }
  return CLI_CONTINUE;
}

static int failed(const cli_cmd *cmd, rkc_client *c, int rc) {
  const rkc_call_info *li = rkc_last(c);
  int write = strcmp(cmd->name, "put") == 0 || strcmp(cmd->name, "del") == 0;
  fprintf(stderr, "rangekv %s: %s%s%s%s\n", cmd->name, rk_strerror(rc), li->detail[0] ? ": " : "",
          li->detail,
          write && li->outcome_unknown && strstr(li->detail, "may or may not") == NULL
              ? " (outcome unknown: the write may or may not have been applied)"
              : "");
  rkc_close(c);
  return CLI_EXIT_FAIL;
}

int cmd_put(const cli_cmd *cmd, int argc, char **argv) {
  client_args a = {0};
  rkc_client *c;
  int first;
  int rc = client_start(cmd, argc, argv, 2, &a, &c, &first);
  if (rc != CLI_CONTINUE) return rc;
  const char *k = argv[first], *v = argv[first + 1];
  rc = rkc_put(c, k, strlen(k), v, strlen(v));
  if (rc != RK_OK) return failed(cmd, c, rc);
  printf("OK\n");
  rkc_close(c);
  return CLI_EXIT_OK;
}

int cmd_get(const cli_cmd *cmd, int argc, char **argv) {
  client_args a = {0};
  rkc_client *c;
  int first;
  int rc = client_start(cmd, argc, argv, 1, &a, &c, &first);
  if (rc != CLI_CONTINUE) return rc;
  const char *k = argv[first];
  rkc_buf v;
  int found = 0;
  rc = rkc_get(c, k, strlen(k), &v, &found);
  if (rc != RK_OK) return failed(cmd, c, rc);
  rkc_close(c);
  if (!found) {
    rkc_buf_free(&v);
    fprintf(stderr, "rangekv get: not found: %s\n", k);
    return CLI_EXIT_FAIL;
  }
  fwrite(v.data, 1, v.len, stdout);
  putchar('\n');
  rkc_buf_free(&v);
  return CLI_EXIT_OK;
}

int cmd_del(const cli_cmd *cmd, int argc, char **argv) {
  client_args a = {0};
  rkc_client *c;
  int first;
  int rc = client_start(cmd, argc, argv, 1, &a, &c, &first);
  if (rc != CLI_CONTINUE) return rc;
  const char *k = argv[first];
  rc = rkc_del(c, k, strlen(k));
  if (rc != RK_OK) return failed(cmd, c, rc);
  printf("OK\n");
  rkc_close(c);
  return CLI_EXIT_OK;
}

int cmd_scan(const cli_cmd *cmd, int argc, char **argv) {
  client_args a = {.want_limit = 1, .limit = 100};
  rkc_client *c;
  int first;
  int rc = client_start(cmd, argc, argv, 2, &a, &c, &first);
  if (rc != CLI_CONTINUE) return rc;
  const char *s = argv[first], *e = argv[first + 1];
  rkc_kvs kv;
  rc = rkc_scan(c, s, strlen(s), e, strlen(e), (uint32_t)a.limit, &kv);
  if (rc != RK_OK) return failed(cmd, c, rc);
  for (size_t i = 0; i < kv.n; i++) {
    fwrite(kv.v[i].key.data, 1, kv.v[i].key.len, stdout);
    putchar('\t');
    fwrite(kv.v[i].value.data, 1, kv.v[i].value.len, stdout);
    putchar('\n');
  }
  if (kv.more)
    fprintf(stderr, "rangekv scan: --limit %llu reached; there may be more keys\n",
            (unsigned long long)a.limit);
  rkc_kvs_free(&kv);
  rkc_close(c);
  return CLI_EXIT_OK;
}

static void print_span(const uint8_t *p, size_t n, int is_end) {
  if (n == 0) {
    fputs(is_end ? "+inf" : "\"\"", stdout);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    if (p[i] >= 0x21 && p[i] < 0x7f)
      putchar(p[i]);
    else
      printf("\\x%02x", p[i]);
  }
}

int cmd_ranges(const cli_cmd *cmd, int argc, char **argv) {
  client_args a = {0};
  rkc_client *c;
  int first;
  int rc = client_start(cmd, argc, argv, 0, &a, &c, &first);
  if (rc != CLI_CONTINUE) return rc;
  rkc_ranges t;
  rc = rkc_ranges_get(c, &t);
  if (rc != RK_OK) return failed(cmd, c, rc);
  printf("%-7s %-22s %-12s %s\n", "range", "span", "replicas", "leader");
  for (size_t i = 0; i < t.n; i++) {
    const rkc_range *d = &t.v[i];
    printf("%-7llu [", (unsigned long long)d->id);
    print_span(d->start, d->start_len, 0);
    fputs(", ", stdout);
    print_span(d->end, d->end_len, 1);
    int w = (int)(d->start_len ? d->start_len : 2) + (int)(d->end_len ? d->end_len : 4) + 4;
    printf(")%*s ", w < 22 ? 22 - w : 0, "");
    char reps[64] = "";
    size_t off = 0;
    for (uint32_t k = 0; k < d->n_replicas && off < sizeof reps; k++)
      off += (size_t)snprintf(reps + off, sizeof reps - off, "%s%u", k ? "," : "", d->replicas[k]);
    if (d->leader)
      printf("%-12s %u\n", reps, d->leader);
    else
      printf("%-12s %s\n", reps, "-");
  }
  printf("nodes:");
  for (size_t i = 0; i < t.n_nodes; i++) printf(" %u=%s", t.nodes[i].id, t.nodes[i].client_addr);
  printf("\n");
  rkc_ranges_free(&t);
  rkc_close(c);
  return CLI_EXIT_OK;
}

int cmd_status(const cli_cmd *cmd, int argc, char **argv) {
  client_args a = {0};
  rkc_client *c;
  int first;
  int rc = client_start(cmd, argc, argv, 0, &a, &c, &first);
  if (rc != CLI_CONTINUE) return rc;
  rkc_node_status *st;
  size_t n;
  rc = rkc_status(c, &st, &n);
  if (rc != RK_OK) return failed(cmd, c, rc);
  printf("%-5s %-21s %-6s %8s %7s %8s %8s %10s %10s %12s %9s %8s %8s %8s\n", "node", "client",
         "zone", "replicas", "leaders", "quiesced", "max_term", "commit", "applied", "wal_bytes",
         "log_ents", "wal_segs", "snaps", "uptime_s");
  int down = 0;
  for (size_t i = 0; i < n; i++) {
    const rkc_node_status *s = &st[i];
    if (s->err != RK_OK) {
      printf("%-5u %-21s unreachable: %s\n", s->node_id, s->client_addr, rk_strerror(s->err));
      down++;
      continue;
    }
    char cm[24] = "-", ap[24] = "-";
    if (s->have_indexes) {
      snprintf(cm, sizeof cm, "%llu", (unsigned long long)s->sum_commit);
      snprintf(ap, sizeof ap, "%llu", (unsigned long long)s->sum_applied);
    }
    char snaps[48];
    snprintf(snaps, sizeof snaps, "%llu/%llu/%llu", (unsigned long long)s->snapshots_sent,
             (unsigned long long)s->snapshots_installed, (unsigned long long)s->snapshots_dropped);
    printf("%-5u %-21s %-6s %8llu %7llu %8llu %8llu %10s %10s %12llu %9llu %8llu %8s %8.1f\n",
           s->node_id, s->client_addr, s->zone[0] ? s->zone : "-", (unsigned long long)s->replicas,
           (unsigned long long)s->leaders, (unsigned long long)s->quiesced,
           (unsigned long long)s->max_term, cm, ap, (unsigned long long)s->wal_bytes,
           (unsigned long long)s->log_entries, (unsigned long long)s->wal_segments, snaps,
           (double)s->uptime_ms / 1000.0);
  }
  printf("(commit/applied: sums over the node's replicas; snaps: range snapshots since start,\n"
         " streamed to others/installed/streams dropped)\n");
  free(st);
  rkc_close(c);
  if (down) {
    fprintf(stderr, "rangekv status: %d of %zu node%s unreachable\n", down, n, n == 1 ? "" : "s");
    return CLI_EXIT_FAIL;
  }
  return CLI_EXIT_OK;
}
