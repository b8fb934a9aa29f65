"""The cli wing: the `claritycast` command, one module per command group.

`main` joins them and turns every known failure into one line. The commands
call the same functions as the HTTP API; only `demo` and `simulate` may
import the stand-ins. It may import every wing but the stand-ins.
"""
