/* cli/commands.h: one entry point per verb, each in cli/cmd_<verb>.c
 * (help, version and completion in cli/help.c). */
#ifndef KILN_CLI_COMMANDS_H
#define KILN_CLI_COMMANDS_H

struct cli_args;

int cmd_version(struct cli_args *a);
int cmd_help(struct cli_args *a);
int cmd_completion(struct cli_args *a);
int cmd_inspect(struct cli_args *a);
int cmd_digest(struct cli_args *a);
int cmd_copy(struct cli_args *a);
int cmd_ls(struct cli_args *a);
int cmd_fsck(struct cli_args *a);
int cmd_diff(struct cli_args *a);
int cmd_build(struct cli_args *a);
int cmd_validate(struct cli_args *a);
int cmd_verify(struct cli_args *a);
int cmd_cache(struct cli_args *a);
int cmd_lock(struct cli_args *a);
int cmd_run(struct cli_args *a);

#endif
