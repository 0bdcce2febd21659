/* native_relay: the leanest native CONNECT relay, a reference side for
 * bench/sidecar_bench.py --native-relay. It is the floor a native tunnel path
 * could reach on the machine, not a product: no policy, no record, no
 * timeouts, no limits, numeric IPv4 targets only.
 *
 * One process, one thread, one edge-triggered epoll loop. Each tunnel reads
 * the client's head (up to 8 KiB), parses "CONNECT a.b.c.d:port HTTP/1.x",
 * connects without blocking, answers 200 and then copies bytes both ways.
 * Each direction has one buffer: a side is not read while the buffer towards
 * its peer holds bytes (backpressure); an EOF is passed on as shutdown(SHUT_WR)
 * once that buffer is empty; the tunnel closes when both directions are done
 * or on any error.
 *
 * Build: cc -O2 -Wall -Wextra -o native_relay native_relay.c
 * Usage: native_relay PORT   (listens on 127.0.0.1:PORT)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (32 * 1024) /* per direction; a tunnel stays under malloc's mmap threshold */
#define HEAD_MAX (8 * 1024)
#define CLIENT 0
#define UPSTREAM 1

enum state { HEAD, CONNECTING, RELAY };

/* One socket of a tunnel. readable/writable: edge-triggered readiness, cleared on EAGAIN
 * or a short read/write; hup: the peer's FIN was signalled, so read on to EOF; eof: read
 * returned 0; shut: we sent our FIN. buf[off, off+len): bytes waiting to be sent TO it. */
struct end {
    int fd, readable, writable, hup, eof, shut;
    size_t off, len;
    struct tunnel *t;
    char buf[BUF_SIZE];
};

struct tunnel {
    struct end e[2];
    enum state state;
    int dead;
    struct tunnel *next_dead;
};

static const char OK_200[] = "HTTP/1.1 200 Connection established\r\n\r\n";
static const char BAD_400[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
static const char BAD_502[] = "HTTP/1.1 502 Bad Gateway\r\n\r\n";

static int ep;
static struct tunnel *graveyard; /* freed after the current batch of events */

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int watch(struct end *e) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = e};
    return epoll_ctl(ep, EPOLL_CTL_ADD, e->fd, &ev);
}

static void kill_tunnel(struct tunnel *t, const char *answer) {
    if (answer) /* best effort: the client socket is fresh, so it has room */
        (void)send(t->e[CLIENT].fd, answer, strlen(answer), MSG_NOSIGNAL);
    for (int i = 0; i < 2; i++)
        if (t->e[i].fd >= 0)
            close(t->e[i].fd); /* also removes it from the epoll set */
    t->dead = 1;
    t->next_dead = graveyard;
    graveyard = t;
}

/* Read from `src` into `dst`'s outbound buffer, after the bytes it holds. No signal
 * handlers are installed, so no EINTR. */
static ssize_t read_into(struct end *src, struct end *dst, size_t room) {
    ssize_t n = recv(src->fd, dst->buf + dst->len, room, 0);
    if (n > 0) {
        dst->len += (size_t)n;
        if ((size_t)n < room && !src->hup)
            src->readable = 0; /* a short read drained the socket; new data raises a new edge */
    } else if (n == 0) {
        src->eof = 1;
    } else if (errno == EAGAIN) {
        src->readable = 0;
    }
    return n;
}

/* Move bytes both ways until nothing can move. -1: error, 1: both directions done, 0: wait. */
static int pump(struct tunnel *t) {
    int progress;
    do {
        progress = 0;
        for (int s = 0; s < 2; s++) {
            struct end *src = &t->e[s], *dst = &t->e[!s];
            if (dst->len && dst->writable) {
                ssize_t n = send(dst->fd, dst->buf + dst->off, dst->len, MSG_NOSIGNAL);
                if (n < 0 && errno != EAGAIN)
                    return -1;
                if (n < 0)
                    dst->writable = 0;
                else {
                    dst->off += (size_t)n, dst->len -= (size_t)n, progress = 1;
                    if (dst->len)
                        dst->writable = 0; /* a short write filled the socket buffer */
                    else
                        dst->off = 0;
                }
            }
            if (!dst->len && src->readable && !src->eof) {
                ssize_t n = read_into(src, dst, BUF_SIZE);
                if (n < 0 && errno != EAGAIN)
                    return -1;
                progress |= n >= 0;
            }
            if (src->eof && !dst->len && !dst->shut) {
                if (shutdown(dst->fd, SHUT_WR) < 0)
                    return -1;
                dst->shut = 1;
            }
        }
    } while (progress);
    return t->e[CLIENT].shut && t->e[UPSTREAM].shut;
}

