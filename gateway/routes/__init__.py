"""The gateway's routes, by area, each a mixin of the Gateway (gateway.service):
nameko finds the entrypoints of a class among the methods it inherits. Here,
who may call what (gateway.auth.Policy), named once for every area."""
from gateway import auth
from gateway.auth import PEOPLE, Policy

# who may call what -------------------------------------------------------------------
ADMIN = Policy(roles=("park_admin",))
DESK = Policy(roles=auth.STAFF)
CREW = Policy(roles=auth.STAFF + ("volunteer",))
ALL = Policy(roles=auth.STAFF + PEOPLE)
INTAKE = ALL
PUBLIC = Policy(public=True)
PLATFORM = Policy(platform=True)
CREW_OWN_RESPONDER = Policy(roles=auth.STAFF + ("volunteer",), own=("responder_id",))
CREW_AS_RESPONDER = Policy(roles=auth.STAFF + ("volunteer",), own_body=("responder_id",))
OWN_RESPONDER_INBOX = Policy(roles=auth.STAFF + PEOPLE, own=("responder_id",))
OWN_RECIPIENT = Policy(roles=auth.STAFF + PEOPLE, own=("recipient_id",))
OWN_MEMBER = Policy(roles=auth.STAFF + ("member",), own=("member_id",))
REDEEM = Policy(roles=auth.STAFF + ("member",), own_body=("member_id",))

SIGNED_IN = Policy(roles=auth.ROLES)
