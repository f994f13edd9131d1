/* rk_err.h — the one error enum of rangekv.
 *
 * Every fallible function returns an int: RK_OK (0) or one of the positive
 * codes below. Bugs are not errors: a broken invariant is RK_ASSERT (rk_assert.h).
 * Foreign error conventions (-errno, RocksDB's errptr) are converted once, at
 * the boundary, with rk_err_from_errno() / rk_err_from_rocksdb().
 *
 * The table is an X-macro so the enum, the names and the messages can never
 * drift apart: X(code, "message").
 */
#ifndef RK_ERR_H
#define RK_ERR_H

#define RK_ERRORS(X)                                                                               \
  X(RK_OK, "ok")                                                                                   \
  X(RK_ENOMEM, "out of memory")                                                                    \
  X(RK_EINVAL, "invalid argument")                                                                 \
  X(RK_EIO, "I/O error")                                                                           \
  X(RK_ENOSPC, "no space left on device")                                                          \
  X(RK_ECORRUPT, "corrupt data")                                                                   \
  X(RK_ENOTFOUND, "not found")                                                                     \
  X(RK_EEXIST, "already exists")                                                                   \
  X(RK_ETOOLARGE, "too large")                                                                     \
  X(RK_EMALFORMED, "malformed message")                                                            \
  X(RK_ENOTLEADER, "not the leader")                                                               \
  X(RK_ETRANSFERRING, "leadership transfer in progress")                                           \
  X(RK_ECONFPENDING, "configuration change already pending")                                       \
  X(RK_EUNCOMMITTEDFULL, "too many uncommitted bytes")                                             \
  X(RK_EPROPOSALDROPPED, "proposal dropped")                                                       \
  X(RK_ECOMPACTED, "log entries compacted")                                                        \
  X(RK_EUNAVAILABLE, "log entries not available")                                                  \
  X(RK_EUNKNOWNRANGE, "unknown range")                                                             \
  X(RK_ERANGEMOVED, "key not in range")                                                            \
  X(RK_EWRONGNODE, "wrong node")                                                                   \
  X(RK_EWRONGCLUSTER, "wrong cluster")                                                             \
  X(RK_ENOQUORUM, "no quorum")                                                                     \
  X(RK_ETIMEOUT, "timed out")                                                                      \
  X(RK_ECLOSED, "closed")                                                                          \
  X(RK_ESTOPPED, "stopped after a fatal error")                                                    \
  X(RK_EUNSUPPORTED, "not supported")                                                              \
  X(RK_EAGAIN, "try again")

typedef enum rk_err {
#define RK_ERR_ENUM_(code, msg) code,
  RK_ERRORS(RK_ERR_ENUM_)
#undef RK_ERR_ENUM_
      RK_ERR_COUNT_
} rk_err;

/* Human message for a code ("unknown error" for anything out of range). */
const char *rk_strerror(int err);
/* The code's C identifier, e.g. "RK_ENOTLEADER" (for logs and JSON). */
const char *rk_errname(int err);
/* Reverse of rk_errname(); returns -1 when the name is unknown. */
int rk_err_from_name(const char *name);
/* Map an errno value (positive or negative) to a project code. */
int rk_err_from_errno(int e);
/* Map a RocksDB errptr (NULL = success) to a project code. Does not free it. */
int rk_err_from_rocksdb(const char *errptr);

#endif
