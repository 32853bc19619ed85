"""A real SMTP server for Keel's tests: aiosmtpd, storing every accepted
message as a file (envelope recipients first, then the raw message).

    python smtp_sink.py PORT DIRECTORY

Prints "ready" once listening; runs until killed.

Two kinds of address behave as real servers' sometimes do: one whose local
part starts with `refused` is refused for good (550), and one starting
with `greylisted` is refused for now (451) the first time it is seen, then
accepted.
"""
import itertools
import os
import sys
import time

from aiosmtpd.controller import Controller


class Store:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count()
        self.greylisted = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        if local.startswith("refused"):
            return "550 5.1.1 No such user here"
        if local.startswith("greylisted") and address not in self.greylisted:
            self.greylisted.add(address)
            return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        name = f"{time.time_ns()}-{os.getpid()}-{n:06}"
        tmp = os.path.join(self.directory, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(("X-Envelope-To: " + ",".join(envelope.rcpt_tos) + "\r\n").encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.directory, f"{name}.eml"))
        return "250 OK stored"


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    controller = Controller(Store(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
