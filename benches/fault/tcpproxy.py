"""A TCP proxy that plays PostgreSQL going down and coming back, without touching it.

    tcpproxy.py LISTEN_PORT UPSTREAM_HOST:UPSTREAM_PORT

SIGUSR1 cuts: the listening socket closes (new connections are refused, as when
nothing listens on the port) and every open connection is reset; that is what the
processes behind it see when PostgreSQL stops, crashes or restarts. SIGUSR2 restores:
the port listens again and new connections reach PostgreSQL. Each change is printed
with its time. The same model as authserver/tests/it/harness/proxy.rs (its "cut"
mode), whose behaviour an integration test checks against PostgreSQL.

Not modelled: a network partition (packets dropped, connections hanging), latency,
a server that answers with errors (e.g. "the database system is starting up").
"""

import asyncio
import signal
import sys
import time


class Proxy:
    def __init__(self, port: int, upstream: str):
        self.port = port
        self.host, up_port = upstream.rsplit(":", 1)
        self.up_port = int(up_port)
        self.server = None
        self.writers = set()

    async def listen(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port, reuse_address=True)

    async def handle(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.up_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self.writers.update(pair)

        async def pump(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self.writers.difference_update(pair)

    async def cut(self):
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()
        print(f"{time.time():.3f} cut", flush=True)

    async def restore(self):
        if self.server is None:
            for _ in range(100):
                try:
                    await self.listen()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        print(f"{time.time():.3f} restored", flush=True)


async def main():
    proxy = Proxy(int(sys.argv[1]), sys.argv[2])
    await proxy.listen()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: asyncio.ensure_future(proxy.cut()))
    loop.add_signal_handler(signal.SIGUSR2, lambda: asyncio.ensure_future(proxy.restore()))
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    print(f"{time.time():.3f} listening on {proxy.port}", flush=True)
    await done.wait()


if __name__ == "__main__":
    asyncio.run(main())
