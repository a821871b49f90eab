/* A C function that blocks in pthread_cond_wait until another thread sets the flag. */
#include <pthread.h>
#include <stdbool.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static bool ready;
static int waits;

/* Waits for the flag; returns how many times pthread_cond_wait returned. */
int wait_until_ready(void) {
    pthread_mutex_lock(&lock);
    while (!ready) {
        pthread_cond_wait(&changed, &lock);
        waits++;
    }
    int result = waits;
    pthread_mutex_unlock(&lock);
    return result;
}

void make_ready(void) {
    pthread_mutex_lock(&lock);
    ready = true;
    pthread_cond_signal(&changed);
    pthread_mutex_unlock(&lock);
}
