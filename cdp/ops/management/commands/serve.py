from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.ops.processes import run_together, web_process, worker_process


class Command(BaseCommand):
    help = "Serve the API and admin (gunicorn) with a Celery worker (and beat) in the foreground."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=None)
        parser.add_argument("--worker-concurrency", type=int, default=1)
        parser.add_argument("--no-beat", action="store_true", help="Do not run the scheduler.")

    def handle(self, *args: Any, **options: Any) -> None:
        base = f"http://{options['host']}:{options['port']}"
        self.stdout.write(
            f"cdp is starting on {base}\n"
            f"  admin:    {base}/admin/\n"
            f"  API docs: {base}/v1/docs/\n"
            f"  broker:   {settings.CELERY_BROKER_URL.split('@')[-1]}\n"
            "Press Ctrl-C to stop.\n"
        )
        status = run_together(
            [
                web_process(
                    base_dir=settings.BASE_DIR,
                    host=options["host"],
                    port=options["port"],
                    workers=options["web_workers"],
                ),
                worker_process(
                    beat=not options["no_beat"], concurrency=options["worker_concurrency"]
                ),
            ],
            cwd=settings.BASE_DIR,
        )
        if status:
            raise CommandError(f"stopped: a process exited with status {status}")
