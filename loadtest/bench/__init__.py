"""``waitroom bench``: one command that measures the server's CPU per operation against a
floor measured in the same run (see loadtest/README.md)."""
