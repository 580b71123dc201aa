/*
 * threaded_proxy.c: chapter 03, the C counterpart of stage 3.
 *
 *   make -C chapters/c && chapters/c/bin/threaded_proxy 8080 8000
 *
 * A detached thread per connection: cheaper than a process, nothing to reap. Wrong on
 * purpose, as the original was:
 * - no limit on threads: a burst of clients starts threads until pthread_create fails
 *   (those clients are dropped) or memory runs out. Stage 4 has a fixed pool (chapter 04);
 * - no timeouts: a client that stops mid-request holds its thread forever. The stages set
 *   read and write timeouts on every socket (chapters 01 and 03);
 * - SIGPIPE is not ignored, and one thread's SIGPIPE kills the whole process, every
 *   client with it;
 * - the exchange of chapter 01 (course.h, naive_exchange), with all its faults.
 */
#include <pthread.h>

#include "course.h"

struct job {
    int client;
    const struct sockaddr_in *backend;
};

static void *serve(void *arg)
{
    struct job *job = arg;
    naive_exchange(job->client, job->backend);
    close(job->client);
    free(job);
    return NULL;
}

int main(int argc, char **argv)
{
    struct args a;
    parse_args(argc, argv, &a, 1);
    int server = listen_on(&a.listen);
    for (;;) {
        int client = accept(server, NULL, NULL);
        if (client < 0)
            continue;
        struct job *job = malloc(sizeof *job);
        pthread_t thread;
        if (!job) {
            close(client);
            continue;
        }
        job->client = client;
        job->backend = &a.backends[0];
        if (pthread_create(&thread, NULL, serve, job) != 0) {
            close(client);
            free(job);
            continue;
        }
        pthread_detach(thread);
    }
}
