"""Sans-IO AMQP 0-9-1 codec: bytes in, typed frames and methods out, and back.

Nothing here touches asyncio or sockets; every decoder is a pure function of its input.
"""
