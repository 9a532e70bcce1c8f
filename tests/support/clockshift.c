/* A test shim, loaded with LD_PRELOAD into a server: shifts every reading of the wall clock
 * (clock_gettime with CLOCK_REALTIME*, gettimeofday, time) by a number of milliseconds that a
 * test can change while the server runs. The number is an 8-byte native-endian integer at the
 * start of the file named by PRESENCE_CLOCK_SHIFT_FILE, mapped shared, so a write to the file is
 * seen at the next reading. The monotonic clock is left alone: that is what a step looks like. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile int64_t *shift_ms;
static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_gettimeofday)(struct timeval *, void *);

__attribute__((constructor)) static void init(void) {
    real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    real_gettimeofday = dlsym(RTLD_NEXT, "gettimeofday");
    const char *path = getenv("PRESENCE_CLOCK_SHIFT_FILE");
    if (!path) return;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    void *map = mmap(NULL, sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map != MAP_FAILED) shift_ms = map;
}

static int64_t shift(void) { return shift_ms ? *shift_ms : 0; }

static void shift_timespec(struct timespec *ts) {
    int64_t ns = (int64_t)ts->tv_nsec + (shift() % 1000) * 1000000;
    ts->tv_sec += shift() / 1000;
    while (ns < 0) { ns += 1000000000; ts->tv_sec -= 1; }
    while (ns >= 1000000000) { ns -= 1000000000; ts->tv_sec += 1; }
    ts->tv_nsec = ns;
}

/* Before the constructor ran (an allocator may read the clock that early), straight to the
 * kernel. */
int clock_gettime(clockid_t clock, struct timespec *ts) {
    int rc = real_clock_gettime ? real_clock_gettime(clock, ts)
                                : (int)syscall(SYS_clock_gettime, clock, ts);
    if (rc == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) shift_timespec(ts);
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    int rc = real_gettimeofday ? real_gettimeofday(tv, tz) : (int)syscall(SYS_gettimeofday, tv, tz);
    if (rc == 0 && tv) {
        struct timespec ts = {tv->tv_sec, tv->tv_usec * 1000};
        shift_timespec(&ts);
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
