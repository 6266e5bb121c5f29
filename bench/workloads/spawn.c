/*
 * spawn: runs one workload process and measures it.
 *
 *   spawn REPORT PRELOAD TIMEOUT_S command [args...]
 *
 * Forks, sets LD_PRELOAD=PRELOAD in the child (nothing when PRELOAD is
 * empty), execs the command, waits with wait4 and writes one line to the file
 * REPORT:  rc=N wall_s=S maxrss_kb=K utime_s=U stime_s=T timed_out=0|1
 * (rc is the exit status, or minus the signal number).
 *
 * Why not measure from Python directly: the kernel keeps a process's RSS
 * high-water mark across exec, so a child forked from the Python harness
 * reports at least the harness's own RSS as ru_maxrss. Forked from this
 * small program, the floor is about 1 MiB.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t timed_out;
static pid_t child;

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
    if (child > 0)
        kill(child, SIGKILL);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: spawn REPORT PRELOAD TIMEOUT_S command [args...]\n");
        return 64;
    }
    const char *report = argv[1], *preload = argv[2];
    double timeout = atof(argv[3]);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    child = fork();
    if (child < 0) {
        perror("spawn: fork");
        return 70;
    }
    if (child == 0) {
        if (preload[0] != '\0')
            setenv("LD_PRELOAD", preload, 1);
        else
            unsetenv("LD_PRELOAD");
        execvp(argv[4], argv + 4);
        fprintf(stderr, "spawn: exec %s: %s\n", argv[4], strerror(errno));
        _exit(127);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    if (timeout > 0) {
        struct itimerval it = {{0, 0}, {(time_t)timeout, (suseconds_t)((timeout - (long)timeout) * 1e6)}};
        setitimer(ITIMER_REAL, &it, NULL);
    }
    int status;
    struct rusage ru;
    pid_t r;
    while ((r = wait4(child, &status, 0, &ru)) < 0 && errno == EINTR)
        ;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (r < 0) {
        perror("spawn: wait4");
        return 70;
    }
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? -WTERMSIG(status) : -1;
    FILE *f = fopen(report, "w");
    if (f == NULL) {
        perror("spawn: report");
        return 70;
    }
    fprintf(f, "rc=%d wall_s=%.6f maxrss_kb=%ld utime_s=%.6f stime_s=%.6f timed_out=%d\n", rc,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
            ru.ru_maxrss, (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, (int)timed_out);
    fclose(f);
    return 0;
}
