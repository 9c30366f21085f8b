"""The command line: the public contract of DESIGN.md."""
