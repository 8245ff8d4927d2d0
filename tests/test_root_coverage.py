"""Every path-taking syscall is trapped or refused in an emulated root (docs/design.md "Coverage").

With --root the kernel must never resolve a path for the child: each
syscall that takes a path is either notified (and handled by a table row)
or refused by the filter.  Checked on the filter's rules for both
architectures, with no process started.
"""

from __future__ import annotations

import pytest

from sandlock import _filter
from sandlock import _policy
from sandlock import _syscalls
from sandlock import _table

# Every syscall of x86_64 and aarch64 (Linux 6.18) with a pathname argument.
PATH_SYSCALLS = """
open openat openat2 creat stat lstat newfstatat statx access faccessat faccessat2 readlink readlinkat
mkdir mkdirat mknod mknodat rmdir unlink unlinkat rename renameat renameat2 link linkat symlink symlinkat
chmod fchmodat fchmodat2 chown lchown fchownat truncate utime utimes utimensat futimesat
getxattr lgetxattr setxattr lsetxattr listxattr llistxattr removexattr lremovexattr
setxattrat getxattrat listxattrat removexattrat file_getattr file_setattr
statfs chdir getcwd execve execveat inotify_add_watch fanotify_mark bind connect
acct swapon swapoff mount umount2 chroot pivot_root quotactl uselib name_to_handle_at open_by_handle_at
open_tree open_tree_attr move_mount fsconfig fspick mount_setattr mq_open mq_unlink
""".split()


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_no_path_syscall_reaches_the_kernel_unhandled(arch: str, tmp_path) -> None:
    policy = _policy.make_policy(chroot=str(tmp_path))
    traps = _table.traps_for(policy, 7, arch)
    rules = _filter.rules_for(arch, traps)
    table = _syscalls.table(arch)
    handlers = _table.handlers_for(traps, arch, root=True)
    loose = []
    for name in PATH_SYSCALLS:
        if name not in table:
            continue  # not on this architecture (e.g. aarch64 has no open/stat/...)
        rule = rules[table[name]]
        if rule == "notify" or (isinstance(rule, tuple) and rule[1] == "notify"):
            assert table[name] in handlers, f"{name} is trapped without a handler"
            continue
        if rule in ("eperm", "enosys", "kill") or (isinstance(rule, tuple) and rule[1] in ("eperm", "enosys")):
            continue
        loose.append(f"{name}: {rule!r}")
    assert not loose, "path syscalls the kernel would resolve against the host: " + ", ".join(loose)
