"""The Python comparison for `make bench-compare`: ssed's /events/bench
route on uvicorn + sse-starlette, as the seed tutorials would build it, with
one queue per subscriber so that every subscriber gets every event.

GET /events/bench streams `retry: 2000` and then every published body;
POST /events/bench publishes its body. Prints the address it bound."""

import asyncio
import socket

import uvicorn
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

subscribers: set[asyncio.Queue] = set()


async def bench(request):
    if request.method == "POST":
        body = (await request.body()).decode()
        for q in subscribers:
            q.put_nowait(body)
        return JSONResponse({"subscribers": len(subscribers)})

    queue: asyncio.Queue = asyncio.Queue()
    subscribers.add(queue)

    async def events():
        try:
            yield ServerSentEvent(retry=2000)
            while True:
                yield ServerSentEvent(data=await queue.get())
        finally:
            subscribers.discard(queue)

    return EventSourceResponse(events(), ping=15)


app = Starlette(routes=[Route("/events/bench", bench, methods=["GET", "POST"])])


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    host, port = sock.getsockname()
    print(f"starlette listening on http://{host}:{port}/", flush=True)
    config = uvicorn.Config(app, log_level="warning", backlog=4096)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
