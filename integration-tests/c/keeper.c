/*
 * keeper: a small C library that keeps the pointers it is given, the foreign side of
 * heapspan's FFI custody tests and example (compiled by integration-tests/build.rs with the
 * `cc` crate).
 *
 * It holds up to KEEPER_SLOTS pointers, last in first out, each with its length in bytes, in
 * static memory (not on the heap: the relation graph cannot see that it holds them, as with
 * any foreign code).
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define KEEPER_SLOTS 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *kept[KEEPER_SLOTS];
static size_t lens[KEEPER_SLOTS];
static size_t held;

/* Keeps `p` (`n` bytes long). Returns 0, or -1 when it holds KEEPER_SLOTS already. */
int keeper_take(void *p, size_t n) {
    int rc = -1;
    pthread_mutex_lock(&lock);
    if (held < KEEPER_SLOTS) {
        kept[held] = p;
        lens[held] = n;
        held++;
        rc = 0;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

/* Gives back the pointer kept last (and forgets it); NULL when it holds none. */
void *keeper_give_back(void) {
    void *p = NULL;
    pthread_mutex_lock(&lock);
    if (held > 0) {
        held--;
        p = kept[held];
        kept[held] = NULL;
    }
    pthread_mutex_unlock(&lock);
    return p;
}

/* Uses the pointer kept last (the sum of its bytes) and forgets it without giving it back;
 * 0 when it holds none. */
uint64_t keeper_consume(void) {
    uint64_t sum = 0;
    pthread_mutex_lock(&lock);
    if (held > 0) {
        held--;
        const unsigned char *b = kept[held];
        for (size_t i = 0; i < lens[held]; i++) {
            sum += b[i];
        }
        kept[held] = NULL;
    }
    pthread_mutex_unlock(&lock);
    return sum;
}

/* How many pointers it holds. */
size_t keeper_held(void) {
    pthread_mutex_lock(&lock);
    size_t n = held;
    pthread_mutex_unlock(&lock);
    return n;
}
