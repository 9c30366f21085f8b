"""A small Tk app the tests drive with xdotool; it logs what it saw to a JSON file on exit.

Run: ``python tests/apps/tkapp.py --out state.json [--title T] [--geometry 600x400+40+40]``.
Layout (window-relative, fixed so tests can aim): a button at (20, 20, 160x50) that turns
from red to green when clicked, an entry at (20, 100, 300x30), a password entry at
(20, 150, 300x30), and a 40-line list at (20, 200, 300x180) that scrolls.
Exits on SIGTERM/SIGINT, window close, or ``--quit-after SECONDS``, writing ``--out``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tkinter as tk
from pathlib import Path
from typing import Any

RED = "#d01010"
GREEN = "#10b010"
BUTTON = (20, 20, 160, 50)
ENTRY = (20, 100, 300, 30)
PASSWORD = (20, 150, 300, 30)
LIST = (20, 200, 300, 180)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="keystep test app")
    ap.add_argument("--geometry", default="600x420+40+40")
    ap.add_argument("--quit-after", type=float, default=0.0)
    args = ap.parse_args(argv)

    state: dict[str, Any] = {"clicks": [], "button_color": RED, "scroll": [], "focus": 0}
    root = tk.Tk(className="KeystepTestApp")
    root.title(args.title)
    root.geometry(args.geometry)
    stop = {"now": False}

    def on_button(event: tk.Event[Any]) -> None:
        state["clicks"].append({"x": event.x_root, "y": event.y_root, "button": event.num})
        state["button_color"] = GREEN
        button.configure(bg=GREEN, activebackground=GREEN)

    button = tk.Label(root, text="Press", bg=RED, fg="white", activebackground=RED)
    button.place(x=BUTTON[0], y=BUTTON[1], width=BUTTON[2], height=BUTTON[3])
    button.bind("<ButtonRelease-1>", on_button)
    button.bind("<ButtonRelease-3>", on_button)

    entry = tk.Entry(root, font=("Courier", 14))
    entry.place(x=ENTRY[0], y=ENTRY[1], width=ENTRY[2], height=ENTRY[3])
    password = tk.Entry(root, show="*", font=("Courier", 14))
    password.place(x=PASSWORD[0], y=PASSWORD[1], width=PASSWORD[2], height=PASSWORD[3])

    lst = tk.Listbox(root, font=("Courier", 12))
    for i in range(40):
        lst.insert("end", f"line {i:02d}")
    lst.place(x=LIST[0], y=LIST[1], width=LIST[2], height=LIST[3])

    def on_scroll(event: tk.Event[Any]) -> None:
        state["scroll"].append(event.num)

    lst.bind("<Button-4>", on_scroll, add="+")
    lst.bind("<Button-5>", on_scroll, add="+")

    def on_focus(_event: tk.Event[Any]) -> None:
        state["focus"] += 1

    root.bind("<FocusIn>", on_focus)

    def finish() -> None:
        state["entry"] = entry.get()
        state["password_len"] = len(password.get())
        state["list_top"] = lst.yview()[0]
        Path(args.out).write_text(json.dumps(state), "utf-8")
        root.destroy()

    def poll() -> None:
        if stop["now"]:
            finish()
            return
        root.after(50, poll)

    def request_stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    root.protocol("WM_DELETE_WINDOW", request_stop)
    if args.quit_after > 0:
        root.after(int(args.quit_after * 1000), request_stop)
    root.after(50, poll)
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
