/* Where blobs were seen (registry.h, struct reg_known): a hash table of
 * (host, repository, digest), chained by (host, digest), that doubles its
 * buckets as it fills.  One mutex: the stores of a copy record and look up
 * from their upload threads. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "util.h"

#define KNOWN_BUCKETS_MIN 64

struct known_entry {
        char *host, *repo;
        struct oci_digest d;
        struct known_entry *next; /* in its bucket, oldest first */
};

struct reg_known {
        pthread_mutex_t lock;
        struct known_entry **buckets;
        size_t n_buckets, n;
};

struct reg_known *reg_known_new(struct kiln_error *err)
{
        struct reg_known *k = calloc(1, sizeof(*k));

        if (k)
                k->buckets = calloc(KNOWN_BUCKETS_MIN, sizeof(*k->buckets));
        if (!k || !k->buckets) {
                free(k);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        k->n_buckets = KNOWN_BUCKETS_MIN;
        pthread_mutex_init(&k->lock, NULL);
        return k;
}

void reg_known_free(struct reg_known *k)
{
        if (!k)
                return;
        for (size_t i = 0; i < k->n_buckets; i++) {
                struct known_entry *e = k->buckets[i], *next;
                for (; e; e = next) {
                        next = e->next;
                        free(e->host);
                        free(e->repo);
                        free(e);
                }
        }
        free(k->buckets);
        pthread_mutex_destroy(&k->lock);
        free(k);
}

/* FNV-1a over host, a separator and the digest. */
static size_t bucket_of(const char *host, const struct oci_digest *d, size_t n_buckets)
{
        uint64_t h = 1469598103934665603ULL;

        for (const char *s = host; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        h = (h ^ '/') * 1099511628211ULL;
        for (const char *s = d->str; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return (size_t)(h % n_buckets);
}

static void append(struct known_entry **head, struct known_entry *e)
{
        while (*head)
                head = &(*head)->next;
        e->next = NULL;
        *head = e;
}

/* Under k->lock: twice the buckets, each chain keeping its order (the first
 * repository recorded is the one a lookup finds).  On failure the table
 * stays as it is, only with longer chains. */
static void grow(struct reg_known *k)
{
        size_t nb = k->n_buckets * 2;
        struct known_entry **b = calloc(nb, sizeof(*b));

        if (!b)
                return;
        for (size_t i = 0; i < k->n_buckets; i++) {
                struct known_entry *e = k->buckets[i], *next;
                for (; e; e = next) {
                        next = e->next;
                        append(&b[bucket_of(e->host, &e->d, nb)], e);
                }
        }
        free(k->buckets);
        k->buckets = b;
        k->n_buckets = nb;
}

int reg_known_add(struct reg_known *k, const char *host, const char *repo,
                  const struct oci_digest *d, struct kiln_error *err)
{
        struct known_entry *e;
        int rc = 0;

        pthread_mutex_lock(&k->lock);
        for (e = k->buckets[bucket_of(host, d, k->n_buckets)]; e; e = e->next)
                if (!strcmp(e->host, host) && !strcmp(e->repo, repo) &&
                    oci_digest_equal(&e->d, d))
                        goto out;
        e = calloc(1, sizeof(*e));
        if (e) {
                e->host = strdup(host);
                e->repo = strdup(repo);
                e->d = *d;
        }
        if (!e || !e->host || !e->repo) {
                if (e) {
                        free(e->host);
                        free(e->repo);
                }
                free(e);
                rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (k->n + 1 > 2 * k->n_buckets)
                grow(k);
        append(&k->buckets[bucket_of(host, d, k->n_buckets)], e);
        k->n++;
out:
        pthread_mutex_unlock(&k->lock);
        return rc;
}

char *reg_known_other_repo(struct reg_known *k, const char *host, const char *repo,
                           const struct oci_digest *d)
{
        char *r = NULL;

        pthread_mutex_lock(&k->lock);
        for (struct known_entry *e = k->buckets[bucket_of(host, d, k->n_buckets)]; e && !r;
             e = e->next)
                if (!strcmp(e->host, host) && strcmp(e->repo, repo) && oci_digest_equal(&e->d, d))
                        r = strdup(e->repo);
        pthread_mutex_unlock(&k->lock);
        return r;
}

size_t reg_known_count(struct reg_known *k)
{
        size_t n;

        pthread_mutex_lock(&k->lock);
        n = k->n;
        pthread_mutex_unlock(&k->lock);
        return n;
}
