/* A work queue for independent items: a fixed number of threads take the
 * next index until none is left or one has failed.
 *
 *     static int one(void *ctx, size_t i, struct kiln_error *err) { ... }
 *     kiln_parallel_for(n, jobs, one, ctx, &err);
 *
 * Items start in the order of their index (a caller sorts them, largest
 * first, say); with jobs <= 1 they all run in the calling thread. */
#ifndef KILN_OCI_PARALLEL_H
#define KILN_OCI_PARALLEL_H

#include <stddef.h>

#include "error.h"

typedef int (*kiln_task_fn)(void *ctx, size_t i, struct kiln_error *err);

/* Runs fn(ctx, i, ...) for i = 0 .. n-1 on up to jobs threads, the calling
 * one among them (at most 64).  After the first failure no further item
 * starts and the items running finish; -1 with the error of the lowest
 * index that failed (the one a loop over them would have stopped at).  When
 * no extra thread can be started the caller runs every item itself. */
int kiln_parallel_for(size_t n, unsigned jobs, kiln_task_fn fn, void *ctx,
                      struct kiln_error *err);

/* The CPUs online, between 1 and max: how many threads a pass over
 * CPU-bound items (decompression, unpacking) takes. */
unsigned kiln_parallel_cpus(unsigned max);

#endif
