#include "common/rk_err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const rk_err_msgs[] = {
#define RK_ERR_MSG_(code, msg) [code] = msg,
    RK_ERRORS(RK_ERR_MSG_)
#undef RK_ERR_MSG_
};

static const char *const rk_err_names[] = {
#define RK_ERR_NAME_(code, msg) [code] = #code,
    RK_ERRORS(RK_ERR_NAME_)
#undef RK_ERR_NAME_
};

const char *rk_strerror(int err) {
  if (err < 0 || err >= RK_ERR_COUNT_) return "unknown error";
  return rk_err_msgs[err];
}

const char *rk_errname(int err) {
  if (err < 0 || err >= RK_ERR_COUNT_) return "RK_EUNKNOWN";
  return rk_err_names[err];
}

int rk_err_from_name(const char *name) {
  if (name == NULL) return -1;
  for (int i = 0; i < RK_ERR_COUNT_; i++) {
    if (strcmp(name, rk_err_names[i]) == 0) return i;
  }
  return -1;
}

int rk_err_from_errno(int e) {
  if (e < 0) e = -e;
  switch (e) {
  case 0: return RK_OK;
  case ENOMEM: return RK_ENOMEM;
  case EINVAL: return RK_EINVAL;
  case ENOSPC:
  case EDQUOT: return RK_ENOSPC;
  case ENOENT: return RK_ENOTFOUND;
  case EEXIST: return RK_EEXIST;
  case EFBIG:
  case E2BIG:
  case EMSGSIZE: return RK_ETOOLARGE;
  case ETIMEDOUT: return RK_ETIMEOUT;
  case EAGAIN: return RK_EAGAIN;
  case ENOSYS:
  case EOPNOTSUPP: return RK_EUNSUPPORTED;
  case EPIPE:
  case ECONNRESET:
  case ECONNREFUSED:
  case EBADF: return RK_ECLOSED;
  default: return RK_EIO;
  }
}

int rk_err_from_rocksdb(const char *errptr) {
  if (errptr == NULL) return RK_OK;
  /* RocksDB's Status::ToString() prefixes the status kind. */
  if (strncmp(errptr, "Corruption", 10) == 0) return RK_ECORRUPT;
  if (strncmp(errptr, "NotFound", 8) == 0) return RK_ENOTFOUND;
  if (strncmp(errptr, "Invalid argument", 16) == 0) return RK_EINVAL;
  if (strncmp(errptr, "Not implemented", 15) == 0) return RK_EUNSUPPORTED;
  if (strstr(errptr, "No space left") != NULL) return RK_ENOSPC;
  if (strncmp(errptr, "IO error", 8) == 0) return RK_EIO;
  return RK_EIO;
}
