/* scgi-load: a fixed SCGI request sent over and over by T threads, each one
 * connection at a time, for at most D seconds or N requests in all.
 *   scgi-load HOST PORT|unix:PATH THREADS SECONDS MAXREQ REQUESTFILE
 * Prints: requests errors seconds bytes_received */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char *host, *target, *request;
static size_t request_len;
static double deadline;
static long max_requests;
static atomic_long done, errors, received;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_conn(void) {
    if (strncmp(target, "unix:", 5) == 0) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strncpy(a.sun_path, target + 5, sizeof a.sun_path - 1);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
        if (fd >= 0) close(fd);
        return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(target))};
    inet_pton(AF_INET, host, &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

static void *worker(void *arg) {
    (void)arg;
    static __thread char buf[1 << 16];
    while (now() < deadline && atomic_fetch_add(&done, 1) < max_requests) {
        int fd = open_conn();
        if (fd < 0) { atomic_fetch_add(&errors, 1); continue; }
        size_t sent = 0;
        while (sent < request_len) {
            ssize_t n = write(fd, request + sent, request_len - sent);
            if (n <= 0) break;
            sent += n;
        }
        long got = 0;
        char head[256];
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0) {
            if (got < (long)sizeof head)
                memcpy(head + got, buf, got + n < (long)sizeof head ? (size_t)n
                                                                    : sizeof head - got);
            got += n;
        }
        close(fd);
        /* 200 either way CGI allows: a Status header anywhere in the head, or a status line. */
        size_t seen = got < (long)sizeof head ? (size_t)got : sizeof head;
        int ok = memmem(head, seen, "Status: 200", 11) != NULL
                 || (seen >= 12 && memcmp(head, "HTTP/1.", 7) == 0 && memcmp(head + 8, " 200", 4) == 0);
        if (sent < request_len || !ok) atomic_fetch_add(&errors, 1);
        atomic_fetch_add(&received, got);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: scgi-load HOST PORT|unix:PATH THREADS SECONDS MAXREQ FILE\n");
        return 2;
    }
    host = argv[1];
    target = argv[2];
    int threads = atoi(argv[3]);
    double seconds = atof(argv[4]);
    max_requests = atol(argv[5]);
    FILE *f = fopen(argv[6], "rb");
    if (!f) { perror(argv[6]); return 2; }
    fseek(f, 0, SEEK_END);
    request_len = ftell(f);
    fseek(f, 0, SEEK_SET);
    request = malloc(request_len);
    if (fread(request, 1, request_len, f) != request_len) { perror("read"); return 2; }
    fclose(f);
    double start = now();
    deadline = start + seconds;
    pthread_t tid[256];
    if (threads > 256) threads = 256;
    for (int i = 0; i < threads; i++) pthread_create(&tid[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
    long total = atomic_load(&done);
    if (total > max_requests) total = max_requests;
    long finished = total - atomic_load(&errors);
    printf("%ld %ld %.6f %ld\n", finished < 0 ? 0 : finished, atomic_load(&errors),
           now() - start, atomic_load(&received));
    return 0;
}
