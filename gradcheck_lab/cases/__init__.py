"""The case registry: every built-in reference/torch pair, and the cases users register."""
