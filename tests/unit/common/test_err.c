#include "common/rk_err.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

Test(err, every_code_has_a_distinct_name_and_message) {
  for (int i = 0; i < RK_ERR_COUNT_; i++) {
    const char *name = rk_errname(i);
    cr_assert(strncmp(name, "RK_", 3) == 0, "code %d name %s", i, name);
    cr_assert(strlen(rk_strerror(i)) > 0);
    cr_assert_eq(rk_err_from_name(name), i, "round trip of %s", name);
    for (int j = 0; j < i; j++) {
      cr_assert_str_neq(rk_errname(j), name);
      cr_assert_str_neq(rk_strerror(j), rk_strerror(i));
    }
  }
}

Test(err, ok_is_zero_and_out_of_range_is_unknown) {
  cr_assert_eq(RK_OK, 0);
  cr_assert_str_eq(rk_strerror(RK_OK), "ok");
  cr_assert_str_eq(rk_strerror(-1), "unknown error");
  cr_assert_str_eq(rk_strerror(RK_ERR_COUNT_), "unknown error");
  cr_assert_eq(rk_err_from_name("RK_NOPE"), -1);
  cr_assert_eq(rk_err_from_name(NULL), -1);
}

Test(err, errno_maps_with_either_sign) {
  cr_assert_eq(rk_err_from_errno(0), RK_OK);
  cr_assert_eq(rk_err_from_errno(EIO), RK_EIO);
  cr_assert_eq(rk_err_from_errno(-EIO), RK_EIO);
  cr_assert_eq(rk_err_from_errno(-ENOSPC), RK_ENOSPC);
  cr_assert_eq(rk_err_from_errno(ENOMEM), RK_ENOMEM);
  cr_assert_eq(rk_err_from_errno(-ENOSYS), RK_EUNSUPPORTED);
  cr_assert_eq(rk_err_from_errno(ECONNRESET), RK_ECLOSED);
  cr_assert_eq(rk_err_from_errno(EXDEV), RK_EIO, "unmapped errno is an I/O error");
}

Test(err, rocksdb_status_strings_map) {
  cr_assert_eq(rk_err_from_rocksdb(NULL), RK_OK);
  cr_assert_eq(rk_err_from_rocksdb("Corruption: block checksum mismatch"), RK_ECORRUPT);
  cr_assert_eq(rk_err_from_rocksdb("IO error: No space left on device"), RK_ENOSPC);
  cr_assert_eq(rk_err_from_rocksdb("IO error: while open"), RK_EIO);
  cr_assert_eq(rk_err_from_rocksdb("Invalid argument: bad cf"), RK_EINVAL);
  cr_assert_eq(rk_err_from_rocksdb("NotFound: "), RK_ENOTFOUND);
}
