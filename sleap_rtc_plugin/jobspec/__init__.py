"""What a job package may contain and ask for.

Shared by the side that builds or receives packages (client) and the side that checks
and runs them (worker), so neither imports the other: refusal codes, the zip-bomb-safe
archive reader, the sleap-nn arguments a package may pass, and the model heads.
Imports only ``protocol``/``config``/``util``/``errors``.
"""
