// Stop requests from SIGTERM, SIGINT and SIGUSR1 (Slurm's warning before it kills a job).
#ifndef CPTSIGNALS_H
#define CPTSIGNALS_H

/// Installs handlers for SIGTERM, SIGINT and SIGUSR1. The first such signal only records itself
/// (the trainer finishes its step, writes a checkpoint and exits); a second one exits the process
/// at once with status 128 + signal number. Files are only ever replaced by rename, so an
/// immediate exit leaves no partial file behind.
void pt_install_stop_handlers(void);

/// The signal number of the first stop request, or 0.
int pt_stop_requested(void);

#endif
