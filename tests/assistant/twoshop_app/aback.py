"""An asyncio back for the assistant's cross-service tests: `python aback.py PORT_FILE`.

/deliver works out the days in `loop_days`, a plain function that runs on the event loop's thread
(15 ms of CPU, measured, so the test means the same on a fast machine), so concurrent requests queue before their handler even starts.
"""

import asyncio
import json
import os
import sys
import time
from urllib.parse import parse_qs, urlsplit


def loop_days(region):
    total, i, end = 0, 0, time.thread_time() + 0.015  # 15 ms of CPU whatever the machine's speed
    while True:  # work on the event loop's thread: every other request waits meanwhile
        for j in range(2000):
            total += (i + j) % 7
        i += 2000
        if time.thread_time() >= end:
            return total % 3 + len(region)


async def deliver_soon(q):
    return 200, {"days": loop_days(q.get("region", "EU"))}


ASYNC_ROUTES = {"/deliver": deliver_soon}


def serve_async(port_file):
    async def handle(reader, writer):
        try:
            request = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            url = urlsplit(request.split()[1].decode())
            route = ASYNC_ROUTES.get(url.path)
            status, body = await route({k: v[0] for k, v in parse_qs(url.query).items()}) if route else (404, {})
            data = json.dumps(body).encode()
            writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n" % (status, len(data)) + data)
            await writer.drain()
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        with open(port_file + ".tmp", "w") as fh:
            fh.write(str(server.sockets[0].getsockname()[1]))
        os.replace(port_file + ".tmp", port_file)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    serve_async(sys.argv[1])
