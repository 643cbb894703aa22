"""Interpreters: the facts installing for one needs, probed with its own standard library
only (:mod:`.interp`), and the adopted ones, the default and which environment is "main"
(:mod:`.interpreters`)."""
