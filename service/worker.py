"""`python -m service.worker`: build the app, then run the huey consumer (periodic recovery on)."""
from __future__ import annotations

import logging

from service import create_app


def main() -> None:
    app = create_app()
    runtime = app.extensions["calltag"]["runtime"]
    logging.getLogger("huey").setLevel(logging.INFO)
    consumer = runtime.queue.huey.create_consumer(workers=max(1, int(runtime.settings["WORKERS"])),
                                                  worker_type="thread", periodic=True, check_worker_health=True)
    consumer.run()


if __name__ == "__main__":
    main()
