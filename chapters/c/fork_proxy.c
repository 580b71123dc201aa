/*
 * fork_proxy.c: chapter 02, the C counterpart of stage 2.
 *
 *   make -C chapters/c && chapters/c/bin/fork_proxy 8080 8000
 *
 * A process per connection, so a silent client no longer blocks the others. Wrong on
 * purpose, as the original was:
 * - the parent never calls wait(): every child that ends stays a zombie, one per
 *   connection ever served, until the process table is full and fork() fails for everyone
 *   on the machine. Stage 2 reaps its children (chapter 02);
 * - no limit on how many children run at once; stage 4 bounds the work (chapter 04);
 * - the exchange of chapter 01 (course.h, naive_exchange), with all its faults.
 */
#include "course.h"

int main(int argc, char **argv)
{
    struct args a;
    parse_args(argc, argv, &a, 1);
    int server = listen_on(&a.listen);
    for (;;) {
        int client = accept(server, NULL, NULL);
        if (client < 0)
            continue;
        if (fork() == 0) {
            close(server);
            naive_exchange(client, &a.backends[0]);
            close(client);
            _exit(0);
        }
        /* The child has its own copy of the socket; the parent's would keep it open. */
        close(client);
    }
}
