"""Durable outbox of outbound jobs (tickets, notifications) and the worker that delivers them."""

from callipso_agent.outbox.backoff import Backoff
from callipso_agent.outbox.errors import DeliveryError, FinalDelivery, RetryableDelivery
from callipso_agent.outbox.jobs import Deliverer, Delivered, Enqueued, Job, JobState, TimelineSink
from callipso_agent.outbox.store import Outbox
from callipso_agent.outbox.worker import OutboxWorker

__all__ = [
    "Backoff",
    "Deliverer",
    "Delivered",
    "DeliveryError",
    "Enqueued",
    "FinalDelivery",
    "Job",
    "JobState",
    "Outbox",
    "OutboxWorker",
    "RetryableDelivery",
    "TimelineSink",
]
