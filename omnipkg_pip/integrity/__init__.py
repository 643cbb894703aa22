"""Whether the store and the main environment are sound, and putting right what is not:
the checks (:mod:`.doctor`), the repairs (:mod:`.healing`), what of ours is in the main
environment (:mod:`.mainenv`), and one ``pip-omni doctor`` run over them (:mod:`.checkup`).
:mod:`.healing` uses the checker's findings; only :mod:`.checkup` calls both."""
