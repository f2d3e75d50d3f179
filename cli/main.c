#include <stdio.h>
#include <string.h>

#include "error.h"

int main(int argc, char **argv)
{
        if (argc > 1 && !strcmp(argv[1], "version")) {
                printf("kiln %s\n", KILN_VERSION);
                return 0;
        }
        fprintf(stderr, "kiln: usage: kiln VERB [ARGS]\n");
        return 2;
}
