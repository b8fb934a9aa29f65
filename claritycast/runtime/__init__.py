"""The runtime wing: running the chain as processes.

The Faust app factory (`app`) and its transport fixes (`transport`), the
worker (`worker`), `claritycast up` (`up`), the embedded Tansu and SecantusDB
servers (`embedded`), free ports (`ports`) and the publisher commands use to
send on Kafka (`publisher`). It may import `agents` and every wing below
them; only the CLI and the web process import it.
"""
