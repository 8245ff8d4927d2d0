/* hello_musl.c: a dynamically linked musl program; its ELF interpreter is
 * /lib/ld-musl-x86_64.so.1.  Built by tests/rootfs.py (musl_programs()). */
#include <stdio.h>

int main(void)
{
    puts("hello from musl");
    return 0;
}
