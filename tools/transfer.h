/*
 * transfer: the `quiver` commands that move data in bulk — import (import.c:
 * files to Items/Import streams, pipelined and resumable), export and backup
 * (transfer.c: Items/Scan to a file, Admin/Backup to an archive). quiver.c's
 * dispatch calls them; they call down into cli.h, meter.h, formats.h and
 * checkpoint.h, never back into quiver.c.
 */
#ifndef QUIVER_TOOLS_TRANSFER_H
#define QUIVER_TOOLS_TRANSFER_H

/* Each takes the arguments after the command's name and returns an exit code
 * (cli.h). */
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_cluster_restore(int argc, char **argv);

#endif
