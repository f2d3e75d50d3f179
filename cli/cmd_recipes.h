/* cli/cmd_recipes.h: the verbs built on recipes/. */
#ifndef KILN_CLI_CMD_RECIPES_H
#define KILN_CLI_CMD_RECIPES_H

/* kiln build RECIPE (--dry-run [--json] | --stage DIR) [--arch A]
 *     [--source github|local] [--branch B] [--tag-suffix S] [--set K=V]...
 * argv[0] is the verb ("build"). */
int cmd_build_plan(int argc, char **argv);

#endif
