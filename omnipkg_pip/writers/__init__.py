"""Everything that writes the store: a wheel into a dist (:mod:`.ingest`), bytecode
(:mod:`.bytecode`), bubbles (:mod:`.bubbles`), archives in and out (:mod:`.archive`),
garbage collection (:mod:`.collect`), and the dist directory's format they all check
(:mod:`.layout`). Every write here is staged under ``<store>/tmp`` and renamed into place
under the store's writer lock; reading the store is :mod:`omnipkg_hook.store`."""
