/*
 * course.h: what the four C programs of the course share.
 *
 * Two parts. The plumbing (arguments, the listening socket) is here so that every program
 * can be started like the Rust stages, by the tests and by `loadtest compare`; it is not
 * what the chapters criticise. The exchange (`naive_exchange`) is the C course's own code,
 * copied into each of its programs there and kept in one place here: it is what chapter 01
 * takes apart, and every program below inherits its faults.
 */
#ifndef COURSE_H
#define COURSE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFFER_SIZE 4096
#define MAX_BACKENDS 16

struct args {
    struct sockaddr_in listen;
    struct sockaddr_in backends[MAX_BACKENDS];
    int nbackends;
};

static void loopback(int port, struct sockaddr_in *out)
{
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((unsigned short)port);
    out->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* "PORT" or "127.0.0.1:PORT" (any IPv4 address); 0 when it is neither. */
static int parse_addr(const char *text, struct sockaddr_in *out)
{
    char host[64] = "127.0.0.1";
    const char *colon = strrchr(text, ':');
    const char *port = text;
    if (colon) {
        size_t len = (size_t)(colon - text);
        if (len == 0 || len >= sizeof host)
            return 0;
        memcpy(host, text, len);
        host[len] = '\0';
        port = colon + 1;
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || p < 0 || p > 65535)
        return 0;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((unsigned short)p);
    return inet_pton(AF_INET, host, &out->sin_addr) == 1;
}

/*
 * The course's way, `prog LISTEN_PORT BACKEND_PORT...`, and the stages' way,
 * `prog --listen 127.0.0.1:PORT --backend 127.0.0.1:PORT...`, so that the same harness starts
 * a stage and its C counterpart. Without backends, the course's ports 8000, 8001, ... are used.
 */
static void parse_args(int argc, char **argv, struct args *a, int default_backends)
{
    int positional = 0;
    loopback(8080, &a->listen);
    a->nbackends = 0;
    for (int i = 1; i < argc; i++) {
        const char *value = argv[i];
        int is_listen = strcmp(argv[i], "--listen") == 0;
        int is_backend = strcmp(argv[i], "--backend") == 0;
        if ((is_listen || is_backend) && i + 1 < argc)
            value = argv[++i];
        else if (argv[i][0] == '-')
            goto usage;
        else
            is_listen = positional++ == 0, is_backend = !is_listen;
        if (is_backend && a->nbackends == MAX_BACKENDS)
            goto usage;
        if (!parse_addr(value, is_listen ? &a->listen : &a->backends[a->nbackends++]))
            goto usage;
    }
    if (a->nbackends == 0)
        for (; a->nbackends < default_backends; a->nbackends++)
            loopback(8000 + a->nbackends, &a->backends[a->nbackends]);
    return;
usage:
    fprintf(stderr, "usage: %s [LISTEN_PORT [BACKEND_PORT...]]\n"
                    "       %s --listen 127.0.0.1:PORT --backend 127.0.0.1:PORT...\n",
            argv[0], argv[0]);
    exit(2);
}

/* Binds, listens, and says where: port 0 gets a free port, which getsockname tells. */
static int listen_on(struct sockaddr_in *addr)
{
    int server = socket(AF_INET, SOCK_STREAM, 0);
    int yes = 1;
    socklen_t len = sizeof *addr;
    if (server < 0) {
        perror("socket");
        exit(1);
    }
    setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (bind(server, (struct sockaddr *)addr, sizeof *addr) < 0 || listen(server, 128) < 0
        || getsockname(server, (struct sockaddr *)addr, &len) < 0) {
        perror("bind/listen");
        exit(1);
    }
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr->sin_addr, host, sizeof host);
    printf("listening on %s:%d\n", host, ntohs(addr->sin_port));
    fflush(stdout);
    return server;
}

/*
 * One exchange, as the C course wrote it. Every line of it assumes something TCP never
 * promised (chapter 01 shows each one fail; stage 1 frames both messages instead):
 * - one read() is "the request", whatever the first packet held;
 * - the response ends when the backend closes or the buffer is full, so a response larger
 *   than 4 KiB is cut and a keep-alive backend, which never closes, hangs it forever;
 * - no timeouts anywhere, and a backend that refuses gets the client nothing, not a 502.
 */
static void naive_exchange(int client, const struct sockaddr_in *backend)
{
    char buffer[BUFFER_SIZE];
    ssize_t n = read(client, buffer, sizeof buffer - 1);
    if (n <= 0)
        return;
    int upstream = socket(AF_INET, SOCK_STREAM, 0);
    if (upstream < 0)
        return;
    if (connect(upstream, (const struct sockaddr *)backend, sizeof *backend) < 0) {
        perror("connect to backend");
        close(upstream);
        return;
    }
    if (write(upstream, buffer, (size_t)n) != n) {
        close(upstream);
        return;
    }
    size_t total = 0;
    while (total < sizeof buffer - 1) {
        n = read(upstream, buffer + total, sizeof buffer - 1 - total);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
    if (write(client, buffer, total) < 0)
        perror("write to client");
    close(upstream);
}

#endif
