"""Couriers: the actors that take a message out of the queue, one interface
for every route (proto/messages.proto): asked `Deliver` (one message, the
recipients of one route and destination), they answer `DeliveryResult`,
one RecipientResult per recipient.

    Route kind  courier (module)               registered names
    MAILDIR     LocalCourier (local.py)        courier.maildir.<n>
    SMTP        SmtpCourier (smtp.py)          courier.smtp.<n>
    LMTP        LmtpCourier (smtp.py)          courier.lmtp.<n>
    MDA         MdaCourier (mda.py)            courier.mda.<n>

`courier_name` is the one place those names are made; the CourierPool
(pool.py) hands a free courier of the right kind to each delivery and
bounds the connections per destination. The router (router.py) decides
each recipient's route.
"""

from __future__ import annotations

from estafeta.proto import messages_pb2

#: Route.Kind -> the middle part of its couriers' registered names.
KIND_NAMES = {
    messages_pb2.Route.MAILDIR: "maildir",
    messages_pb2.Route.SMTP: "smtp",
    messages_pb2.Route.LMTP: "lmtp",
    messages_pb2.Route.MDA: "mda",
}


def courier_name(kind: int, n: int) -> str:
    """The registered name of courier `n` of route kind `kind`, e.g.
    "courier.smtp.3". Raises KeyError for an unknown kind."""
    return f"courier.{KIND_NAMES[kind]}.{n}"  # type: ignore[index]
