"""The CLI's commands, one module each; `controlplane/cli.py` builds the parser and runs them.

Why a package: cli.py had grown to every command and every helper; a command here owns its flags
(`add_parser`), its run function and its output, and shares only `common` (errors, loading, names).
"""
