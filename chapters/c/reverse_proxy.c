/*
 * reverse_proxy.c: chapter 01, the C counterpart of stage 1 (the course's Reverse_Proxy.c).
 *
 *   make -C chapters/c && chapters/c/bin/reverse_proxy 8080 8000
 *
 * Wrong on purpose, as the original was:
 * - the exchange (course.h, naive_exchange): one read() of 4 KiB is the request, the
 *   response ends at the backend's close or 4 KiB. A 10 KB response is cut, a body sent
 *   after the head is lost, a keep-alive backend hangs it. Stage 1 frames both messages
 *   (chapter 01);
 * - one client at a time with no timeout: a client that connects and sends nothing blocks
 *   everyone behind it. Stage 2 forks per connection (chapter 02), stage 1 has timeouts;
 * - SIGPIPE is not ignored: a client that leaves before its answer is written kills the
 *   proxy. The Rust runtime ignores SIGPIPE, so the stages get an error instead.
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
        naive_exchange(client, &a.backends[0]);
        close(client);
    }
}
