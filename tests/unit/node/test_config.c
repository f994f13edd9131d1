/* rangekv start's cluster list: parsing, zones, and the derived cluster id. */
#include "common/rk_err.h"
#include "node/node.h"

#include <criterion/criterion.h>
#include <string.h>

Test(config, cluster_list_with_and_without_zones) {
  node_config c;
  node_config_default(&c);
  char err[256];
  cr_assert_eq(node_parse_cluster(&c, "1=127.0.0.1:7001@a,2=127.0.0.1:7002,3=h:7003@zone-c", err,
                                  sizeof err),
               RK_OK, "%s", err);
  cr_assert_eq(c.n_cluster, 3);
  cr_assert_str_eq(c.cluster[0].addr, "127.0.0.1:7001");
  cr_assert_str_eq(c.cluster[0].zone, "a");
  cr_assert_str_eq(c.cluster[1].zone, "");
  cr_assert_eq(c.cluster[2].id, 3);
  cr_assert_str_eq(c.cluster[2].zone, "zone-c");
}

Test(config, bad_lists_are_refused_with_a_reason) {
  const char *bad[] = {"",
                       "1=",
                       "=127.0.0.1:1",
                       "0=127.0.0.1:1",
                       "65=127.0.0.1:1",
                       "1=nocolon",
                       "1=127.0.0.1:1,1=127.0.0.1:2",
                       "1=127.0.0.1:1@",
                       "x=127.0.0.1:1",
                       "1=127.0.0.1:1,,2=127.0.0.1:2"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    node_config c;
    node_config_default(&c);
    char err[256] = "";
    cr_assert_eq(node_parse_cluster(&c, bad[i], err, sizeof err), RK_EINVAL, "'%s' accepted",
                 bad[i]);
    cr_assert_gt(strlen(err), 0, "no reason for '%s'", bad[i]);
  }
}

Test(config, cluster_id_depends_on_members_not_their_order) {
  node_config a, b, c;
  char err[256];
  node_config_default(&a);
  node_config_default(&b);
  node_config_default(&c);
  cr_assert_eq(node_parse_cluster(&a, "1=h:1,2=h:2,3=h:3", err, sizeof err), RK_OK);
  cr_assert_eq(node_parse_cluster(&b, "3=h:3,1=h:1,2=h:2", err, sizeof err), RK_OK);
  cr_assert_eq(node_parse_cluster(&c, "1=h:1,2=h:2,3=h:4", err, sizeof err), RK_OK);
  cr_assert_eq(node_cluster_id_of(&a), node_cluster_id_of(&b));
  cr_assert_neq(node_cluster_id_of(&a), node_cluster_id_of(&c));
  a.cluster_id = 42;
  cr_assert_eq(node_cluster_id_of(&a), 42, "an explicit --cluster-id wins");
}
