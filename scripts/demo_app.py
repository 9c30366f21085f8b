"""A small expense-report app for the demo: a form, a password prompt, a list and buttons."""

from __future__ import annotations

import json
import sys
import tkinter as tk
from tkinter import ttk


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else None
    root = tk.Tk(className="ExpenseDemo")
    root.title("Expense report — keystep demo")
    root.geometry("900x640+40+40")
    state: dict[str, object] = {"submitted": 0, "approved": []}

    form = ttk.LabelFrame(root, text="New expense", padding=10)
    form.place(x=20, y=20, width=420, height=300)
    fields: dict[str, tk.Entry] = {}
    for row, (label, secret) in enumerate(
        [
            ("Employee", False),
            ("Email", False),
            ("Card number", False),
            ("Amount", False),
            ("Approval PIN", True),
        ]
    ):
        ttk.Label(form, text=label).grid(row=row, column=0, sticky="w", pady=6)
        entry = tk.Entry(form, width=28, show="*" if secret else "")
        entry.grid(row=row, column=1, pady=6)
        fields[label] = entry
    status = tk.StringVar(value="Draft")
    submit = tk.Button(form, text="Submit", bg="#2e7d32", fg="white", width=12)
    submit.grid(row=6, column=1, sticky="e", pady=12)
    ttk.Label(form, textvariable=status).grid(row=6, column=0, sticky="w")

    def on_submit() -> None:
        state["submitted"] = int(state["submitted"]) + 1  # type: ignore[call-overload]
        status.set("Submitted")
        submit.configure(bg="#c62828", text="Sent")

    submit.configure(command=on_submit)

    notes = tk.Text(root, width=48, height=10)
    notes.place(x=20, y=340, width=420, height=260)

    listing = tk.Listbox(root)
    for i in range(80):
        listing.insert("end", f"Expense #{1000 + i}: travel, meals, supplies")
    listing.place(x=470, y=20, width=400, height=480)

    def on_approve() -> None:
        sel = listing.curselection()
        if sel:
            state["approved"].append(listing.get(sel[0]))  # type: ignore[union-attr]
            listing.itemconfigure(sel[0], bg="#a5d6a7")

    tk.Button(root, text="Approve selected", command=on_approve).place(x=470, y=520, width=180)

    def on_close() -> None:
        if out:
            state["fields"] = {k: len(v.get()) for k, v in fields.items()}
            with open(out, "w", encoding="utf-8") as fh:
                json.dump(state, fh)
        root.destroy()

    root.protocol("WM_DELETE_WINDOW", on_close)
    root.bind("<Control-q>", lambda _e: on_close())
    root.mainloop()


if __name__ == "__main__":
    main()
