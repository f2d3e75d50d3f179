#include <stdio.h>
#include <string.h>

#include "cmd_recipes.h"
#include "error.h"

int main(int argc, char **argv)
{
        if (argc > 1 && !strcmp(argv[1], "version")) {
                printf("kiln %s\n", KILN_VERSION);
                return 0;
        }
        /* the lead's verb table replaces this on the main line */
        if (argc > 1 && !strcmp(argv[1], "build"))
                return cmd_build_plan(argc - 1, argv + 1);
        fprintf(stderr, "kiln: usage: kiln VERB [ARGS]\n");
        return 2;
}
