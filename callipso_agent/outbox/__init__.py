"""Durable outbox of outbound jobs (tickets, notifications) and the worker that delivers them."""

from callipso_agent.outbox.backoff import Backoff
from callipso_agent.outbox.errors import DeliveryError, FinalDelivery, RetryableDelivery
from callipso_agent.outbox.jobs import Delivered, Deliverer, Enqueued, Job, JobState, TimelineSink
from callipso_agent.outbox.store import Outbox
from callipso_agent.outbox.worker import OutboxWorker

__all__ = [
    "Backoff",
    "Delivered",
    "Deliverer",
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
