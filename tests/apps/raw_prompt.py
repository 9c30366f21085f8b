"""A remote sudo as the local terminal sees it through ssh: the prompt is printed, the pty
is in raw mode (ssh passes every key on; the remote side decides about echo), the keys are
not echoed. Then a line read normally. Writes "secret/name" to $OUT."""

from __future__ import annotations

import os
import sys
import termios
import time
import tty


def main() -> None:
    sys.stdout.write("alex@build:~$ ssh build2 sudo apt upgrade\r\n[sudo] password for alex: ")
    sys.stdout.flush()
    fd = sys.stdin.fileno()
    cooked = termios.tcgetattr(fd)
    tty.setraw(fd)
    secret = b""
    while (c := os.read(fd, 1)) not in (b"\r", b"\n", b""):
        secret += c
    termios.tcsetattr(fd, termios.TCSADRAIN, cooked)
    sys.stdout.write("\nName: ")
    sys.stdout.flush()
    name = sys.stdin.readline().strip()
    with open(os.environ["OUT"], "w") as fh:
        fh.write(f"{secret.decode()}/{name}")
    time.sleep(30)


if __name__ == "__main__":
    main()
