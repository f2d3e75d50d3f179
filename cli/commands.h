/* cli/commands.h: one entry point per verb, each in cli/cmd_<verb>.c. */
#ifndef KILN_CLI_COMMANDS_H
#define KILN_CLI_COMMANDS_H

int cmd_version(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_digest(int argc, char **argv);
int cmd_copy(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_fsck(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_build(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_lock(int argc, char **argv);
int cmd_run(int argc, char **argv);

#endif
