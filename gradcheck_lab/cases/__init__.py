"""The case registry: every built-in reference/torch pair, and the cases users register.

Importing the package costs nothing (no torch): :mod:`gradcheck_lab.cases.registry` holds the registry and
registers the built-in catalogues when imported.
"""

ENTRY_POINT_GROUP = "gradcheck_lab.cases"
"""The entry-point group under which a package registers its modules of cases."""
