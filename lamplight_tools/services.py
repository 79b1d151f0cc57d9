"""The platform's services, in one list: each name, its nameko class, and the
offset of its probe port in a local stack. ``lamplight serve`` starts one; the
development stack starts them all."""

SERVICES = {
    "needs": ("services.needs.service:NeedsService", 1),
    "volunteers": ("services.volunteers.service:VolunteersService", 2),
    "points": ("services.points.service:PointsService", 3),
    "notify": ("services.notify.service:NotifyService", 4),
    "gateway": ("gateway.service:Gateway", 0),
}
