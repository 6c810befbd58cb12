// Stop-request signal handlers: async-signal-safe (a sig_atomic_t flag and _exit only).
#include "CPTSignals.h"
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig) {
    if (stop_signal != 0) _exit(128 + sig);
    stop_signal = sig;
}

void pt_install_stop_handlers(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGUSR1, &action, NULL);
}

int pt_stop_requested(void) { return (int)stop_signal; }
