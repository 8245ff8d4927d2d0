/* The program the exec racer runs: prints WORD (set with -DWORD="...") and exits. */
#include <string.h>
#include <unistd.h>

#ifndef WORD
#define WORD "ALLOWED"
#endif

int main(void) {
    static const char msg[] = WORD "\n";
    return write(1, msg, strlen(msg)) == (long)strlen(msg) ? 0 : 1;
}
