"""Locust load profile for POST /recommend (run by `recsys load` / `make load`; pytest skips it).

The mix: mostly users the models know (drawn from `--users-file`, one id per line, else
1..`--max-user-id`), one request in `--cold-every` for a user above the known maximum (cold
start), k varied the way a UI asks for it (a row of 10 most often, sometimes 5, 20, 50 or 100),
and `exclude_seen` false now and then. Each simulated user thinks 50-150 ms between requests.
Requests are named by kind, so the CSV shows known and cold users apart beside the aggregate.

    locust -f tests/load/locustfile.py --headless -u 16 -r 4 -t 30s --host http://127.0.0.1:3000
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task

K_CHOICES = (5, 10, 10, 10, 10, 20, 20, 50, 100)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--users-file", default="", help="Known user ids, one per line.")
    parser.add_argument("--max-user-id", type=int, default=943, help="Known ids 1..N otherwise.")
    parser.add_argument("--cold-every", type=int, default=20, help="One cold user in N requests.")


KNOWN: list[int] = []


@events.test_start.add_listener
def _load_users(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    if options is not None and options.users_file:
        text = Path(options.users_file).read_text()
        KNOWN[:] = [int(line) for line in text.split() if line.strip()]
    else:
        max_id = options.max_user_id if options is not None else 943
        KNOWN[:] = list(range(1, max_id + 1))


class RecommendUser(FastHttpUser):
    """One client of the recommendation API."""

    wait_time = between(0.05, 0.15)

    @task
    def recommend(self) -> None:
        options = self.environment.parsed_options
        cold_every = options.cold_every if options is not None else 20
        cold = random.randrange(cold_every) == 0
        user_id = max(KNOWN) + random.randint(1, 100_000) if cold else random.choice(KNOWN)
        k = random.choice(K_CHOICES)
        body = {"user_id": user_id, "k": k, "exclude_seen": random.random() > 0.1}
        name = "/recommend [cold]" if cold else "/recommend [known]"
        with self.client.post("/recommend", json=body, name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return
            recommendations = resp.json().get("recommendations")
            if not isinstance(recommendations, list) or len(recommendations) > k:
                resp.failure(f"expected a list of at most {k} recommendations")
