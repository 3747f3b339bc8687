"""Notifications: channels (email, SMS, Teams, webhook), routing rules, and their outbox deliverer."""

from callipso_agent.notify.channels import (
    Channel,
    EmailSender,
    SmsSender,
    TeamsSender,
    WebhookSender,
    adaptive_card,
    build_channels,
    message_card,
)
from callipso_agent.notify.config import (
    NotificationsConfig,
    load_notifications,
    notifications_path,
    parse_notifications,
)
from callipso_agent.notify.deliver import NotifyDeliverer
from callipso_agent.notify.dispatch import OutputDispatcher
from callipso_agent.notify.router import NotificationRouter, Planned
from callipso_agent.notify.texts import Rendered, Texts

__all__ = [
    "Channel",
    "EmailSender",
    "NotificationRouter",
    "NotificationsConfig",
    "NotifyDeliverer",
    "OutputDispatcher",
    "Planned",
    "Rendered",
    "SmsSender",
    "TeamsSender",
    "Texts",
    "WebhookSender",
    "adaptive_card",
    "build_channels",
    "load_notifications",
    "message_card",
    "notifications_path",
    "parse_notifications",
]
