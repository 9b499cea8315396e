"""The asyncio edge: listeners, connections and channels. The only layer with sockets."""
