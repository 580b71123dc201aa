/*
 * proxy_load_balancer.c: chapter 05, the C counterpart of stage 5.
 *
 *   make -C chapters/c && chapters/c/bin/proxy_load_balancer 8080 8000 8001 8002
 *
 * Round robin: each connection goes to the next backend in the list. Wrong on purpose, as
 * the original was:
 * - no health checks and no second try: a dead backend still gets its share of the
 *   connections, and each of those clients gets an empty reply. Stage 5 skips a backend
 *   that refuses (chapter 05), stage 6 checks health (chapter 06);
 * - one connection at a time, as in chapter 01, so one slow backend stalls all the others;
 * - the exchange of chapter 01 (course.h, naive_exchange), with all its faults.
 */
#include "course.h"

int main(int argc, char **argv)
{
    struct args a;
    parse_args(argc, argv, &a, 3);
    int server = listen_on(&a.listen);
    int next = 0;
    for (;;) {
        int client = accept(server, NULL, NULL);
        if (client < 0)
            continue;
        naive_exchange(client, &a.backends[next]);
        next = (next + 1) % a.nbackends;
        close(client);
    }
}
