/* kiln_parallel_for (parallel.h). */
#include "parallel.h"

#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

#define PARALLEL_MAX 64

struct queue {
        kiln_task_fn fn;
        void *ctx;
        size_t n, next;
        bool failed;
        size_t failed_at;
        struct kiln_error err;
        pthread_mutex_t lock;
};

static void *worker(void *arg)
{
        struct queue *q = arg;

        for (;;) {
                struct kiln_error e = KILN_ERROR_INIT;
                size_t i;
                pthread_mutex_lock(&q->lock);
                if (q->failed || q->next == q->n) {
                        pthread_mutex_unlock(&q->lock);
                        return NULL;
                }
                i = q->next++;
                pthread_mutex_unlock(&q->lock);
                if (q->fn(q->ctx, i, &e) < 0) {
                        pthread_mutex_lock(&q->lock);
                        /* the lowest failing index wins: every item below
                         * a failure has started (they start in order) and
                         * ends, so this is the error a loop would give */
                        if (!q->failed || i < q->failed_at) {
                                q->failed = true;
                                q->failed_at = i;
                                q->err = e;
                        }
                        pthread_mutex_unlock(&q->lock);
                }
        }
}

int kiln_parallel_for(size_t n, unsigned jobs, kiln_task_fn fn, void *ctx,
                      struct kiln_error *err)
{
        struct queue q = {.fn = fn, .ctx = ctx, .n = n};
        pthread_t th[PARALLEL_MAX];
        unsigned started = 0;

        if (jobs > PARALLEL_MAX)
                jobs = PARALLEL_MAX;
        if (jobs > n)
                jobs = (unsigned)n;
        if (jobs <= 1) {
                for (size_t i = 0; i < n; i++)
                        if (fn(ctx, i, err) < 0)
                                return -1;
                return 0;
        }
        q.err = (struct kiln_error)KILN_ERROR_INIT;
        pthread_mutex_init(&q.lock, NULL);
        for (unsigned i = 1; i < jobs; i++)
                if (pthread_create(&th[started], NULL, worker, &q) == 0)
                        started++;
        worker(&q);
        for (unsigned i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        pthread_mutex_destroy(&q.lock);
        if (q.failed) {
                if (err)
                        *err = q.err;
                return -1;
        }
        return 0;
}

unsigned kiln_parallel_cpus(unsigned max)
{
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);

        if (cpus < 1)
                return 1;
        return (unsigned long)cpus > max ? max : (unsigned)cpus;
}
