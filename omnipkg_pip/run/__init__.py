"""``pip-omni run``'s machinery: PEP 723 script blocks (:mod:`.pep723`), bubbles made on
demand for a run (:mod:`.ondemand`), the version matrix (:mod:`.matrix`), its cells forked
from a zygote (:mod:`.cellfork`) and the pytest plugin's session over it
(:mod:`._matrix_session`). The command line is :mod:`omnipkg_pip.commands.run`."""
