/* node/node_snap_int.h — what the three parts of range snapshots share:
 * node_snap.c (sending, checking), node_snap_rx.c (receiving, staging),
 * node_snap_install.c (installing, start-up). Not for the rest of node/.
 */
#ifndef NODE_SNAP_INT_H
#define NODE_SNAP_INT_H

#include "node/node_int.h"

/* A packed RangeSnapshot with range_id, stream and chunks and no pairs:
 * the data of a snapshot that names a stream (sender) or a staged file
 * (receiver). *len is set; the caller frees. */
uint8_t *node_snap_pack_descriptor(uint64_t range_id, uint64_t stream, uint32_t chunks,
                                   uint32_t *len);
/* Checks one RangeSnapshot piece of range d (see node_snap.c). */
int node_snap_image_check(const range_desc *d, const uint8_t *data, size_t len, uint8_t *last,
                          size_t *llen, eng_state_sst *sink, uint64_t *nkeys);
/* Ends outgoing stream t (failed: abandoned, reported to the core). */
void node_snap_tx_end(node *n, node_snap_tx *t, int failed, const char *why);
/* Drops what peer x staged, file and all. */
void node_snap_rx_reset(node *n, node_snap_rx *x);

/* Staged files: <data-dir>/snap/<file, 16 hex digits>.sst. */
void node_snap_staged_path(const node *n, uint64_t file, char *out, size_t cap);
void node_snap_staged_unlink(const node *n, uint64_t file);
/* The staged file a core's snapshot names (0: none, an empty range). */
uint64_t node_snap_staged_file_of(const mr_snapshot *s);
/* Takes sealed[i] off the list: dropped (writer freed, file removed, bytes
 * uncounted) or handed to an install (drop = 0). */
void node_snap_sealed_remove(node *n, uint32_t i, int drop);
/* fsync of a directory: the names made in it become durable. */
int node_snap_sync_dir(const char *path);

/* Stops the installer thread after the job it runs and frees every job. */
void node_snap_installer_stop(node *n);

#endif