/* Parse the request line "CONNECT a.b.c.d:port HTTP/1.x" (NUL-terminated) of `head`. */
static int parse_connect(char *head, struct sockaddr_in *sa) {
    char host[INET_ADDRSTRLEN], *eol = strstr(head, "\r\n"), *p = head + 8, *sp, *colon;
    if (eol)
        *eol = '\0';
    if (strncmp(head, "CONNECT ", 8) || !(sp = strchr(p, ' ')) || strncmp(sp, " HTTP/1.", 8)
        || strlen(sp) != 9 || sp[8] < '0' || sp[8] > '9' || !(colon = memrchr(p, ':', sp - p)))
        return -1;
    size_t host_len = (size_t)(colon - p), digits = (size_t)(sp - colon - 1);
    if (host_len >= sizeof host || digits < 1 || digits > 5)
        return -1;
    memcpy(host, p, host_len);
    host[host_len] = '\0';
    long port = 0;
    for (const char *d = colon + 1; d < sp; d++) {
        if (*d < '0' || *d > '9')
            return -1;
        port = port * 10 + (*d - '0');
    }
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((unsigned short)port);
    return port >= 1 && port <= 65535 && inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/* HEAD: gather the client's head in the to-upstream buffer, then start the connect. */
static int on_head(struct tunnel *t) {
    struct end *c = &t->e[CLIENT], *u = &t->e[UPSTREAM];
    while (c->readable) {
        if (read_into(c, u, HEAD_MAX - u->len) <= 0)
            return c->eof || errno != EAGAIN ? -1 : 0;
        char *end = memmem(u->buf, u->len, "\r\n\r\n", 4);
        if (!end) {
            if (u->len == HEAD_MAX)
                return -1;
            continue;
        }
        struct sockaddr_in sa;
        *end = '\0'; /* the head is a C string from here on */
        if (parse_connect(u->buf, &sa) < 0) {
            kill_tunnel(t, BAD_400);
            return 0;
        }
        size_t head_len = (size_t)(end + 4 - u->buf);
        u->len -= head_len; /* bytes after the head are sent upstream once connected */
        memmove(u->buf, u->buf + head_len, u->len);
        u->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (u->fd >= 0)
            nodelay(u->fd);
        if (u->fd < 0 || (connect(u->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
            || watch(u) < 0) {
            kill_tunnel(t, BAD_502);
            return 0;
        }
        t->state = CONNECTING;
        return 0;
    }
    return 0;
}

/* CONNECTING: the upstream socket signalled; answer 200 or 502. */
static int on_connected(struct tunnel *t) {
    struct end *c = &t->e[CLIENT], *u = &t->e[UPSTREAM];
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        kill_tunnel(t, BAD_502);
        return 0;
    }
    t->state = RELAY;
    u->writable = 1;
    memcpy(c->buf, OK_200, sizeof OK_200 - 1);
    c->off = 0, c->len = sizeof OK_200 - 1;
    return pump(t);
}

static void on_accept(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == ECONNABORTED)
                continue;
            return; /* EAGAIN; or out of descriptors: the listener stays ready, retried */
        }
        struct tunnel *t = malloc(sizeof *t); /* not calloc: the buffers need no zeroing */
        if (!t) {
            close(fd);
            continue;
        }
        for (int i = 0; i < 2; i++) {
            struct end *e = &t->e[i];
            e->fd = -1, e->readable = e->writable = e->hup = e->eof = e->shut = 0;
            e->off = e->len = 0, e->t = t;
        }
        t->state = HEAD, t->dead = 0, t->next_dead = NULL;
        t->e[CLIENT].fd = fd;
        t->e[CLIENT].writable = 1;
        nodelay(fd);
        if (watch(&t->e[CLIENT]) < 0)
            kill_tunnel(t, NULL);
    }
}

int main(int argc, char **argv) {
    if (argc != 2 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
        || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0) {
        perror("native_relay: listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}; /* NULL marks the listener */
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
        perror("native_relay: epoll");
        return 1;
    }
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0 && errno != EINTR) {
            perror("native_relay: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct end *e = events[i].data.ptr;
            uint32_t got = events[i].events;
            if (!e) {
                on_accept(lfd);
                continue;
            }
            struct tunnel *t = e->t;
            if (t->dead) /* closed by an earlier event of this batch */
                continue;
            e->readable |= !!(got & (EPOLLIN | EPOLLRDHUP | EPOLLHUP));
            e->hup |= !!(got & (EPOLLRDHUP | EPOLLHUP));
            int rc = 0;
            if (t->state == CONNECTING && e == &t->e[UPSTREAM])
                rc = on_connected(t); /* EPOLLOUT, or EPOLLERR that SO_ERROR explains */
            else if (got & EPOLLERR)
                rc = -1;
            else if (t->state == HEAD)
                rc = on_head(t);
            else if (t->state == RELAY) {
                e->writable |= !!(got & EPOLLOUT);
                rc = pump(t);
            }
            if (rc && !t->dead)
                kill_tunnel(t, NULL);
        }
        while (graveyard) {
            struct tunnel *t = graveyard;
            graveyard = t->next_dead;
            free(t);
        }
    }
}
